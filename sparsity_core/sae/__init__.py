"""Sparse autoencoders: variants (one module each, registered under the catalog's names), trainer,
metrics, feature statistics and export.

    from sparsity_core.sae import VARIANTS
    sae = VARIANTS["topk"](d_in=384, d_sae=3072, k=32)

The package itself imports nothing heavy, so the app can run `sae.checks` (the pre-run check)
without torch; the names below import every variant module (`sae.variants`) when first used.
"""

from importlib import import_module

__all__ = ["SAE", "VARIANTS", "register_variant"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module("sparsity_core.sae.variants"), name)
    raise AttributeError(f"module 'sparsity_core.sae' has no attribute {name!r}")
