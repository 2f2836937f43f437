"""The worker runs jobs in children: failures, crashes and cancels end the run, never the worker."""

import multiprocessing as mp
import threading
import time

import pytest

from db import repo
from sparsity_core.jobs import cancel, submit
from sparsity_core.jobs.worker import Worker
from sparsity_core.specs import SCHEMA_VERSION

JOBS = "tests.sparsity_core.jobs.jobs_for_tests"
SPEC = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]}


def worker_with(job: str) -> Worker:
    return Worker(poll_s=0.05, heartbeat_s=0.2, executors={"prune": f"{JOBS}:{job}"})


def test_success_writes_metrics_and_status():
    run_id = submit(SPEC)
    assert worker_with("ok_job").run_one() == run_id
    run = repo.get_run(run_id)
    assert run.status == "succeeded" and run.progress == 1.0
    assert repo.metrics_frame([run_id])["value"].tolist() == [42.0]


def test_a_raising_job_fails_with_its_message_and_the_worker_goes_on():
    bad, good = submit(SPEC), submit(SPEC)
    worker = Worker(poll_s=0.05, heartbeat_s=0.2, executors={"prune": f"{JOBS}:raising_job"})
    assert worker.run_one() == bad
    run = repo.get_run(bad)
    assert run.status == "failed"
    assert run.error == "RuntimeError: boom: the job broke on purpose"
    assert "raising_job" in run.traceback
    assert repo.metrics_frame([bad])["key"].tolist() == ["before_error"]  # kept what it reported
    worker.executors["prune"] = f"{JOBS}:ok_job"
    assert worker.run_one() == good and repo.get_run(good).status == "succeeded"


def test_a_killed_child_is_recorded_as_failed():
    run_id = submit(SPEC)
    worker_with("dying_job").run_one()
    run = repo.get_run(run_id)
    assert run.status == "failed" and "signal 9" in run.error and "out-of-memory" in run.error


def test_memory_error_says_out_of_memory():
    run_id = submit(SPEC)
    worker_with("oom_job").run_one()
    assert repo.get_run(run_id).error.startswith("MemoryError: out of memory")


def test_cancel_ends_a_running_job():
    run_id = submit(SPEC)
    worker = worker_with("sleepy_job")
    thread = threading.Thread(target=worker.run_one)
    thread.start()
    deadline = time.monotonic() + 30
    while repo.get_run(run_id).message != "sleeping" and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert cancel(run_id) == "running"
    thread.join(timeout=20)
    assert not thread.is_alive() and time.monotonic() - started < 10  # not the job's 60 s sleep
    assert repo.get_run(run_id).status == "cancelled"


def test_a_version_1_spec_is_upgraded_when_the_worker_reads_it():
    # v1 stored a method's parameters as given; the job gets them complete (dsnot's defaults:
    # initial "wanda", iterations 50; the one given here is kept)
    v1 = {"kind": "prune", "model": "digits-mlp", "method": "dsnot", "params": {"iterations": 5},
          "sparsities": [0.5]}
    run_id = repo.create_run(kind="prune", model="digits-mlp", method="dsnot", spec=v1, spec_version=1)
    Worker(poll_s=0.05, heartbeat_s=0.2, executors={"prune": f"{JOBS}:params_job"}).run_one()
    run = repo.get_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.info["params"] == {"initial": "wanda", "iterations": 5}


def test_a_spec_from_a_newer_release_fails_the_run_saying_so():
    run_id = repo.create_run(kind="prune", model="digits-mlp", spec=SPEC, spec_version=99)
    worker = worker_with("ok_job")
    assert worker.run_one() == run_id  # the worker goes on
    run = repo.get_run(run_id)
    assert run.status == "failed"
    assert run.error == ("the stored spec (version 99) cannot be run: spec_version: spec version 99 is not one "
                         f"this release reads (1 to {SCHEMA_VERSION}): it was written by a newer Sparsity Lab")
    assert repo.metrics_frame([run_id]).empty  # the job never started


def test_a_starting_worker_requeues_an_orphan_once_then_fails_it():
    run_id = submit(SPEC)
    repo.claim_next("dead-host:1:1")  # attempt 1, then its worker stops heartbeating
    time.sleep(1.1)
    assert Worker(stale_after_s=1.0).recover() == [run_id]
    assert repo.get_run(run_id).status == "queued"  # re-queued once
    repo.claim_next("dead-host:2:1")  # attempt 2, orphaned again
    time.sleep(1.1)
    assert Worker(stale_after_s=1.0).recover() == [run_id]
    run = repo.get_run(run_id)
    assert run.status == "failed" and run.error.startswith("orphaned")


def _claim_all(url_env: dict, out):
    import os

    os.environ.update(url_env)
    from db import repo as r

    got = []
    while (run := r.claim_next(f"w{os.getpid()}")) is not None:
        got.append(run.id)
    out.put(got)


def test_two_workers_never_claim_the_same_run(store):
    ids = {submit(SPEC) for _ in range(40)}
    import os

    env = {"SPARSITY_HOME": os.environ["SPARSITY_HOME"], "SPARSITY_DB_URL": os.environ["SPARSITY_DB_URL"]}
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(env, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    flat = [i for part in claimed for i in part]
    assert sorted(flat) == sorted(ids)  # each run exactly once
    assert len(flat) == len(set(flat))


@pytest.mark.slow
def test_real_digits_run_through_the_worker():
    run_id = submit({"kind": "prune", "model": "digits-mlp", "scope": "global", "sparsities": [0, 0.5, 0.9]})
    Worker(poll_s=0.05).run_one()
    run = repo.get_run(run_id)
    assert run.status == "succeeded", run.error
    frame = repo.metrics_frame([run_id])
    acc = frame[frame.key == "accuracy"].set_index("x")["value"]
    sparsity = frame[(frame.key == "sparsity")].set_index("x")["value"]
    assert acc[0.0] > 0.9
    for target in (0.0, 0.5, 0.9):
        assert abs(sparsity[target] - target) < 0.01
    assert {"masks@0", "masks@0.5", "masks@0.9"} <= {a.name for a in repo.list_artifacts(run_id)}
    assert run.info["evaluation"]["dataset"] == "digits"
