"""jumprelu: per-latent thresholds, f = z * H(z - theta) (Rajamanoharan et al. 2024, "Jumping Ahead:
Improving Reconstruction Fidelity with JumpReLU Sparse Autoencoders"; SAELens' `jumprelu`).

    sae = VARIANTS["jumprelu"](d_in=384, d_sae=3072, k=32)   # L0 steered to 32
    f = sae.encode(x)                                         # pre * (pre > theta), theta per latent

A latent fires when its pre-activation z clears its own threshold theta, and then passes z on
unchanged (no shrinkage, unlike ReLU + L1). The loss is reconstruction + lambda * L0, where L0 =
sum_j H(z_j - theta_j). H has no useful derivative, so theta learns through a straight-through
estimator with a rectangle kernel K of bandwidth eps (the paper's pseudo-derivatives):

    d/dtheta H(z - theta)            ~ -(1/eps) K((z - theta)/eps)
    d/dtheta [z H(z - theta)]        ~ -(theta/eps) K((z - theta)/eps)

so only (token, latent) pairs within eps/2 of the threshold move it: the L0 term pushes theta up,
the reconstruction pulls it down where the latents just below it would have helped. The encoder
gets the reconstruction gradient of the active pairs only (no STE for z), as in the paper.

What makes it steer to a target L0 within a short token budget (a first attempt here, plain Adam on
log theta from a fixed start, moved L0 too slowly):
- theta starts where each latent fires on k/d_sae of the first batch's tokens, so L0 = k at step 0
  and every latent fires at the same rate (none starts dead);
- theta = exp(log_theta) with log_theta = THETA_SPEED * p for the trained p: Adam moves p by about
  lr per step whatever the gradient's size, so log theta moves THETA_SPEED times faster than the
  encoder's weights (the same as a larger learning rate for theta alone);
- the bandwidth is BANDWIDTH times the median starting threshold: relative to the scale of the
  pre-activations, as the paper's eps = 0.001 is to its normalised activations;
- lambda is the lab's penalty coefficient, steered by the shared controller toward L0 = k (no
  warm-up ramp: L0 is already k at the start).

Decoder rows are unit-norm (thresholds then compare contributions of equal-size directions). A
latent whose z never reaches its band gets no gradient at all; once dead (silent for the trainer's
window), AuxK (Gao et al. 2024) raises its z and Anthropic's pre-activation loss lowers its theta.
Training stays sparse: the pairs that receive any gradient (z > theta - eps/2) go through the
shared kernels, the ones below theta with value 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparsity_core.sae.base import SAE, Codes, StepContext, StepOut, register_variant, sparse_decode

BANDWIDTH = 0.1  # eps as a fraction of the median starting threshold
THETA_SPEED = 10.0  # log theta moves this many times faster than Adam's lr
L0_COEFF = 1.0  # starting lambda: per unit of L0, against squared errors of ~d_in x (1 - FVE) (E||x||^2 = d_in)


def rectangle(u: Tensor) -> Tensor:
    """The rectangle kernel K(u) = 1 on (-1/2, 1/2), else 0."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


@torch.no_grad()
def first_batch_thresholds(pre: Tensor, k: int) -> Tensor:
    """Per-latent thresholds (d_sae,) from a batch's pre-activations (n, d_sae): halfway between each
    latent's m-th and (m+1)-th largest value, m = round(n k / d_sae), so exactly m tokens clear it:
    L0 = k and every latent fires equally often (none starts dead). At least 1e-3 of the largest,
    so that log theta is finite."""
    n, d_sae = pre.shape
    m = min(n - 1, max(1, round(n * k / d_sae)))
    top = pre.topk(m + 1, dim=0).values  # (m + 1, d_sae), descending
    theta = (top[m - 1] + top[m]) / 2
    return theta.clamp(min=1e-3 * float(theta.abs().max().clamp(min=1e-6)))


@torch.no_grad()
def least_squares_scale(x: Tensor, f: Tensor, W_dec: Tensor, b_dec: Tensor) -> float:
    """The c > 0 minimising ||x - b_dec - c f W_dec||^2 (1 if none): scaling the encoder by c keeps
    the same latents active, at sizes that rebuild x instead of overshooting it (an overshoot
    shrinks z under fixed thresholds in the first steps and kills latents)."""
    recon = f @ W_dec
    c = float(((x - b_dec) * recon).sum() / recon.pow(2).sum().clamp(min=1e-12))
    return c if c > 0 else 1.0


class _JumpReLU(torch.autograd.Function):
    """f = z * H(z - theta) per pair; df/dz = H(z - theta), df/dtheta = -(theta/eps) K((z - theta)/eps)."""

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        grad_theta = -(theta / ctx.eps) * rectangle((z - theta) / ctx.eps) * grad
        return grad * (z > theta), grad_theta, None


class _Step(torch.autograd.Function):
    """H(z - theta) per pair; no gradient for z, d/dtheta = -(1/eps) K((z - theta)/eps)."""

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        return None, -(1.0 / ctx.eps) * rectangle((z - theta) / ctx.eps) * grad, None


