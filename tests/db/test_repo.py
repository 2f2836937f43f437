import time

import pytest
from sqlalchemy.exc import InvalidRequestError

from db import repo
from db.engine import table_names
from sparsity_core.paths import artifacts_dir

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


def test_artifact_sha(store):
    run_id = new_run()
    path = store / "artifacts" / "a.json"
    path.parent.mkdir(parents=True)
    path.write_text("abc")
    repo.add_artifact(run_id, "a", path, "json")
    art = repo.list_artifacts(run_id)[0]
    # sha256("abc"), checkable with `printf abc | sha256sum`
    assert art.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert art.bytes == 3 and repo.artifact_path(run_id, "a") == path


def test_run_ids_are_never_reused():
    ids = [new_run() for _ in range(3)]
    assert ids == [1, 2, 3]
    repo.delete_run(3)
    assert new_run() == 4  # SQLite without AUTOINCREMENT would give 3 again


def test_delete_says_what_it_removes_then_removes_it_all(store):
    parent, child = new_run(), None
    child = new_run(parent_run_id=parent)
    folder = artifacts_dir(parent)
    (folder / "masks-s0.5.safetensors").write_bytes(b"x" * 1000)
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_bytes(b"{}")
    (folder / "debug.json").write_bytes(b"y" * 500)  # a file the run wrote but never recorded
    repo.add_artifact(parent, "masks@0.5", folder / "masks-s0.5.safetensors", "safetensors")
    repo.add_artifact(parent, "model@0.5", folder / "model", "dir")
    repo.add_metrics(parent, [{"key": "accuracy", "x": 0.5, "value": 0.9}, {"key": "sparsity", "x": 0.5, "value": 0.5}])
    plan = repo.delete_plan(parent)
    assert (plan.metrics, plan.files, plan.bytes, plan.children) == (2, 3, 1502, (child,))
    assert plan.summary == (f"run #{parent} (queued), 2 metric value(s), 3 artifact file(s) (0.0 MB); "
                            f"child run(s) #{child} stay, without a parent")
    assert repo.delete_run(parent) == plan
    assert repo.get_run(parent) is None and not folder.exists()
    assert repo.metrics_frame([parent]).empty and repo.list_artifacts(parent) == []
    assert repo.get_run(child).parent_run_id is None


def test_delete_refuses_a_running_run_and_a_missing_one():
    running = new_run(status="running")
    folder = artifacts_dir(running)
    with pytest.raises(ValueError, match="cancel it first"):
        repo.delete_run(running)
    assert repo.get_run(running).status == "running" and folder.exists()
    with pytest.raises(KeyError, match="no run 99"):
        repo.delete_run(99)


def test_a_dead_worker_process_is_forgotten_and_its_run_failed():
    repo.worker_heartbeat("box:4:1", None)
    repo.worker_heartbeat("box:41:7", None)  # pid 41 is another process: forgetting pid 4 must spare it
    new_run()
    held = repo.claim_next("box:4:1")
    other = new_run(status="running", worker="box:41:7")
    assert repo.forget_worker_process("box", 4, "its worker died") == [held.id]
    assert [w.id for w in repo.live_workers()] == ["box:41:7"]
    assert (repo.get_run(held.id).status, repo.get_run(held.id).error) == ("failed", "its worker died")
    assert repo.get_run(other).status == "running"


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
