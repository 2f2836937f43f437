"""Pruning methods, one module each, registered by name.

    from sparsity_core.pruning import METHODS
    masks = METHODS["wanda"]().prune(linears, sparsity=0.5, pattern="2:4", stats=stats)

Importing this package imports every method module, so the registry is complete.
"""

from sparsity_core.pruning import dsnot, magnitude, random_baseline, sparsegpt, wanda  # noqa: F401  (register)
from sparsity_core.pruning.base import METHODS, PruningMethod, register_method

__all__ = ["METHODS", "PruningMethod", "register_method"]