@register_variant
class JumpReLUSAE(SAE):
    name = "jumprelu"
    unit_norm_decoder = True
    aux_dead = True
    initial_coeff = L0_COEFF

    def __init__(self, d_in, d_sae, k=32, l1_coeff=None, seed=0):
        super().__init__(d_in, d_sae, k, l1_coeff, seed)
        # p: log theta / THETA_SPEED; theta = 1 until the first batch sets it
        self.log_theta_slow = nn.Parameter(torch.zeros(d_sae))
        self.register_buffer("bandwidth", torch.tensor(BANDWIDTH))
        self.register_buffer("theta_ready", torch.tensor(False))

    # ---- thresholds
    def theta(self) -> Tensor:
        """Per-latent thresholds (d_sae,), differentiable."""
        return torch.exp(THETA_SPEED * self.log_theta_slow)

    @torch.no_grad()
    def init_thresholds(self, x: Tensor, pre: Tensor) -> Tensor:
        """From the first batch: theta from `first_batch_thresholds`, then the encoder and the
        thresholds scaled together by `least_squares_scale`; eps = BANDWIDTH x median theta.
        Returns the rescaled pre-activations."""
        theta = first_batch_thresholds(pre, self.k)
        c = least_squares_scale(x, pre * (pre > theta), self.W_dec, self.b_dec)
        self.W_enc.mul_(c)
        self.b_enc.mul_(c)
        self.log_theta_slow.copy_((c * theta).log() / THETA_SPEED)
        self.bandwidth.copy_(BANDWIDTH * c * theta.median())
        self.theta_ready.fill_(True)
        return pre * c

    # ---- inference
    def encode(self, x):
        pre = self.pre_acts(x)
        return pre * (pre > self.theta().detach())

    # ---- training
    def select(self, pre, ctx: StepContext):
        return (pre > self.theta().detach()).nonzero(as_tuple=True)

    def codes(self, x: Tensor, ctx: StepContext) -> Codes:
        """Every pair that gets a gradient: active ones with value z, and those within eps/2 below
        theta with value 0 (the reconstruction's pull on theta comes through them)."""
        with torch.no_grad():
            pre = x @ self.W_enc + (self.b_enc - self.b_dec @ self.W_enc)
            if self.training and not bool(self.theta_ready):
                pre = self.init_thresholds(x, pre)
            eps = float(self.bandwidth)
            rows, cols = (pre > self.theta() - eps / 2).nonzero(as_tuple=True)
        self._last_pre = pre
        codes = self.attach(x, pre, rows, cols)
        self._z = codes.vals.detach()
        codes.vals = _JumpReLU.apply(codes.vals, self.theta()[codes.cols], eps)
        return codes

    def train_step(self, x: Tensor, ctx: StepContext) -> StepOut:
        # Step 1: reconstruction through the band pairs (theta's pull down)
        codes = self.codes(x, ctx)
        recon = sparse_decode(codes, self.W_dec) + self.b_dec
        mse = (recon - x).pow(2).sum(-1).mean()
        # Step 2: the L0 penalty through the step's STE (theta's push up), AuxK for dead latents
        l0_ste = _Step.apply(self._z, self.theta()[codes.cols], float(self.bandwidth)).sum() / len(x)
        parts = {"mse": mse, "l0": l0_ste}
        lam = self.coeff.clone()  # the controller below updates coeff in place; backward needs this step's
        loss = mse + lam * l0_ste + self.auxk_loss(x, recon, ctx, parts) + self.dead_loss(ctx, parts)
        # Step 3: bookkeeping on the active pairs only (the band pairs below theta are zeros)
        active = codes.vals.detach() > 0
        l0 = active.sum() / len(x)
        if self.steer:
            self._steer(l0)
        self._last_pre = self._z = None
        counts = torch.bincount(codes.cols[active], minlength=self.d_sae)
        return StepOut(loss, mse.detach(), l0, counts, {k: v.detach() for k, v in parts.items()})

    def dead_loss(self, ctx: StepContext, parts: dict) -> Tensor:
        """Dead latents' thresholds come down to their pre-activations (Anthropic, Jan 2025: the
        pre-activation loss sum_j relu(theta_j - z_j)): a latent whose z stays below theta - eps/2
        gets no other gradient on theta, and AuxK raises its z only. Weight 1/32, as AuxK's."""
        if ctx.dead is None or not bool(ctx.dead.any()):
            return self.coeff.new_zeros(())
        z = self._last_pre[:, ctx.dead]  # no gradient: the encoder's revival is AuxK's
        loss = torch.relu(self.theta()[ctx.dead] - z).mean(0).sum()
        parts["dead_pre"] = loss
        return loss / 32.0

    def config(self):
        return {**super().config(), "thresholds": "per latent (in sae_weights: threshold)",
                "bandwidth": float(self.bandwidth)}

