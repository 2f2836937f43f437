"""gated: which latents fire and how strongly are two paths (Rajamanoharan et al. 2024, "Improving
Dictionary Learning with Gated Sparse Autoencoders"; SAELens' `gated`).

    sae = VARIANTS["gated"](d_in=384, d_sae=3072, k=32)   # L1 coefficient steered to L0 = 32
    f = sae.encode(x)                                      # 1[pi_gate > 0] * relu(pi_mag)

    pi_gate = (x - b_dec) @ W_gate + b_gate          # decides which latents are on
    pi_mag  = (x - b_dec) @ W_mag  + b_mag           # decides their size
    W_mag   = exp(r_mag) * W_gate                    # weight sharing: one scale per latent
    loss    = ||x - x^||^2 + lambda * sum_j relu(pi_gate_j) ||W_dec_j||
              + ||x - relu(pi_gate) @ stopgrad(W_dec) - stopgrad(b_dec)||^2

The L1 penalty acts on the gate only, so it picks the active set without shrinking the magnitudes
that reconstruct (ReLU + L1's bias toward too-small activations); the auxiliary reconstruction
through a frozen decoder keeps the gate's pre-activations meaningful. Decoder rows are unit-norm
(the paper's constraint) and the penalty keeps SAELens' decoder-norm weights, so it cannot be
dodged by rescaling either way. lambda is the lab's penalty coefficient, steered toward L0 = k by
the shared controller; b_gate starts from the first batch so that L0 = k at step 0 (as jumprelu's
thresholds do), which a short token budget needs: biases move only ~lr per Adam step.

Here the base encoder (W_enc, b_enc) is the magnitude path and the gate is derived from it:
W_gate = exp(-r_mag) * W_enc, the paper's weight sharing read the other way round (the same set of
functions). Since r_mag scales each latent's column, pi_gate = exp(-r_mag) (pi_mag - b_mag) + b_gate
follows from pi_mag alone, so selection stays one dense matmul plus sparse work per step, and the
export writes SAELens' own parameters (W_enc = W_gate, b_gate, r_mag, b_mag).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sparsity_core.sae.base import SAE, Codes, StepContext, _GatherPre, register_variant, sparse_decode
from sparsity_core.sae.jumprelu import first_batch_thresholds, least_squares_scale


@register_variant
class GatedSAE(SAE):
    name = "gated"
    unit_norm_decoder = True  # as in the paper; the L1's decoder-norm weights are then 1 (SAELens keeps them)
    initial_coeff = 1.0

    def __init__(self, d_in, d_sae, k=32, l1_coeff=None, seed=0):
        super().__init__(d_in, d_sae, k, l1_coeff, seed)
        self.r_mag = nn.Parameter(torch.zeros(d_sae))  # W_mag = exp(r_mag) * W_gate
        self.b_gate = nn.Parameter(torch.zeros(d_sae))
        self.register_buffer("gate_ready", torch.tensor(False))

    @torch.no_grad()
    def init_gate(self, x: Tensor, pre: Tensor) -> Tensor:
        """From the first batch, as jumprelu's thresholds: b_gate = -(jumprelu's first-batch
        threshold of pi_mag), so each gate opens on k/d_sae of the tokens (L0 = k from step 0, none
        dead), and the encoder scaled by the least-squares factor of the first reconstruction
        (b_gate with it, so the same gates open). Returns the rescaled pi_mag."""
        theta = first_batch_thresholds(pre, self.k)  # r_mag = 0, b_mag = 0: pi_gate = pi_mag + b_gate
        c = least_squares_scale(x, torch.relu(pre) * (pre > theta), self.W_dec, self.b_dec)
        self.W_enc.mul_(c)
        self.b_enc.mul_(c)
        self.b_gate.copy_(-c * theta)
        self.gate_ready.fill_(True)
        return pre * c

    def codes(self, x: Tensor, ctx: StepContext) -> Codes:
        if self.training and not bool(self.gate_ready):
            with torch.no_grad():
                self.init_gate(x, x @ self.W_enc + (self.b_enc - self.b_dec @ self.W_enc))
        return super().codes(x, ctx)

    def gate_pre(self, pre: Tensor) -> Tensor:
        """pi_gate from pi_mag (n, d_sae): exp(-r_mag) (pi_mag - b_mag) + b_gate."""
        return torch.exp(-self.r_mag) * (pre - self.b_enc) + self.b_gate

    # ---- inference
    def encode(self, x):
        pre = self.pre_acts(x)
        return F.relu(pre) * (self.gate_pre(pre) > 0)

    # ---- training
    def select(self, pre, ctx: StepContext):
        with torch.no_grad():
            return (self.gate_pre(pre) > 0).nonzero(as_tuple=True)

    def gate_codes(self, x: Tensor) -> Codes:
        """relu(pi_gate) at its positive pairs, differentiable in W_enc, r_mag, b_gate and b_dec."""
        pre = self._last_pre  # pi_mag of this step, no gradient
        with torch.no_grad():
            centred = pre - self.b_enc  # (x - b_dec) @ W_enc
            rows, cols = (self.gate_pre(pre) > 0).nonzero(as_tuple=True)
        gate = Codes(rows, cols, centred[rows, cols], len(x), self.d_sae)
        centred_sel = _GatherPre.apply(x, self.W_enc, -(self.b_dec @ self.W_enc), gate.vals, gate)
        gate.vals = torch.exp(-self.r_mag)[cols] * centred_sel + self.b_gate[cols]
        return gate

    def extra_loss(self, x, recon, codes, ctx, parts):
        gate = self.gate_codes(x)
        # Step 1: L1 of relu(pi_gate), each latent weighted by its decoder norm
        l1 = (gate.vals * self.W_dec.norm(dim=-1)[gate.cols]).sum() / len(x)
        # Step 2: the gate path alone reconstructs x through a frozen copy of the decoder
        aux = (sparse_decode(gate, self.W_dec.detach()) + self.b_dec.detach() - x).pow(2).sum(-1).mean()
        parts.update(l1=l1, aux=aux)
        return self.coeff.clone() * l1 + aux  # no warm-up ramp: L0 is k from the first step

    def gate_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """SAELens' gated parameters (W_enc = W_gate, b_gate, r_mag, b_mag), in the lab's units."""
        return self.W_enc * torch.exp(-self.r_mag), self.b_gate, self.r_mag, self.b_enc
