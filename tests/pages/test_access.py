"""The token gate (pages/_access.py), rendered through app.py: with SPARSITY_TOKEN set nothing but
the token field shows until the token is given; a wrong one shows one line; the right one opens.
Behind the gate, every control that changes the store (delete, cancel, import, a run's name and
notes) asks may_change() itself and, without access, says so beside it and leaves the run as it was."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import repo
from pages import _access
from pages._access import READ_ONLY, WRONG
from sparsity_core.reports import bundle
from sparsity_core.reports.seed import seed_pruning

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-tests-0123"


@pytest.fixture
def app(monkeypatch) -> AppTest:
    monkeypatch.setenv("SPARSITY_TOKEN", TOKEN)
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def _page_rendered(at: AppTest) -> bool:
    return [t.value for t in at.title] == ["✂️ Pruning"] and "Store" in [c.value for c in at.sidebar.caption] \
        and not [t for t in at.text_input if t.label == "Access token"]


def test_a_fresh_session_sees_only_the_token_field(app):
    at = app.run()
    assert [t.label for t in at.text_input] == ["Access token"]
    assert [t.value for t in at.title] == ["Sparsity Lab"]
    assert not at.sidebar.caption and not at.error  # no sidebar status, no page, no run data


def test_a_wrong_token_shows_one_line_and_no_page(app):
    at = app.run()
    at.text_input[0].input("not-the-token")
    at.button[0].click().run()
    assert [e.value for e in at.error] == [WRONG]
    assert [t.value for t in at.title] == ["Sparsity Lab"]


def test_the_right_token_opens_the_app(app):
    at = app.run()
    at.text_input[0].input(TOKEN)
    at.button[0].click().run()
    assert not at.error and _page_rendered(at)


def test_a_token_in_the_url_opens_once_and_leaves_the_url(app):
    app.query_params["token"] = TOKEN
    at = app.run()
    assert _page_rendered(at) and "token" not in at.query_params


# ------------------------------------------------ the second lock: each destructive control asks may_change()
SPEC = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]}


def _queued() -> int:
    return repo.create_run(kind="prune", model="digits-mlp", method="magnitude", spec=SPEC, spec_version=1)


@pytest.fixture
def ungated(app, monkeypatch) -> AppTest:
    """app.py with SPARSITY_TOKEN set and no token given, its gate skipped: as a page rendered
    without the gate would be, so each control's own check is what stands between a click and the store.
    (The gate itself, page by page on a live server, is tests/e2e/test_access_e2e.py.)"""
    monkeypatch.setattr(_access, "gate", lambda *pages: None)
    return app


def _open(at: AppTest, page: str, **query) -> AppTest:
    at.switch_page(page)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_delete_is_refused_beside_its_button_and_the_run_stays(ungated):
    run_id = _queued()
    repo.request_cancel(run_id)  # a cancelled run: Delete… is enabled
    at = _open(ungated, "pages/runs.py")
    at.button(key="delete").click().run()
    assert _errors(at) == [READ_ONLY] and not at.warning  # no confirmation: nothing to confirm
    at.session_state["confirm_delete"] = run_id  # even a confirmation reached some other way
    at.run()
    at.button(key="delete-yes").click().run()
    assert _errors(at) == [READ_ONLY]
    assert repo.get_run(run_id) is not None


def test_cancel_on_the_runs_page_is_refused_and_the_run_stays_queued(ungated):
    run_id = _queued()
    at = _open(ungated, "pages/runs.py")
    at.button(key="cancel").click().run()
    assert _errors(at) == [READ_ONLY]
    assert repo.get_run(run_id).status == "queued"


def test_editing_a_runs_name_is_refused(ungated):
    run_id = _queued()
    at = _open(ungated, "pages/runs.py")
    at.text_input[0].input("renamed")
    at.button[-1].click().run()  # the form's "Save name and notes"
    assert _errors(at) == [READ_ONLY]
    assert repo.get_run(run_id).name is None


@pytest.mark.parametrize("token", [TOKEN, None])
def test_cancel_while_a_lab_follows_the_run_acts_only_with_access(ungated, monkeypatch, token):
    if token is None:
        monkeypatch.delenv("SPARSITY_TOKEN")  # a local app: everyone here may change runs
    run_id = _queued()
    at = _open(ungated, "pages/pruning.py", run=str(run_id))
    at.button(key=f"cancel-{run_id}").click().run()
    if token:
        assert READ_ONLY in _errors(at) and repo.get_run(run_id).status == "queued"
    else:
        assert READ_ONLY not in _errors(at) and repo.get_run(run_id).status == "cancelled"


@pytest.mark.parametrize("token", [TOKEN, None])
def test_importing_a_bundle_acts_only_with_access(ungated, monkeypatch, token):
    if token is None:
        monkeypatch.delenv("SPARSITY_TOKEN")
    run_id = seed_pruning("magnitude")
    data = json.dumps(bundle.bundle_dict([run_id])).encode()
    at = _open(ungated, "pages/compare.py", runs=str(run_id), view="share")
    at.file_uploader(key="cmp_upload").set_value(("bundle.json", data, "application/json")).run()
    at.button(key="cmp_import").click().run()
    if token:
        assert _errors(at) == [READ_ONLY] and [r.id for r in repo.list_runs()] == [run_id]
    else:
        assert not _errors(at) and len(repo.list_runs()) == 2
