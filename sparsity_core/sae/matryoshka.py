"""matryoshka_batchtopk: BatchTopK whose dictionary is nested (Bussmann et al. 2025, "Learning
Multi-Level Features with Matryoshka SAEs"; SAELens trains it as `matryoshka_batchtopk`).

    sae = VARIANTS["matryoshka_batchtopk"](384, 3072, k=32, prefixes=[1 / 16, 1 / 4, 1.0])
    sae.prefixes()   # [192, 768]: the nested levels below the whole dictionary

The first m latents of the dictionary must rebuild the activation on their own, for every prefix
size m (by default 1/16 and 1/4 of the latents, then all of them; `SAESpec.prefixes` sets them as
fractions of the dictionary): the loss is the sum of the prefixes' reconstruction errors. Early
latents so learn general features and later ones refinements, instead of a general feature being
absorbed into many specific ones. Selection, the inference threshold and AuxK are BatchTopK's.
"""

from __future__ import annotations

from typing import Optional, Sequence

from sparsity_core.catalog.sae import MATRYOSHKA_PREFIXES
from sparsity_core.sae.base import Codes, register_variant, sparse_decode
from sparsity_core.sae.batchtopk import BatchTopKSAE


@register_variant
class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    name = "matryoshka_batchtopk"

    def __init__(self, d_in, d_sae, k=32, l1_coeff=None, seed=0, prefixes: Optional[Sequence[float]] = None):
        super().__init__(d_in, d_sae, k, l1_coeff, seed)
        fractions = tuple(float(f) for f in (prefixes if prefixes is not None else MATRYOSHKA_PREFIXES))
        if not fractions or any(not 0 < f <= 1 for f in fractions) or list(fractions) != sorted(set(fractions)):
            raise ValueError(f"prefixes must be increasing fractions in (0, 1], got {list(fractions)}")
        self.prefix_fractions = fractions

    def prefixes(self) -> list[int]:
        """Prefix sizes below d_sae, ascending (the whole dictionary is the base loss's)."""
        return sorted({max(1, round(f * self.d_sae)) for f in self.prefix_fractions} - {self.d_sae})

    def extra_loss(self, x, recon, codes, ctx, parts):
        loss = super().extra_loss(x, recon, codes, ctx, parts)  # AuxK
        for m in self.prefixes():
            keep = codes.cols < m  # the active pairs of the first m latents; rows stay ascending
            prefix = Codes(codes.rows[keep], codes.cols[keep], codes.vals[keep], codes.n_tokens, codes.n_latents)
            mse = (sparse_decode(prefix, self.W_dec) + self.b_dec - x).pow(2).sum(-1).mean()
            parts[f"mse_prefix_{m}"] = mse
            loss = loss + mse
        return loss

    def config(self):
        return {**super().config(), "prefixes": list(self.prefix_fractions)}
