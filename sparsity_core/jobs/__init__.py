"""Jobs: submit a spec, cancel a run, read its status. A worker (jobs.worker) runs them.

    run_id = submit({"kind": "prune", "model": "digits-mlp", "sparsities": [0, 0.5]})
    status(run_id)  -> "queued" | "running" | "succeeded" | "failed" | "cancelled"
    cancel(run_id)

`jobs.context` (the run context every core function receives) imports neither the store nor torch;
the names below load the store only when first used, so a compute module that imports the context
does not drag `db` in with it.
"""

from importlib import import_module

__all__ = ["cancel", "cluster_status", "load_pruned_run", "preflight", "status", "submit"]


def cluster_status(within_s: float = 30.0):
    """The Ray cluster's resources as the live Ray worker last reported them, or None (no Ray
    worker, or a store without `workers.info`): {"executor": "ray", "cluster": {"total": {...},
    "available": {...}, "nodes": [{"node", "host", "resources"}], "host": ...}}."""
    from db import repo

    for row in repo.live_workers(within_s):
        info = getattr(row, "info", None) or {}
        if info.get("executor") == "ray":
            return info
    return None


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module("sparsity_core.jobs.api"), name)
    raise AttributeError(f"module 'sparsity_core.jobs' has no attribute {name!r}")
