"""Every SAE variant, imported so that the registry is complete: `VARIANTS[name](d_in, d_sae, k)`."""

from sparsity_core.sae import batchtopk, feature_choice, flops, matryoshka, mutual_choice, relu_l1, topk  # noqa: F401
from sparsity_core.sae.base import SAE, VARIANTS, register_variant

__all__ = ["SAE", "VARIANTS", "register_variant"]
