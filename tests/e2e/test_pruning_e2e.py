"""A person opens the app, submits a digits-mlp magnitude run at 0 / 0.5 / 0.9, and sees it succeed."""

import re
import time
from pathlib import Path

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
