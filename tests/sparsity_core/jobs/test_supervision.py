"""Jobs cannot outlive their supervision: a child dies with its worker, a stale child writes
nothing, a graceful stop re-queues the running run."""

import os
import signal
import subprocess
import sys
import time

import psutil

from db import repo
from sparsity_core.jobs import submit
from sparsity_core.jobs.worker import execute

JOBS = "tests.sparsity_core.jobs.jobs_for_tests"
SPEC = {"kind": "prune", "model": "digits-mlp", "sparsities": [0.5]}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
WORKER = ("from sparsity_core.jobs.worker import main, Worker; import signal, sys;"
          f"w = Worker(poll_s=0.05, heartbeat_s=0.2, executors={{'prune': '{JOBS}:ticking_job'}});"
          "signal.signal(signal.SIGTERM, lambda *_: w.stop.set()); w.run_forever()")


def start_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})


def wait_for(check, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (value := check()):
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")


def running_child(run_id: int) -> int:
    return wait_for(lambda: repo.get_run(run_id).message == "ticking" and repo.get_run(run_id).child_pid)


def test_the_child_dies_with_a_killed_worker():
    run_id = submit(SPEC)
    worker = start_worker()
    try:
        pid = running_child(run_id)
        worker.kill()  # kill -9: no cleanup of any kind
        worker.wait()
        killed = time.monotonic()
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 5)
        assert time.monotonic() - killed < 2.5  # PR_SET_PDEATHSIG: at once, not at the end of its minute
    finally:
        worker.kill()


def test_sigterm_requeues_the_running_run():
    run_id = submit(SPEC)
    worker = start_worker()
    try:
        pid = running_child(run_id)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
        run = repo.get_run(run_id)
        assert (run.status, run.message, run.attempts, run.claim_token) == \
            ("queued", "re-queued: the worker stopped", 0, None)
        assert repo.metrics_frame([run_id]).empty  # its partial ticks went with the attempt
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        worker.kill()


def test_a_stale_job_writes_nothing_after_its_run_was_requeued():
    run_id = submit(SPEC)
    stale = repo.claim_next("old-worker").claim_token
    assert repo.requeue_run(run_id, stale, "re-queued: the worker stopped")
    fresh = repo.claim_next("new-worker").claim_token
    assert fresh != stale
    assert execute(run_id, stale, f"{JOBS}:ok_job") is False  # the stale job runs, and is refused
    run = repo.get_run(run_id)
    assert (run.status, run.claim_token, run.progress) == ("running", fresh, 0.0)
    assert repo.metrics_frame([run_id]).empty
    assert execute(run_id, fresh, f"{JOBS}:ok_job") is True  # the owner's writes land
    assert repo.metrics_frame([run_id])["value"].tolist() == [42.0]
