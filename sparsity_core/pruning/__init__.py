"""Pruning methods, one module each, registered by name.

    from sparsity_core.pruning import METHODS
    masks = METHODS["magnitude"]().prune(linears, sparsity=0.5, scope="layer", pattern="unstructured")

Importing this package imports every method module, so the registry is complete.
"""

from sparsity_core.pruning import magnitude  # noqa: F401  (registers itself)
from sparsity_core.pruning.base import METHODS, PruningMethod, register_method

__all__ = ["METHODS", "PruningMethod", "register_method"]
