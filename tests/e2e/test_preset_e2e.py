"""A person opens "Try this" on the Pruning page, clicks the first digits preset, and its two runs
(magnitude, layer vs global scope) finish; the link the page gives opens them on the compare page's curves."""

import re
import time
from urllib.parse import urljoin

from db import repo

PRESET = "Layer vs global magnitude on digits"  # sparsity_core/catalog/presets.py: 2 runs, about 3 s here


def test_first_digits_preset_runs_to_its_curves(live_app, app_store, page):
    before = {run.id for run in repo.list_runs()}
    page.goto(f"{live_app.url}/pruning")
    page.get_by_text(re.compile("^🎓 Try this")).click()
    page.get_by_role("button", name=f"Run: {PRESET}").click()
    link = page.get_by_role("link", name="follow them side by side on the compare page")
    link.wait_for()
    runs = [run for run in repo.list_runs(kind="prune") if run.id not in before]
    assert sorted(run.spec["scope"] for run in runs) == ["global", "layer"]
    deadline = time.monotonic() + 90
    while any(repo.get_run(run.id).status in ("queued", "running") for run in runs) and time.monotonic() < deadline:
        time.sleep(0.5)
    runs = [repo.get_run(run.id) for run in runs]
    assert [run.status for run in runs] == ["succeeded"] * 2, [run.error for run in runs]
    ids = sorted(run.id for run in runs)
    href = link.get_attribute("href")
    assert re.search(rf"compare\?runs={ids[0]}(,|%2C){ids[1]}&view=curves$", href), href
    # each run's dense point is the trained classifier: well above chance (0.1) on the digits test split
    frame = repo.metrics_frame(ids)
    dense = frame[(frame.key == "accuracy") & (frame.x == 0.0)]
    assert len(dense) == 2 and (dense.value > 0.9).all()
    page.goto(urljoin(page.url, href))  # as a person would open it (Streamlit opens links in a new tab)
    page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    for name in ("preset: magnitude layer", "preset: magnitude global"):
        page.get_by_text(name).first.wait_for()  # both runs are on the compare page
