from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import InvalidRequestError

from db import repo
from db.engine import session, table_names
from db.models import Run, utcnow
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


def age(run_id, seconds):
    """Make a run's last heartbeat `seconds` old (the store's own clock, naive UTC)."""
    with session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))
        s.commit()


def test_a_dead_worker_process_is_forgotten_and_its_run_requeued_once_then_failed():
    repo.worker_heartbeat("box:4:1", None)
    repo.worker_heartbeat("box:41:7", None)  # pid 41 is another process: forgetting pid 4 must spare it
    new_run()
    held = repo.claim_next("box:4:1")
    other = new_run(status="running", worker="box:41:7")
    assert repo.forget_worker_process("box", 4, "its worker died") == [(held.id, "box:4:1", None, "requeued")]
    assert [w.id for w in repo.live_workers()] == ["box:41:7"]
    run = repo.get_run(held.id)
    assert (run.status, run.message, run.worker, run.claim_token, run.attempts) == (
        "queued", "re-queued: its worker died", None, None, 1)
    again = repo.claim_next("box:4:2")
    assert (again.id, again.attempts) == (held.id, 2)
    assert repo.forget_worker_process("box", 4, "its worker died") == [(held.id, "box:4:2", None, "failed")]
    run = repo.get_run(held.id)
    assert (run.status, run.error) == ("failed", "its worker died (attempt 2: not re-queued again)")
    assert repo.get_run(other).status == "running"


def test_orphans_are_requeued_once_then_failed():
    new_run()
    run = repo.claim_next("w1")
    repo.heartbeat(run.id, child_pid=4242, token=run.claim_token)
    fresh = new_run(status="running")
    age(run.id, 60)
    assert repo.mark_orphans(stale_after_s=30) == [(run.id, "w1", 4242, "requeued")]
    after = repo.get_run(run.id)
    assert (after.status, after.message, after.claim_token, after.child_pid, after.attempts) == (
        "queued", "re-queued: its worker stopped heartbeating", None, None, 1)
    second = repo.claim_next("w2")
    assert (second.id, second.attempts) == (run.id, 2) and second.claim_token != run.claim_token
    assert repo.mark_orphans(stale_after_s=30) == []  # just claimed: its heartbeat is fresh
    age(run.id, 60)
    assert repo.mark_orphans(stale_after_s=30) == [(run.id, "w2", None, "failed")]
    after = repo.get_run(run.id)
    assert (after.status, after.error) == ("failed", "orphaned: its worker stopped heartbeating twice")
    assert after.finished_at is not None
    assert repo.get_run(fresh).status == "running"


def test_claim_sets_a_fresh_token_and_counts_attempts():
    run_id = new_run()
    first = repo.claim_next("w1")
    assert (first.id, first.status, first.worker, first.attempts) == (run_id, "running", "w1", 1)
    assert len(first.claim_token) == 32 and int(first.claim_token, 16) >= 0  # uuid4 hex
    assert first.started_at is not None and first.heartbeat_at is not None


def test_a_stale_token_writes_nothing_and_cannot_close_the_run():
    run_id = new_run()
    old = repo.claim_next("w1").claim_token
    assert repo.requeue_run(run_id, old, "the worker was stopped (SIGTERM)")
    new = repo.claim_next("w2").claim_token
    assert new != old
    # the child of the first claim, still alive, tries every write a job makes
    assert not repo.finish_run(run_id, "succeeded", token=old, message="done")
    assert not repo.set_progress(run_id, 0.9, "stale", token=old)
    assert not repo.add_metrics(run_id, [{"key": "accuracy", "value": 0.1}], token=old)
    assert not repo.update_info(run_id, token=old, executor={"name": "local"})
    assert not repo.heartbeat(run_id, child_pid=1, token=old)
    run = repo.get_run(run_id)
    assert (run.status, run.progress, run.info, run.child_pid, run.worker) == ("running", 0.0, {}, None, "w2")
    assert repo.metrics_frame([run_id]).empty
    # the owning claim's writes land
    assert repo.set_progress(run_id, 0.5, "half", token=new)
    assert repo.add_metrics(run_id, [{"key": "accuracy", "value": 0.9}], token=new)
    assert repo.update_info(run_id, token=new, executor={"name": "ray", "device": "cpu"})
    assert repo.finish_run(run_id, "succeeded", token=new, message="done")
    assert not repo.finish_run(run_id, "failed", token=new, error="late")  # it ended once
    run = repo.get_run(run_id)
    assert (run.status, run.progress, run.message, run.info) == (
        "succeeded", 1.0, "done", {"executor": {"name": "ray", "device": "cpu"}})
    assert repo.metrics_frame([run_id])["value"].tolist() == [0.9]


