"""Closed by default, in a real browser, on one server started with SPARSITY_TOKEN:

(a) every page shows only the token field until the token is given; a wrong one says so; the right
    one opens the app; a `?token=` is removed from the address at once;
(b) runs named and failed with hostile markdown and HTML (an image, a link, a script) show on every
    page as text: no image or link to the hostile host, no script run, no dialog, and no request to
    any host but 127.0.0.1.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from db import repo
from pages._access import WRONG
from sparsity_core.reports.seed import seed_kernel, seed_pruning
from sparsity_core.specs import SCHEMA_VERSION

TOKEN = "e2e-access-token-0123456789"
HOSTILE = ["<img src=x onerror=alert(1)>", "[link](http://evil.example)", "![i](http://evil.example/x.png)",
           "<script>window.__x=1</script>", '<a href="http://evil.example/a">plotly link</a>']
PAGES = ["", "pruning", "sae", "kernels", "explain", "runs", "compare"]


@pytest.fixture
def token_app(tmp_path, shared_cache, app_server, monkeypatch):
    """The app (no worker: nothing here runs) with SPARSITY_TOKEN in its environment; this test's
    repo calls go to its store."""
    monkeypatch.setenv("SPARSITY_TOKEN", TOKEN)
    home = tmp_path / "access"
    home.mkdir()
    with app_server(home, shared_cache, worker=False) as app:
        monkeypatch.setenv("SPARSITY_HOME", str(app.home))
        monkeypatch.setenv("SPARSITY_DB_URL", app.db_url)
        yield app


@pytest.fixture
def watched(page):
    """The page, with every dialog and every request beyond 127.0.0.1 recorded (and the latter refused)."""
    seen = {"dialogs": [], "foreign": []}
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))

    def on_request(request):
        url = urlparse(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
            seen["foreign"].append(request.url)

    page.on("request", on_request)
    page.context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    return page, seen


def _gate_only(page) -> None:
    """The token field and the app's name, and nothing else: no sidebar status, no page."""
    page.get_by_label("Access token").wait_for()
    assert page.get_by_text("Store", exact=True).count() == 0
    assert page.get_by_test_id("stSidebarNav").count() == 0  # not even the legacy list of file names
    assert [t.strip() for t in page.locator("h1").all_inner_texts()] == ["Sparsity Lab"]


def test_closed_by_default_and_hostile_names_stay_text(token_app, watched):
    """One server start for both parts keeps the file well under 90 s."""
    page, seen = watched
    _token_gate(token_app, page)
    _hostile_names(token_app, page)
    assert seen == {"dialogs": [], "foreign": []}


def _token_gate(token_app, page) -> None:
    run_id = seed_pruning("magnitude", name="secret run name")
    for path in PAGES:
        page.goto(f"{token_app.url}/{path}?run={run_id}")
        _gate_only(page)
        assert page.get_by_text("secret run name").count() == 0

    page.goto(f"{token_app.url}/runs")
    _gate_only(page)
    page.get_by_label("Access token").fill("not-the-token")
    page.get_by_role("button", name="Open").click()
    page.get_by_text(WRONG).wait_for()
    _gate_only(page)

    page.get_by_label("Access token").fill(TOKEN)
    page.get_by_role("button", name="Open").click()
    page.get_by_text("📋 Runs").wait_for()  # the page the address named, not the default one
    page.get_by_text("Store", exact=True).wait_for()  # app.py's sidebar ran
    assert page.get_by_label("Access token").count() == 0

    page.goto(f"{token_app.url}/compare?token={TOKEN}&runs={run_id}")
    page.get_by_text("⚖️ Compare").wait_for()
    page.wait_for_url(lambda url: "token" not in url and f"runs={run_id}" in url)


def _run(kind: str, name: str, error: str) -> int:
    """A failed run of `kind`: its lab page shows the error, as an imported run's would be."""
    run_id = repo.create_run(kind=kind, model="digits-mlp", spec={"kind": kind, "model": "digits-mlp"},
                             spec_version=SCHEMA_VERSION, status="running", name=name)
    repo.finish_run(run_id, "failed", error=error)
    return run_id


def _hostile_names(token_app, page) -> None:
    pruned = [seed_pruning("magnitude", slope=0.1 * (i + 1), name=name) for i, name in enumerate(HOSTILE)]
    kernel = seed_kernel(pruned[0])
    repo.update_run_text(kernel, name=HOSTILE[2], notes=HOSTILE[1])
    sae, explain = _run("sae", HOSTILE[0], HOSTILE[2]), _run("explain", HOSTILE[3], HOSTILE[1])
    failed_prune = _run("prune", HOSTILE[1], " ".join(HOSTILE))
    ids = ",".join(map(str, [*pruned, kernel, sae, explain, failed_prune]))
    visits = [("runs", "📋 Runs"), *((f"compare?runs={ids}&view={view}", "⚖️ Compare")
                                     for view in ("table", "curves", "lineage", "panels")),
              (f"pruning?run={pruned[0]}", f"Run #{pruned[0]}"), (f"pruning?run={failed_prune}", "failed"),
              (f"kernels?run={kernel}", f"Run #{kernel}"), (f"sae?run={sae}", "failed"),
              (f"explain?run={explain}", "failed")]
    for path, shown in visits:
        page.goto(f"{token_app.url}/{path}{'&' if '?' in path else '?'}token={TOKEN}")
        page.get_by_text(shown).first.wait_for()
        page.wait_for_timeout(700)  # let the rest of the page (charts, tables) arrive
        assert page.get_by_test_id("stException").count() == 0, path
        assert page.locator("img[src*=evil], a[href*=evil], image[href*=evil]").count() == 0, path
        assert page.evaluate("window.__x") is None, path
