"""Compare and share in a real browser: pick two runs, copy the URL, open it in a fresh browser
context and see the same selection; download the HTML report and open it with the network blocked:
the charts render, and a run named <script>alert(1)</script> shows as text and runs nothing."""

import re

from db import repo
from sparsity_core.reports.seed import seed_kernel, seed_pruning

HOSTILE = "<script>alert(1)</script>"


def _picker_text(page) -> str:
    return page.get_by_test_id("stMultiSelect").filter(has_text="Runs to compare").inner_text()


def test_select_share_the_link_and_export_an_offline_report(live_app, app_store, page, browser, tmp_path):
    a = seed_pruning("magnitude", slope=0.5, name=HOSTILE)
    b = seed_pruning("wanda", slope=0.2, name="e2e wanda")
    seed_kernel(a)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # Step 1: pick two runs with the widget, as a person would
    page.goto(f"{live_app.url}/compare")
    picker = page.get_by_test_id("stMultiSelect").filter(has_text="Runs to compare")
    for run_id in (a, b):
        picker.locator("input").click()
        picker.locator("input").fill(f"#{run_id} ")
        page.get_by_role("option").filter(has_text=re.compile(rf"^#{run_id} ")).first.click()
        page.keyboard.press("Escape")
    page.wait_for_url(re.compile(rf"runs={a}(%2C|,){b}"))
    page.get_by_text("Curves", exact=True).click()
    page.wait_for_url(re.compile(r"view=curves"))
    page.locator(".js-plotly-plot").first.wait_for()
    link = page.url

    # Step 2: the link alone reproduces the view in a fresh browser context (no shared state)
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        fresh = other.new_page()
        fresh.goto(link)
        fresh.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        text = _picker_text(fresh)
        assert f"#{a} magnitude" in text and f"#{b} wanda" in text
        assert text.index(f"#{a} magnitude") < text.index(f"#{b} wanda")
        assert HOSTILE in text  # the name shows as typed text
        assert fresh.get_by_text("Curves", exact=True).is_visible() and "view=curves" in fresh.url
    finally:
        other.close()

    # Step 3: download the HTML report from the page
    page.get_by_text("Export", exact=True).click()
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="HTML report").click()
    report = tmp_path / "report.html"
    download.value.save_as(report)

    # Step 4: open it with every network request refused: plotly is inlined, so charts render
    offline = browser.new_context(offline=True)
    requests = []
    offline.route(re.compile(r"^https?://"), lambda route: (requests.append(route.request.url), route.abort()))
    try:
        view = offline.new_page()
        view.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        view.goto(report.as_uri())
        view.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
        assert view.locator(".js-plotly-plot").count() >= 4
        assert view.get_by_text(HOSTILE).first.is_visible()
        assert requests == []
    finally:
        offline.close()
    assert dialogs == []  # no script from a run name ever ran
    assert repo.get_run(a).name == HOSTILE
