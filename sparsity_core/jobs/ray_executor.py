"""The Ray executor: each claimed run becomes one Ray task, with the resources its spec needs.

    python -m sparsity_core worker --executor ray                      # a local Ray, started here
    python -m sparsity_core worker --executor ray --ray-address auto   # the cluster of this machine

The task runs `worker.execute(run_id, token, target)`, the same job as a local child, and writes to
the store named by SPARSITY_DB_URL (passed with SPARSITY_HOME, SPARSITY_CACHE, SPARSITY_ARTIFACTS
through the task's runtime_env, so every node writes where the app reads). It records the Ray node it
ran on in `info["executor"]`. A run asks for num_cpus=1 (a kernel spec's `threads` when given, up
to the largest node's CPUs) and num_gpus=1 when its spec asks for CUDA, so a GPU run waits for a GPU
node instead of failing on a CPU one.

Policy for a node that dies mid-run: the run ends `failed` with "node lost: ...", no retry (the task
has max_retries=0: a job that half-wrote its metrics is not silently re-run; the person re-submits).
Other runs go on. Cancel is `ray.cancel(ref, force=True)`. Tasks belong to the worker's Ray driver:
when the worker dies Ray ends them too, and a restarted worker re-queues or fails the runs left
`running` (repo.mark_orphans); a straggler's writes are refused by the claim token either way.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Optional

from sparsity_core.jobs.executors import Handle, Outcome, spec_device, where_it_ran

PASSED_ENV = ("SPARSITY_DB_URL", "SPARSITY_HOME", "SPARSITY_CACHE", "SPARSITY_ARTIFACTS", "HF_HUB_OFFLINE",
              "TOKENIZERS_PARALLELISM")
ROOT = Path(__file__).resolve().parents[2]  # the folder holding sparsity_core/ and db/


def _run_task(run_id: int, token: str, target: Optional[str], device: str) -> bool:
    """What runs on a Ray node: say where, then the same job as a local child."""
    import ray

    from db import repo
    from sparsity_core.jobs.worker import execute

    if device == "cuda":  # name the node's GPU that Ray gave the task (it sets CUDA_VISIBLE_DEVICES to it)
        device = "cuda (GPU " + ",".join(str(g) for g in ray.get_gpu_ids()) + ")"
    node = ray.get_runtime_context().get_node_id()
    repo.update_info(run_id, token=token, executor=where_it_ran("ray", node, device))
    return execute(run_id, token, target)


def node_lost(exc: BaseException) -> bool:
    """True for the errors Ray raises when the node (or the worker process) under a task went away."""
    from ray import exceptions as rx

    lost = (rx.NodeDiedError, rx.WorkerCrashedError, rx.ObjectLostError, rx.LocalRayletDiedError)
    if isinstance(exc, lost):
        return True
    cause = getattr(exc, "cause", None)
    return isinstance(exc, rx.RayTaskError) and isinstance(cause, lost)


class RayExecutor:
    """Runs claimed runs as Ray tasks; `capacity` of them at once (default: the cluster's CPUs)."""

    name = "ray"

    def __init__(self, address: Optional[str] = None, max_concurrent: Optional[int] = None):
        import ray

        self.ray = ray
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        # the nodes import sparsity_core from the same path (a shared checkout or the same install)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        for key in ("SPARSITY_HOME", "SPARSITY_CACHE", "SPARSITY_ARTIFACTS"):  # absolute: nodes have other cwds
            if key in env and "://" not in env[key]:
                env[key] = str(Path(env[key]).resolve())
        if "SPARSITY_HOME" not in env:
            env["SPARSITY_HOME"] = str(Path("data").resolve())
        if "SPARSITY_DB_URL" not in env:
            from db.engine import database_url

            env["SPARSITY_DB_URL"] = database_url()
        if not ray.is_initialized():
            if address is None:  # a Ray of our own on this machine: all its cores, no dashboard
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        self.runtime_env = {"env_vars": env}
        self.task = ray.remote(max_retries=0)(_run_task)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = max(1, max_concurrent or cpus)

    def resources(self, spec: dict[str, Any]) -> dict[str, float]:
        """num_cpus / num_gpus of the task of a run with stored `spec`."""
        cpus = 1
        if spec.get("kind") == "kernel" and spec.get("threads"):
            biggest = max((n["Resources"].get("CPU", 1) for n in self.ray.nodes() if n["Alive"]), default=1)
            cpus = max(1, min(int(spec["threads"]), int(biggest)))
        return {"num_cpus": cpus, "num_gpus": 1 if spec_device(spec) == "cuda" else 0}

    def start(self, run: Any, token: str, target: Optional[str]) -> Handle:
        spec = dict(run.spec or {})
        ref = self.task.options(runtime_env=self.runtime_env, name=f"run-{run.id}",
                                **self.resources(spec)).remote(run.id, token, target, spec_device(spec))
        return Handle(run.id, token, job=ref)

    def poll(self, handle: Handle) -> Optional[Outcome]:
        ready, _ = self.ray.wait([handle.job], timeout=0)
        if not ready:
            return None
        try:
            self.ray.get(handle.job)
            return Outcome()  # execute recorded succeeded / failed itself
        except Exception as exc:  # noqa: BLE001  (whatever Ray says becomes the run's error)
            text = " ".join(str(exc).split())[:500]
            if node_lost(exc):
                return Outcome(error=f"node lost: {type(exc).__name__}: {text}")
            return Outcome(error=f"the Ray task failed: {type(exc).__name__}: {text}")

    def end(self, handle: Handle, forced: bool = True) -> None:
        try:
            self.ray.cancel(handle.job, force=forced)
        except Exception:  # noqa: BLE001  (it finished meanwhile)
            pass

    def status(self) -> dict[str, Any]:
        """The cluster's total and free resources (CPU, GPU, memory ...) and its live nodes."""
        ray = self.ray
        return {"host": socket.gethostname(), "total": dict(ray.cluster_resources()),
                "available": dict(ray.available_resources()),
                "nodes": [{"node": n["NodeID"], "host": n["NodeManagerHostname"], "resources": n["Resources"]}
                          for n in ray.nodes() if n["Alive"]]}

    def close(self) -> None:
        pass  # a worker's own local Ray ends with the worker process (ray.init registered that)
