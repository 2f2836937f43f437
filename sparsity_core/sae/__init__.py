"""Sparse autoencoders: variants (one module each, registered by name), trainer, metrics,
feature statistics and export.

    from sparsity_core.sae import VARIANTS
    sae = VARIANTS["topk"](d_in=384, d_sae=3072, k=32)

Importing this package imports every variant module, so the registry is complete.
"""

from sparsity_core.sae import batchtopk, feature_choice, flops, mutual_choice, relu_l1, topk  # noqa: F401
from sparsity_core.sae.base import SAE, VARIANTS, register_variant

__all__ = ["SAE", "VARIANTS", "register_variant"]
