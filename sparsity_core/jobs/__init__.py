"""Jobs: submit a spec, cancel a run, read its status. A worker (jobs.worker) runs them.

    run_id = submit({"kind": "prune", "model": "digits-mlp", "sparsities": [0, 0.5]})
    status(run_id)  -> "queued" | "running" | "succeeded" | "failed" | "cancelled"
    cancel(run_id)
"""

from sparsity_core.jobs.api import cancel, preflight, status, submit

__all__ = ["cancel", "preflight", "status", "submit"]
