"""relu_l1: the classic SAE, ReLU latents with an L1 penalty weighted by decoder norms.

Loss = ||x - x^||^2 + lambda * sum_j f_j ||W_dec_j|| (Anthropic, "Towards Monosemanticity" and the
April-2024 update): weighting by the decoder norm stops the model from shrinking f and growing
W_dec to dodge the penalty, so no unit-norm constraint is needed.
"""

from __future__ import annotations

from sparsity_core.sae.base import SAE, StepContext, register_variant


@register_variant
class ReluL1SAE(SAE):
    name = "relu_l1"
    initial_coeff = 1.0

    def select(self, pre, ctx: StepContext):
        rows, cols = (pre > 0).nonzero(as_tuple=True)
        return rows, cols

    def extra_loss(self, x, recon, codes, ctx, parts):
        l1 = (codes.vals * self.W_dec.norm(dim=-1)[codes.cols]).sum() / len(x)
        parts["l1"] = l1
        return self.coeff * ctx.sparsity_scale * l1
