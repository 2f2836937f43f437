"""Jobs: submit a spec, cancel a run, read its status. A worker (jobs.worker) runs them.

    run_id = submit({"kind": "prune", "model": "digits-mlp", "sparsities": [0, 0.5]})
    status(run_id)  -> "queued" | "running" | "succeeded" | "failed" | "cancelled"
    cancel(run_id)

`jobs.context` (the run context every core function receives) imports neither the store nor torch;
the names below load the store only when first used, so a compute module that imports the context
does not drag `db` in with it.
"""

from importlib import import_module

__all__ = ["cancel", "load_pruned_run", "preflight", "status", "submit"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module("sparsity_core.jobs.api"), name)
    raise AttributeError(f"module 'sparsity_core.jobs' has no attribute {name!r}")
