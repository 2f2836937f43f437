"""feature_choice: each latent chooses its top m tokens of the batch (Ayonrinde 2024).

The total budget is k x batch pairs, shared equally: m = k x batch / d_sae tokens per latent. A
latent can never go unused, so there are no dead latents by construction, and a token gets as many
latents as chose it (adaptive computation per token). At inference each latent keeps its own
threshold, the running mean of the smallest activation it chose during training.
"""

from __future__ import annotations

import torch

from sparsity_core.sae.base import SAE, StepContext, register_variant


@register_variant
class FeatureChoiceSAE(SAE):
    name = "feature_choice"

    def __init__(self, d_in, d_sae, k=32, l1_coeff=None, seed=0):
        super().__init__(d_in, d_sae, k, l1_coeff, seed)
        self.register_buffer("thresholds", torch.zeros(d_sae))

    def capacity(self, n_tokens: int, ctx: StepContext) -> int:
        """Tokens each latent may take: the k x batch budget split evenly (at least 1)."""
        return max(1, min(n_tokens, self.effective_k(ctx) * n_tokens // self.d_sae))

    def select(self, pre, ctx: StepContext):
        m = self.capacity(len(pre), ctx)
        rows = pre.topk(m, dim=0, sorted=False).indices.reshape(-1)  # (m, d_sae) token ids
        cols = torch.arange(self.d_sae, device=pre.device).repeat(m)
        order = torch.argsort(rows, stable=True)
        return rows[order], cols[order]

    @torch.no_grad()
    def after_select(self, codes, ctx):
        momentum = self.threshold_momentum(ctx)
        if momentum is None or not codes.vals.numel():
            return
        low = torch.full((self.d_sae,), float("inf"), device=codes.vals.device)
        low = low.scatter_reduce(0, codes.cols, codes.vals.detach(), reduce="amin")
        seen = torch.isfinite(low)  # a latent whose chosen tokens were all negative keeps its value
        self.thresholds.copy_(torch.where(seen, momentum * self.thresholds + (1 - momentum) * low, self.thresholds))

    @torch.no_grad()
    def calibrate(self, x):
        """Per-latent thresholds that give each latent its training share of a large batch; the
        running means lag behind a fast-moving encoder in short runs, this does not."""
        per = self.selection_minima(x)[1]
        self.thresholds.copy_(torch.where(torch.isfinite(per), per, self.thresholds))

    def encode(self, x):
        pre = self.pre_acts(x)
        return pre * (pre > self.thresholds)

    def config(self):
        return {**super().config(), "thresholds": "per latent (in sae_weights: threshold)"}