def test_a_stale_token_after_requeue_leaves_the_run_queued():
    run_id = new_run()
    token = repo.claim_next("w1").claim_token
    assert repo.requeue_run(run_id, token, "stopped")
    assert not repo.finish_run(run_id, "failed", token=token, error="killed")
    assert repo.get_run(run_id).status == "queued"


def test_a_stale_token_cannot_record_an_artifact(store):
    run_id = new_run()
    token = repo.claim_next("w1").claim_token
    path = artifacts_dir(run_id) / "a.json"
    path.write_text("abc")
    assert repo.add_artifact(run_id, "a", path, "json", token="0" * 32) is None
    assert repo.list_artifacts(run_id) == []
    assert repo.add_artifact(run_id, "a", path, "json", token=token) is not None
    assert [a.name for a in repo.list_artifacts(run_id)] == ["a"]


def test_requeue_puts_the_run_back_without_its_partial_results(store):
    run_id = new_run()
    token = repo.claim_next("w1").claim_token
    repo.heartbeat(run_id, child_pid=777, token=token)
    repo.set_progress(run_id, 0.4, "pruning", token=token)
    repo.add_metrics(run_id, [{"key": "accuracy", "x": 0.5, "value": 0.9}], token=token)
    folder = artifacts_dir(run_id)
    (folder / "masks.safetensors").write_bytes(b"x" * 10)
    repo.add_artifact(run_id, "masks@0.5", folder / "masks.safetensors", "safetensors", token=token)
    assert not repo.requeue_run(run_id, "f" * 32, "wrong token")  # only the owning claim may
    assert repo.requeue_run(run_id, token, "the worker was stopped (SIGTERM)")
    run = repo.get_run(run_id)
    assert (run.status, run.attempts, run.claim_token, run.worker, run.child_pid, run.progress, run.message) == (
        "queued", 0, None, None, None, 0.0, "the worker was stopped (SIGTERM)")
    assert run.started_at is None and run.finished_at is None
    assert repo.metrics_frame([run_id]).empty and repo.list_artifacts(run_id) == [] and not folder.exists()
    assert not repo.requeue_run(run_id, token, "twice")  # queued now: nothing to put back
    assert repo.claim_next("w2").attempts == 1  # a graceful stop does not count as an attempt


def test_finish_without_token_still_cancels_a_queued_run():
    run_id = new_run()
    assert repo.finish_run(run_id, "cancelled", message="interrupted")
    assert repo.get_run(run_id).status == "cancelled"


def test_update_info_merges_facts():
    run_id = new_run()
    assert repo.update_info(run_id, evaluation={"rows": 360})
    assert repo.update_info(run_id, executor={"name": "local", "node": None, "host": "box", "device": "cpu"})
    assert repo.get_run(run_id).info == {"evaluation": {"rows": 360},
                                         "executor": {"name": "local", "node": None, "host": "box", "device": "cpu"}}
    with pytest.raises(KeyError, match="no run 99"):
        repo.update_info(99, x=1)


def _claim_all(env: dict, barrier, out) -> None:
    """One racing worker process: claim until the queue is empty, report (pid, ids)."""
    import os

    os.environ.update(env)
    from db import repo as r

    r.count_by_status()  # connect (and import) before the start line, so the race is on claiming
    barrier.wait(timeout=60)
    got = []
    while (run := r.claim_next(f"w{os.getpid()}")) is not None:
        got.append(run.id)
    out.put((f"w{os.getpid()}", got))


def test_three_worker_processes_claim_60_runs_each_exactly_once(db_url):
    import multiprocessing as mp
    import os

    ids = [new_run() for _ in range(60)]
    env = {k: os.environ[k] for k in ("SPARSITY_HOME", "SPARSITY_DB_URL")}
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(env, barrier, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = dict(out.get(timeout=90) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    flat = [i for got in claimed.values() for i in got]
    assert len(flat) == 60 and sorted(flat) == ids  # all 60 claimed, none twice
    runs = repo.list_runs()
    assert {r.status for r in runs} == {"running"} and {r.attempts for r in runs} == {1}
    assert len({r.claim_token for r in runs}) == 60
    assert all(repo.get_run(i).worker == w for w, got in claimed.items() for i in got)


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


def test_a_worker_row_keeps_what_the_worker_says_of_itself():
    repo.worker_heartbeat("w1", None, info={"executor": "ray", "cluster": {"available": {"CPU": 1.0}}})
    repo.worker_heartbeat("w1", 7)  # a heartbeat without info keeps the last one
    (row,) = repo.live_workers()
    assert row.current_run_id == 7 and row.info["cluster"]["available"] == {"CPU": 1.0}
