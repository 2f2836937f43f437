"""flops: ReLU latents with the FLOPs regulariser of sparse embeddings (Paria et al., ICLR 2020).

Penalty = sum over latents of (mean activation over the batch)^2. Squaring the per-latent mean
makes a busy latent expensive and a quiet one cheap, so non-zeros spread evenly across latents
(which is what minimises the expected multiply count of a sparse product). Decoder rows are kept at
unit norm so the penalty cannot be dodged by rescaling.
"""

from __future__ import annotations

import torch

from sparsity_core.sae.base import SAE, StepContext, register_variant


@register_variant
class FlopsSAE(SAE):
    name = "flops"
    unit_norm_decoder = True
    initial_coeff = 30.0  # sum_j mean_j^2 is ~d_sae times smaller than the L1 term at equal density

    def select(self, pre, ctx: StepContext):
        rows, cols = (pre > 0).nonzero(as_tuple=True)
        return rows, cols

    def extra_loss(self, x, recon, codes, ctx, parts):
        means = torch.zeros(self.d_sae, dtype=x.dtype, device=x.device).index_add(0, codes.cols, codes.vals) / len(x)
        flops = means.pow(2).sum()
        parts["flops"] = flops
        return self.coeff * ctx.sparsity_scale * flops
