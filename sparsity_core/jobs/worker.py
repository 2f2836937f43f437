"""The worker: claims queued runs one at a time and runs each in a child process.

The child runs the core function and writes its own progress, metrics, artifacts and final
status. The worker supervises: it heartbeats the run, ends the child when a cancel is requested,
and records a child that died without a word (killed, out of memory, segfault) as failed.
So a crashing job never takes the worker down, and status is always a column somebody wrote.

    python -m sparsity_core worker          # what `make run` starts beside the app
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import traceback
from typing import Optional

from db import repo

log = logging.getLogger("sparsity.worker")
SPAWN = mp.get_context("spawn")  # a fresh interpreter per job: no inherited DB connections or threads


def execute(run_id: int, target: Optional[str] = None) -> bool:
    """Run one claimed run in this process; returns True when it succeeded. The stored spec is
    read at its own version (an older one is upgraded; a newer one fails the run, saying so)."""
    from sparsity_core.jobs.executors import EXECUTORS, resolve
    from sparsity_core.jobs.store_context import StoreContext
    from sparsity_core.specs import SpecError, parse_spec

    run = repo.get_run(run_id)
    try:
        spec = parse_spec(run.spec, version=run.spec_version)
    except SpecError as exc:
        repo.finish_run(run_id, "failed", error=f"the stored spec (version {run.spec_version}) cannot be run: {exc}")
        return False
    try:
        fn = resolve(target or EXECUTORS[run.kind])
        fn(spec, StoreContext(run_id))
    except BaseException as exc:  # noqa: BLE001  (the run's record must say what happened)
        message = str(exc) or type(exc).__name__
        if isinstance(exc, MemoryError) or "out of memory" in message.lower():
            message = f"out of memory: {message}"
        repo.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {message}",
                        traceback=traceback.format_exc())
        return False
    return repo.finish_run(run_id, "succeeded", message="done")  # False: it had ended already (cancelled)


def _child(run_id: int, target: Optional[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which decides
    ok = execute(run_id, target)
    os._exit(0 if ok else 1)


def supervise(run_id: int, target: Optional[str] = None, heartbeat_s: float = 2.0,
              worker_id: Optional[str] = None, stop: Optional[threading.Event] = None) -> str:
    """Run a claimed run in a child process until it ends; returns the final status."""
    child = SPAWN.Process(target=_child, args=(run_id, target), name=f"run-{run_id}", daemon=True)
    child.start()
    repo.heartbeat(run_id, child_pid=child.pid)
    while True:
        child.join(timeout=heartbeat_s)
        if not child.is_alive():
            break
        repo.heartbeat(run_id)
        if worker_id:
            repo.worker_heartbeat(worker_id, run_id)
        if repo.cancel_requested(run_id) or (stop is not None and stop.is_set()):
            _end(child)
            if stop is not None and stop.is_set() and not repo.cancel_requested(run_id):
                repo.finish_run(run_id, "failed", error="the worker shut down while this run was running")
            else:
                repo.finish_run(run_id, "cancelled", message="cancelled while running")
            break
    if child.exitcode not in (0, 1):  # 1 = the child recorded its own failure
        how = f"killed by signal {-child.exitcode}" if child.exitcode and child.exitcode < 0 \
            else f"exit code {child.exitcode}"
        hint = " (SIGKILL: often the out-of-memory killer)" if child.exitcode == -signal.SIGKILL else ""
        repo.finish_run(run_id, "failed", error=f"the job's process died: {how}{hint}")
    return repo.get_run(run_id).status


def _end(child) -> None:
    child.terminate()
    child.join(timeout=5)
    if child.is_alive():
        child.kill()
        child.join()


class Worker:
    def __init__(self, poll_s: float = 0.5, heartbeat_s: float = 2.0, stale_after_s: float = 30.0,
                 executors: Optional[dict[str, str]] = None):
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self) % 10000}"
        self.poll_s, self.heartbeat_s, self.stale_after_s = poll_s, heartbeat_s, stale_after_s
        self.executors = executors or {}  # kind -> "module:function" overrides (tests)
        self.stop = threading.Event()

    def recover(self) -> list[int]:
        orphans = repo.mark_orphans(self.stale_after_s)
        if orphans:
            log.warning("marked runs %s as failed: their worker stopped heartbeating", orphans)
        return orphans

    def run_one(self) -> Optional[int]:
        """Claim and run one queued run; returns its id, or None when the queue was empty."""
        run = repo.claim_next(self.id)
        if run is None:
            return None
        log.info("run %s (%s %s) claimed", run.id, run.kind, run.model)
        repo.worker_heartbeat(self.id, run.id)
        final = supervise(run.id, self.executors.get(run.kind), self.heartbeat_s, self.id, self.stop)
        log.info("run %s %s", run.id, final)
        repo.worker_heartbeat(self.id, None)
        return run.id

    def run_forever(self, max_jobs: Optional[int] = None) -> None:
        self.recover()
        repo.worker_heartbeat(self.id)
        done, last_beat = 0, 0.0
        try:
            while not self.stop.is_set() and (max_jobs is None or done < max_jobs):
                if self.run_one() is not None:
                    done += 1
                    continue
                if time.monotonic() - last_beat > self.heartbeat_s:
                    repo.worker_heartbeat(self.id)
                    self.recover()
                    last_beat = time.monotonic()
                self.stop.wait(self.poll_s)
        finally:
            repo.worker_gone(self.id)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations are not news
    worker = Worker()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop.set())
    log.info("worker %s on %s", worker.id, _safe_url())
    worker.run_forever()


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    from db.engine import database_url

    return make_url(database_url()).render_as_string(hide_password=True)
