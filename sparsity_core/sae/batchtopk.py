"""batchtopk: keep the k x batch largest pre-activations of the whole batch (Bussmann et al. 2024).

Tokens share the budget, so an easy token can use fewer latents and a hard one more. At inference
there is no batch to rank against, so a single threshold is learned during training: the running
mean of the smallest kept activation. A token's share is capped at 4k latents (candidates come from
its own top 4k), which keeps the selection one cheap per-row top-k instead of a sort of the batch.
"""

from __future__ import annotations

import torch

from sparsity_core.sae.base import SAE, StepContext, register_variant

CANDIDATES = 4  # a token may take up to 4k of the batch's k x batch budget


@register_variant
class BatchTopKSAE(SAE):
    name = "batchtopk"
    unit_norm_decoder = True
    aux_dead = True

    def select(self, pre, ctx: StepContext):
        k = self.effective_k(ctx)
        # Step 1: each token's 4k best pairs are the candidates
        cand = pre.topk(min(self.d_sae, CANDIDATES * k), dim=-1, sorted=False)
        # Step 2: the k x batch best candidates of the whole batch win
        flat = cand.values.reshape(-1).topk(k * len(pre), sorted=False).indices
        rows = torch.div(flat, cand.indices.shape[1], rounding_mode="floor")
        cols = cand.indices.reshape(-1)[flat]
        order = torch.argsort(rows, stable=True)
        return rows[order], cols[order]

    @torch.no_grad()
    def after_select(self, codes, ctx):
        momentum = self.threshold_momentum(ctx)
        if momentum is not None and codes.vals.numel():
            low = codes.vals.detach().min()
            self.threshold.copy_(momentum * self.threshold + (1 - momentum) * low)

    @torch.no_grad()
    def calibrate(self, x):
        """The threshold that reproduces the training rule's L0 on a large batch."""
        self.threshold.copy_(self.selection_minima(x)[0])

    def encode(self, x):
        pre = self.pre_acts(x)
        return pre * (pre > self.threshold)

    def extra_loss(self, x, recon, codes, ctx, parts):
        return self.auxk_loss(x, recon, ctx, parts)
