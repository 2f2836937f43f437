"""topk: keep the k largest pre-activations of each token (Gao et al., OpenAI 2024).

L0 is exactly k (or less when fewer than k are positive). Dead latents get a second chance through
the AuxK loss; decoder rows stay unit-norm with the gradient's parallel part removed; the
pre-encoder bias starts at the geometric median of the data.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sparsity_core.sae.base import SAE, StepContext, register_variant


@register_variant
class TopKSAE(SAE):
    name = "topk"
    unit_norm_decoder = True
    aux_dead = True

    def select(self, pre, ctx: StepContext):
        return self.rows_topk(pre, self.effective_k(ctx))

    def encode(self, x):
        pre = self.pre_acts(x)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))

    def extra_loss(self, x, recon, codes, ctx, parts):
        return self.auxk_loss(x, recon, ctx, parts)
