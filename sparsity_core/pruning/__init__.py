"""The pruning lab: one module per method, registered by name under the catalog's names, and the job.

    from sparsity_core.pruning import METHODS
    masks = METHODS["wanda"]().prune(linears, sparsity=0.5, pattern="2:4", stats=stats)

Importing the package loads nothing heavy, so the checks made before a run is queued
(`pruning.checks`) stay torch-free in the app; asking for `METHODS` imports every method module,
so the registry is complete. The catalog's activation-sparsity methods (WINA, TEAL: `activation=True`)
prune no weights, so they are not PruningMethods: their registry is `ACTIVATION_METHODS` (activation.py).
"""

import importlib

METHOD_MODULES = ("dsnot", "magnitude", "random_baseline", "sparsegpt", "wanda")

__all__ = ["ACTIVATION_METHODS", "METHODS", "PruningMethod", "register_method"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "ACTIVATION_METHODS":  # WINA / TEAL (activation.py): they sparsify inputs, never weights
        return importlib.import_module(f"{__name__}.activation").ACTIVATION_METHODS
    for module in METHOD_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return getattr(importlib.import_module(f"{__name__}.base"), name)
