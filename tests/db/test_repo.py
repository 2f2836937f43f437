import time

import pytest
from sqlalchemy.exc import InvalidRequestError

from db import repo
from db.engine import table_names

SPEC = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]}


def new_run(**kw):
    return repo.create_run(kind="prune", model="digits-mlp", spec=SPEC, spec_version=1, **kw)


def test_migration_creates_the_tables():
    assert {"runs", "metrics", "artifacts", "workers", "alembic_version"} <= set(table_names())


def test_claim_takes_the_oldest_queued_run_once():
    first, second = new_run(), new_run()
    assert repo.claim_next("w1").id == first
    assert repo.claim_next("w2").id == second
    assert repo.claim_next("w3") is None
    assert repo.get_run(first).worker == "w1" and repo.get_run(first).status == "running"


def test_a_run_ends_once():
    run_id = new_run(status="running")
    assert repo.finish_run(run_id, "cancelled")
    assert not repo.finish_run(run_id, "failed", error="late crash report")
    run = repo.get_run(run_id)
    assert run.status == "cancelled" and run.error is None


def test_cancel_queued_ends_it_cancel_running_flags_it():
    queued, running = new_run(), new_run(status="running")
    assert repo.request_cancel(queued) == "cancelled"
    assert repo.request_cancel(running) == "running"
    assert repo.cancel_requested(running)


def test_metrics_long_format_roundtrip():
    run_id = new_run()
    repo.add_metrics(run_id, [{"key": "accuracy", "x": 0.5, "value": 0.9},
                              {"key": "layer_sparsity", "series": "fc1", "x": 0.5, "value": 0.52}])
    frame = repo.metrics_frame([run_id])
    assert list(frame.columns) == ["run_id", "key", "series", "x", "value"]
    assert frame.set_index("key").loc["layer_sparsity", "series"] == "fc1"
    assert frame.set_index("key").loc["accuracy", "value"] == 0.9


def test_artifact_sha_and_delete_removes_files(store):
    run_id = new_run()
    path = store / "artifacts" / "a.json"
    path.parent.mkdir(parents=True)
    path.write_text("abc")
    repo.add_artifact(run_id, "a", path, "json")
    art = repo.list_artifacts(run_id)[0]
    # sha256("abc"), checkable with `printf abc | sha256sum`
    assert art.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert art.bytes == 3 and repo.artifact_path(run_id, "a") == path
    repo.add_metrics(run_id, [{"key": "k", "value": 1.0}])
    repo.delete_run(run_id)
    assert repo.get_run(run_id) is None and not path.exists()
    assert repo.metrics_frame([run_id]).empty


def test_orphans_are_marked_failed():
    stale = new_run(status="running")
    time.sleep(1.2)
    fresh = new_run(status="running")
    assert repo.mark_orphans(stale_after_s=1.0) == [stale]
    assert repo.get_run(stale).status == "failed" and "orphaned" in repo.get_run(stale).error
    assert repo.get_run(fresh).status == "running"


def test_relationships_load_only_where_a_function_says_so(store):
    run_id = new_run()
    for name in ("b", "a"):
        path = store / "artifacts" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
        repo.add_artifact(run_id, name, path, "json")
    loaded = repo.get_run_with_artifacts(run_id)  # detached now: its session is closed
    assert [(a.name, a.path) for a in loaded.artifacts] == [("b", "artifacts/b.json"), ("a", "artifacts/a.json")]
    plain = repo.get_run(run_id)
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        len(plain.artifacts)  # not loaded: says so at once instead of querying a closed session
    assert repo.get_run_with_artifacts(999) is None
