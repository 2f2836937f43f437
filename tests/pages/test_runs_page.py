"""The Runs page lists every run and can cancel and delete."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import repo

SPEC = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]}


def make(status, error=None):
    run_id = repo.create_run(kind="prune", model="digits-mlp", method="magnitude", spec=SPEC,
                             spec_version=1, status=status)
    if error:
        repo.finish_run(run_id, "failed", error=error)
    return run_id


def page() -> AppTest:
    root = Path(__file__).resolve().parents[2]
    return AppTest.from_file(str(root / "pages" / "runs.py"), default_timeout=60).run()


def test_empty_store_says_so():
    at = page()
    assert "No runs yet" in at.info[0].value


def test_lists_runs_with_status_and_error():
    make("queued")
    make("running", error="RuntimeError: boom")
    at = page()
    table = at.dataframe[0].value
    assert list(table["id"]) == [2, 1]
    assert list(table["status"]) == ["failed", "queued"]
    assert table.loc[table["id"] == 2, "error"].item() == "RuntimeError: boom"


def test_cancel_a_queued_run_then_delete_it():
    run_id = make("queued")
    at = page()
    at.button[0].click().run()  # Cancel (the only run is selected)
    assert repo.get_run(run_id).status == "cancelled"
    at.button[1].click().run()  # Delete
    assert repo.get_run(run_id) is None
