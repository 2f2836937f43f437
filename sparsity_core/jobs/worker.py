"""The worker: claims queued runs and hands each to an executor, then supervises them to their end.

    python -m sparsity_core worker                                  # local: one child process at a time
    python -m sparsity_core worker --executor ray [--ray-address auto] [--max-concurrent 4]

The job (`execute`) runs elsewhere, in a local child or a Ray task, and writes its own progress,
metrics, artifacts and final status, each write carrying the run's claim token: once the run was
closed or re-queued, a stale job can write nothing more. The worker supervises: it heartbeats its
runs, ends a job when a cancel is requested, records a job that died without a word (killed, out
of memory, its node lost) as failed, and on a graceful stop (SIGTERM, Ctrl-C) ends its jobs and
puts their runs back in the queue, never failing them. A starting worker recovers orphans: runs
whose worker stopped heartbeating are re-queued once, then failed (repo.mark_orphans), and any
process of theirs still alive on this host is ended. So a crashing job never takes the worker
down, a job never outlives its supervision, and status is always a column its owner wrote.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from typing import Any, Iterable, Optional

from db import repo
from sparsity_core.jobs.executors import Executor, Handle, LocalExecutor, end_stale_child

log = logging.getLogger("sparsity.worker")
STOP_REASON = "re-queued: the worker stopped"


def execute(run_id: int, token: Optional[str] = None, target: Optional[str] = None) -> bool:
    """Run one claimed run in this process; returns True when it succeeded. Every write goes
    through `token` (None: a run not claimed from the queue, as the CLI's foreground run). The
    stored spec is read at its own version (an older one is upgraded; a newer one fails the run)."""
    from sparsity_core.jobs.executors import EXECUTORS, resolve
    from sparsity_core.jobs.store_context import StoreContext
    from sparsity_core.specs import SpecError, parse_spec

    run = repo.get_run(run_id)
    try:
        spec = parse_spec(run.spec, version=run.spec_version)
    except SpecError as exc:
        repo.finish_run(run_id, "failed", token=token,
                        error=f"the stored spec (version {run.spec_version}) cannot be run: {exc}")
        return False
    try:
        fn = resolve(target or EXECUTORS[run.kind])
        fn(spec, StoreContext(run_id, token))
    except BaseException as exc:  # noqa: BLE001  (the run's record must say what happened)
        message = str(exc) or type(exc).__name__
        if isinstance(exc, MemoryError) or "out of memory" in message.lower():
            message = f"out of memory: {message}"
        repo.finish_run(run_id, "failed", token=token, error=f"{type(exc).__name__}: {message}",
                        traceback=traceback.format_exc())
        return False
    # False: it had ended already (cancelled), or this claim no longer owns it
    return repo.finish_run(run_id, "succeeded", token=token, message="done")


def supervise(run_id: int, target: Optional[str] = None, heartbeat_s: float = 2.0) -> str:
    """Run one run (already `running`, not claimed: the CLI's foreground `run`) in a local child
    until it ends; returns the final status. Ctrl-C reaches the caller as KeyboardInterrupt after
    the child was ended."""
    executor = LocalExecutor()
    handle = executor.start(repo.get_run(run_id), None, target)
    repo.heartbeat(run_id, child_pid=executor.pid(handle))
    try:
        while (outcome := executor.poll(handle)) is None:
            handle.job.join(timeout=heartbeat_s)
            repo.heartbeat(run_id)
            if repo.cancel_requested(run_id):
                executor.end(handle)
                repo.finish_run(run_id, "cancelled", message="cancelled while running")
    except BaseException:
        executor.end(handle)
        raise
    if outcome.error:
        repo.finish_run(run_id, "failed", error=outcome.error)
    return repo.get_run(run_id).status


def end_orphan_processes(orphans: Iterable[Any]) -> list[int]:
    """End the local child of each orphan that ran on this host and is still alive (checked to be
    that run's child, never a stranger reusing the pid). Returns the run ids whose process it ended."""
    host = socket.gethostname()
    ended = []
    for orphan in orphans:
        if (orphan.worker or "").split(":")[0] == host and end_stale_child(orphan.child_pid, orphan.run_id):
            ended.append(orphan.run_id)
    if ended:
        log.warning("ended the still-running process of orphaned run(s) %s", ended)
    return ended


class Worker:
    """Claims runs while its executor has room, supervises them, re-queues them on a graceful stop."""

    def __init__(self, poll_s: float = 0.5, heartbeat_s: float = 2.0, stale_after_s: float = 30.0,
                 executors: Optional[dict[str, str]] = None, executor: Optional[Executor] = None):
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self) % 10000}"
        self.poll_s, self.heartbeat_s, self.stale_after_s = poll_s, heartbeat_s, stale_after_s
        self.executors = executors or {}  # kind -> "module:function" overrides (tests)
        self.executor: Executor = executor or LocalExecutor()
        self.active: dict[int, Handle] = {}
        self.stop = threading.Event()
        self._last_beat = 0.0

    # ---------------------------------------------------------------- recovery
    def recover(self) -> list[int]:
        """Orphans of dead workers: re-queued once, then failed; their live processes here ended."""
        orphans = repo.mark_orphans(self.stale_after_s)
        if orphans:
            end_orphan_processes(orphans)
            log.warning("orphaned run(s): %s", ", ".join(f"{o.run_id} {o.action}" for o in orphans))
        return [o.run_id for o in orphans]

    # ---------------------------------------------------------------- one run's life
    def claim(self) -> Optional[Handle]:
        """Claim the oldest queued run and start it on the executor; None when the queue is empty."""
        run = repo.claim_next(self.id)
        if run is None:
            return None
        log.info("run %s (%s %s) claimed for the %s executor", run.id, run.kind, run.model, self.executor.name)
        handle = self.executor.start(run, run.claim_token, self.executors.get(run.kind))
        pid = self.executor.pid(handle) if hasattr(self.executor, "pid") else None
        repo.heartbeat(run.id, child_pid=pid)
        self.active[run.id] = handle
        self._beat_worker()
        return handle

    def tend(self) -> list[int]:
        """One supervision round over the active runs; returns the ids of those that ended."""
        beat = time.monotonic() - self._last_beat >= self.heartbeat_s
        ended = []
        for run_id, handle in list(self.active.items()):
            outcome = self.executor.poll(handle)
            if outcome is None and beat:
                repo.heartbeat(run_id)
                if repo.cancel_requested(run_id):
                    self.executor.end(handle, forced=True)
                    repo.finish_run(run_id, "cancelled", token=handle.token, message="cancelled while running")
                    outcome = self.executor.poll(handle)
            if outcome is None:
                continue
            if outcome.error:
                repo.finish_run(run_id, "failed", token=handle.token, error=outcome.error)
            del self.active[run_id]
            ended.append(run_id)
            log.info("run %s %s", run_id, repo.get_run(run_id).status)
        if beat:
            self._last_beat = time.monotonic()
            self._beat_worker()
        return ended

    def run_one(self) -> Optional[int]:
        """Claim one queued run and supervise it to its end; its id, or None for an empty queue."""
        handle = self.claim()
        if handle is None:
            return None
        try:
            while handle.run_id in self.active and not self.stop.is_set():
                self.tend()
                self.stop.wait(self.poll_s)
        finally:
            self.shutdown()
        return handle.run_id

    def shutdown(self) -> list[int]:
        """Graceful stop: end every active job and put its run back in the queue (attempt not counted)."""
        requeued = []
        for run_id, handle in list(self.active.items()):
            self.executor.end(handle, forced=True)
            if repo.requeue_run(run_id, handle.token, STOP_REASON):
                requeued.append(run_id)
            del self.active[run_id]
        if requeued:
            log.info("re-queued run(s) %s: the worker stopped", requeued)
        return requeued

    # ---------------------------------------------------------------- the loop
    def run_forever(self, max_jobs: Optional[int] = None) -> None:
        self.recover()
        self._beat_worker()
        claimed, last_recover = 0, time.monotonic()
        try:
            while not self.stop.is_set():
                done = max_jobs is not None and claimed >= max_jobs
                if done and not self.active:
                    break
                while not done and len(self.active) < self.executor.capacity and self.claim() is not None:
                    claimed += 1
                    done = max_jobs is not None and claimed >= max_jobs
                self.tend()
                if time.monotonic() - last_recover > self.heartbeat_s and not self.active:
                    self.recover()
                    last_recover = time.monotonic()
                self.stop.wait(self.poll_s)
        finally:
            self.shutdown()
            repo.worker_gone(self.id)
            self.executor.close()

    def _beat_worker(self) -> None:
        current = next(iter(self.active), None)
        status = getattr(self.executor, "status", None)
        if status is not None:  # the Ray executor: the sidebar shows the cluster's free resources
            repo.worker_heartbeat(self.id, current, info={"executor": self.executor.name, "cluster": status()})
        else:
            repo.worker_heartbeat(self.id, current)


def make_executor(name: str = "local", ray_address: Optional[str] = None,
                  max_concurrent: Optional[int] = None) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from sparsity_core.jobs.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, max_concurrent=max_concurrent)
    raise ValueError(f"unknown executor {name!r}; known: local, ray")


def main(executor: str = "local", ray_address: Optional[str] = None, max_concurrent: Optional[int] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations are not news
    worker = Worker(executor=make_executor(executor, ray_address, max_concurrent))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop.set())
    log.info("worker %s (%s executor, %d at once) on %s", worker.id, worker.executor.name,
             worker.executor.capacity, _safe_url())
    worker.run_forever()


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    from db.engine import database_url

    return make_url(database_url()).render_as_string(hide_password=True)
