"""Which core function runs each job kind, what it checks before a run is queued, and where it runs.

Targets are "module:function" strings, imported where the job runs (a child process, a Ray task),
so the worker itself stays light and a lab's import error fails only that lab's runs.

An executor is where a claimed run executes. The worker speaks to it through four calls:

    handle = executor.start(run, token, target)  # the run begins elsewhere; returns at once
    outcome = executor.poll(handle)              # None while it runs, else how it ended (Outcome)
    executor.end(handle, forced=True)            # cancel / graceful stop: the job is ended
    executor.capacity                            # how many runs it takes at once

Two exist: `local` (below: one spawned child process, one run at a time, the default) and `ray`
(jobs/ray_executor.py: a Ray task per run, as many as the cluster has room for). Either way the job
itself is `worker.execute(run_id, token, target)`, which writes its own progress, metrics,
artifacts and final status through the claim token, so only the claim that owns a run writes to it.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

EXECUTORS: dict[str, str] = {
    "prune": "sparsity_core.pruning.run:run_prune",
    "kernel": "sparsity_core.kernels.run:run_kernel",
    "explain": "sparsity_core.explain.run:run_explain",
    "sae": "sparsity_core.sae.run:run_sae",
}

# each kind's checks that need more than the spec alone (a model's shapes, a parent run):
# preflight_<kind>(spec, parent) raises SpecError with field messages before anything is stored
PREFLIGHTS: dict[str, str] = {
    "prune": "sparsity_core.pruning.checks:preflight_prune",
    "kernel": "sparsity_core.kernels.checks:preflight_kernel",
    "explain": "sparsity_core.explain.checks:preflight_explain",
    "sae": "sparsity_core.sae.checks:preflight_sae",
}

RUN_ENV = "SPARSITY_RUN"  # "<run_id>:<token>" in a local child's environment: how a worker knows its own


def resolve(target: str) -> Callable:
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)


def spec_device(spec: dict[str, Any]) -> str:
    """"cuda" when the stored spec asks for CUDA (kernel `device: cuda`, SAE `device: cuda[:i]`),
    else "cpu". `auto` is CPU here: it takes a GPU when the node has one, and must not wait for one."""
    device = str(spec.get("device") or "cpu").strip().lower()
    return "cuda" if device.startswith("cuda") else "cpu"


def where_it_ran(name: str, node: Optional[str], device: str) -> dict[str, Any]:
    """The `info["executor"]` record: which executor, node and host ran the run, on which device."""
    return {"name": name, "node": node, "host": socket.gethostname(), "device": device}


# ---------------------------------------------------------------- the interface
@dataclass
class Outcome:
    """How a job ended, as the executor saw it. `error` is None when the job recorded its own end
    (succeeded, or failed with its traceback); otherwise it is what the worker writes as `failed`."""

    error: Optional[str] = None


@dataclass
class Handle:
    run_id: int
    token: str
    started: float = field(default_factory=time.monotonic)
    job: Any = None  # the executor's own: a Process, a Ray ObjectRef


class Executor(Protocol):
    name: str
    capacity: int

    def start(self, run: Any, token: str, target: Optional[str]) -> Handle: ...
    def poll(self, handle: Handle) -> Optional[Outcome]: ...
    def end(self, handle: Handle, forced: bool = True) -> None: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------- local: a spawned child
SPAWN = mp.get_context("spawn")  # a fresh interpreter per job: no inherited DB connections or threads
_ENV_LOCK = threading.Lock()  # RUN_ENV is set around one spawn at a time


class LocalExecutor:
    """One run at a time in a spawned child process of this worker (the default).

    The child cannot outlive the worker: on Linux it asks the kernel for SIGKILL when its parent
    dies (PR_SET_PDEATHSIG; note that the "parent" is the thread that started it, so start and
    supervise from one long-lived thread), and a daemon thread in the child checks every second
    that its parent is still its parent (other systems, or a death between spawn and prctl)."""

    name = "local"
    capacity = 1

    def start(self, run: Any, token: str, target: Optional[str]) -> Handle:
        child = SPAWN.Process(target=_child, args=(run.id, token, target, os.getpid(), spec_device(run.spec or {})),
                              name=f"run-{run.id}", daemon=True)
        with _ENV_LOCK:  # the child inherits the environment at spawn: it names the run it is
            before = os.environ.get(RUN_ENV)
            os.environ[RUN_ENV] = f"{run.id}:{token}"
            try:
                child.start()
            finally:
                if before is None:
                    os.environ.pop(RUN_ENV, None)
                else:
                    os.environ[RUN_ENV] = before
        return Handle(run.id, token, job=child)

    def poll(self, handle: Handle) -> Optional[Outcome]:
        child = handle.job
        if child.is_alive():
            return None
        child.join()
        if child.exitcode in (0, 1):  # 1 = the child recorded its own failure
            return Outcome()
        how = f"killed by signal {-child.exitcode}" if child.exitcode and child.exitcode < 0 \
            else f"exit code {child.exitcode}"
        hint = " (SIGKILL: often the out-of-memory killer)" if child.exitcode == -signal.SIGKILL else ""
        return Outcome(error=f"the job's process died: {how}{hint}")

    def end(self, handle: Handle, forced: bool = True) -> None:
        child = handle.job
        child.terminate()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join()

    def pid(self, handle: Handle) -> int:
        return handle.job.pid

    def close(self) -> None:
        pass


def _child(run_id: int, token: str, target: Optional[str], parent_pid: int, device: str) -> None:
    """The local child's entry: tie its life to the worker's, say where it runs, run the job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which decides
    die_with_parent(parent_pid)
    from db import repo
    from sparsity_core.jobs.worker import execute

    repo.update_info(run_id, token=token, executor=where_it_ran("local", None, device))
    ok = execute(run_id, token, target)
    os._exit(0 if ok else 1)


def die_with_parent(parent_pid: int, every_s: float = 1.0) -> None:
    """End this process (SIGKILL, as PR_SET_PDEATHSIG would) as soon as `parent_pid` is gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before the prctl took: re-parented already
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def end_stale_child(pid: Optional[int], run_id: int) -> bool:
    """End process `pid` of this host when it is still alive AND is the local child of run
    `run_id` (a multiprocessing spawn child whose environment names that run); never a stranger
    that reuses the pid. Returns True when it ended one."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        named = (proc.environ().get(RUN_ENV) or "").split(":")[0]
        if "multiprocessing" not in cmdline or named != str(run_id):
            return False
        proc.kill()
        proc.wait(timeout=5)
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, psutil.TimeoutExpired):
        return False
