"""Which core function runs each job kind, and what it checks before a run is queued.

Targets are "module:function" strings, imported in the job's child process, so the worker itself
stays light and a lab's import error fails only that lab's runs.
"""

from __future__ import annotations

import importlib
from typing import Callable

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


def resolve(target: str) -> Callable:
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)
