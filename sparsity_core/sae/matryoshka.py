"""matryoshka_batchtopk: BatchTopK whose dictionary is nested (Bussmann et al. 2025, "Learning
Multi-Level Features with Matryoshka SAEs"; SAELens trains it as `matryoshka_batchtopk`).

The first m latents of the dictionary must rebuild the activation on their own, for every prefix
size m (here 1/16 and 1/4 of the latents, then all of them): the loss is the sum of the prefixes'
reconstruction errors. Early latents so learn general features and later ones refinements,
instead of a general feature being absorbed into many specific ones. Selection, the inference
threshold and AuxK are BatchTopK's.
"""

from __future__ import annotations

from sparsity_core.sae.base import Codes, register_variant, sparse_decode
from sparsity_core.sae.batchtopk import BatchTopKSAE

PREFIX_FRACTIONS = (1 / 16, 1 / 4)  # nested levels below the whole dictionary


@register_variant
class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    name = "matryoshka_batchtopk"

    def prefixes(self) -> list[int]:
        """Prefix sizes below d_sae, ascending (the whole dictionary is the base loss's)."""
        return sorted({max(1, round(f * self.d_sae)) for f in PREFIX_FRACTIONS} - {self.d_sae})

    def extra_loss(self, x, recon, codes, ctx, parts):
        loss = super().extra_loss(x, recon, codes, ctx, parts)  # AuxK
        for m in self.prefixes():
            keep = codes.cols < m  # the active pairs of the first m latents; rows stay ascending
            prefix = Codes(codes.rows[keep], codes.cols[keep], codes.vals[keep], codes.n_tokens, codes.n_latents)
            mse = (sparse_decode(prefix, self.W_dec) + self.b_dec - x).pow(2).sum(-1).mean()
            parts[f"mse_prefix_{m}"] = mse
            loss = loss + mse
        return loss
