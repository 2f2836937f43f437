"""A person opens the app, submits a digits-mlp magnitude run at 0 / 0.5 / 0.9, and sees it succeed;
every run has an address: after a reload, in a fresh browser, and once deleted (it says so)."""

import re
import time
from pathlib import Path

from playwright.sync_api import expect

from db import repo

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts"


def choose(page, label: str, option_prefix: str) -> None:
    """Pick the option of a Streamlit selectbox whose text starts with `option_prefix`."""
    page.get_by_role("combobox", name=re.compile(f"^{label}")).click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(option_prefix)}")).first.click()


def wait_until_finished(run_id: int, timeout: float):
    deadline = time.monotonic() + timeout
    while (run := repo.get_run(run_id)).status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    return run


def test_submit_digits_run_and_see_its_curve(live_app, app_store, page):
    page.goto(live_app.url)
    page.get_by_role("textbox", name="Target sparsities").wait_for()
    choose(page, "Model", "digits-mlp")
    choose(page, "Method", "magnitude")
    page.get_by_text("global", exact=True).click()
    box = page.get_by_role("textbox", name="Target sparsities")
    box.fill("0, 0.5, 0.9")
    box.press("Tab")
    page.get_by_role("button", name="Run", exact=True).click()
    started = time.monotonic()
    page.get_by_text(re.compile(r"Queued run #\d+")).wait_for()  # said in the click's own redraw
    page.get_by_text(re.compile(r"Run #\d+")).first.wait_for(timeout=120_000)
    run = wait_until_finished(repo.list_runs(kind="prune")[0].id, timeout=400)
    assert run.status == "succeeded", run.error
    # the page redraws with the run's curves once the worker has finished it
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    print(f"browser click to finished curve: {time.monotonic() - started:.1f} s")
    assert run.spec["scope"] == "global" and run.spec["sparsities"] == [0.0, 0.5, 0.9]
    frame = repo.metrics_frame([run.id])
    acc = frame[frame.key == "accuracy"].set_index("x")["value"]
    assert acc[0.0] > 0.9
    page.get_by_text("measured sparsity per layer").first.wait_for()  # the heatmap of layers x targets
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    page.get_by_text(re.compile(r"Run #\d+")).scroll_into_view_if_needed()
    page.mouse.wheel(0, 250)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOT_DIR / "pruning-run.png"))  # the README's picture


def test_bad_sparsity_shows_beside_the_widget_and_queues_nothing(live_app, app_store, page):
    before = len(repo.list_runs())
    page.goto(live_app.url)
    box = page.get_by_role("textbox", name="Target sparsities")
    box.fill("0.5, 1.5")
    box.press("Enter")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("each sparsity must be in [0, 1), got 1.5").wait_for()
    assert len(repo.list_runs()) == before


def _figures(page) -> list[str]:
    """The titles of the page's charts, once all five of a one-shot pruning run are drawn:
    accuracy curve, per-layer heatmap, weight histogram, mask view, size bars."""
    charts = page.locator(".js-plotly-plot")
    expect(charts).to_have_count(5, timeout=60_000)
    return [" ".join(chart.locator(".gtitle").all_text_contents()) for chart in charts.all()]  # SVG text


def test_a_run_page_survives_a_reload_a_fresh_browser_and_says_when_deleted(live_app, app_store, page, browser):
    page.goto(f"{live_app.url}/pruning")
    box = page.get_by_role("textbox", name="Target sparsities")
    box.wait_for()
    choose(page, "Model", "digits-mlp")
    choose(page, "Method", "magnitude")
    box.fill("0, 0.5")
    box.press("Tab")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"[?&]run=\d+"))  # the submit puts the new run in the address
    run_id = int(re.search(r"[?&]run=(\d+)", page.url).group(1))
    run = wait_until_finished(run_id, timeout=400)
    assert run.status == "succeeded", run.error
    figures = _figures(page)
    assert any("measured sparsity per layer" in t for t in figures)
    link = page.get_by_test_id("stCode").filter(has_text="?run=").inner_text().strip()
    assert link == f"{live_app.url}/pruning?run={run_id}"

    page.reload()
    page.get_by_text(f"Run #{run_id}", exact=True).wait_for()
    assert _figures(page) == figures

    other = browser.new_context(viewport={"width": 1400, "height": 1000})  # no cookies, no session
    try:
        fresh = other.new_page()
        fresh.goto(link)
        fresh.get_by_text(f"Run #{run_id}", exact=True).wait_for(timeout=60_000)
        assert _figures(fresh) == figures
        # /pruning is a real page, not the default page reached after a "Page not found" dialog
        assert fresh.url == link and fresh.get_by_role("dialog").count() == 0

        repo.delete_run(run_id)
        fresh.goto(link)
        fresh.get_by_text(f"run #{run_id} does not exist (it may have been deleted)").wait_for(timeout=60_000)
        assert fresh.get_by_text(f"Run #{run_id}", exact=True).count() == 0
        assert fresh.locator(".js-plotly-plot").count() == 0
    finally:
        other.close()
