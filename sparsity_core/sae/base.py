"""The SAE base class, the variant registry and the sparse kernels every variant shares.

An SAE maps an activation x (d_in) to latents f (d_sae) and back:

    pre = (x - b_dec) @ W_enc + b_enc        # b_dec doubles as the pre-encoder bias (OpenAI, SAELens)
    f   = a variant's sparse selection of relu(pre)
    x^  = f @ W_dec + b_dec

Training never builds the dense (batch, d_sae) latent matrix for the gradient: a variant picks
which (token, latent) pairs are active (`select`, no gradient), and the shared kernels gather those
pre-activations and decode them with sparse products, so a TopK step costs one dense matmul plus
O(batch x k x d_in) work instead of five dense matmuls.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sparsity_core.catalog.sae import VARIANTS as CATALOG

VARIANTS: dict[str, type["SAE"]] = {}

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

THRESHOLD_MOMENTUM = 0.99  # inference thresholds: EMA over ~100 steps once past the first 100
DENSE_FALLBACK = 0.08  # above this fraction of active pairs a dense matmul beats the sparse kernels
GATHER_BELOW = 0.03  # below this fraction of active pairs the decoder's backward gathers pairs (`_pair_dots`)
PAIR_CHUNK_FLOATS = 786_432  # floats of gathered rows per chunk of `_pair_dots` (3 MB: 2,048 rows of 384)


def register_variant(cls: type["SAE"]) -> type["SAE"]:
    """Class decorator: the implementation of the catalog's variant `name`, which also gives its
    description and whether it is a penalty variant; a name the catalog does not offer, or one
    registered twice, is refused."""
    entry = CATALOG.get(cls.name)
    if entry is None:
        raise ValueError(f"SAE variant {cls.name!r} is not in the catalog (sparsity_core/catalog/sae.py)")
    if cls.name in VARIANTS:
        raise ValueError(f"SAE variant {cls.name!r} is registered already")
    cls.description, cls.penalty = entry.description, entry.penalty
    cls.options = ("prefixes",) if entry.prefixes else ()  # spec fields its constructor takes (variants.build_sae)
    VARIANTS[cls.name] = cls
    return cls


@dataclass
class Codes:
    """Active latents of a batch in coordinate form: token `rows`, latent `cols`, values `vals`."""

    rows: Tensor  # (nnz,) int64, sorted ascending
    cols: Tensor  # (nnz,) int64
    vals: Tensor  # (nnz,) float, differentiable
    n_tokens: int
    n_latents: int

    _by_latent: Optional[tuple[Tensor, Tensor]] = field(default=None, repr=False)

    def by_latent(self) -> tuple[Tensor, Tensor]:
        """(order grouping the pairs by latent, CSR row pointers over latents), computed once: the
        encoder's and the decoder's backward both group the same pairs."""
        if self._by_latent is None:
            order = torch.sort(self.cols.int()).indices  # int32 keys, unstable: ~4x faster; order within a row is free
            crow = torch.zeros(self.n_latents + 1, dtype=torch.int64, device=self.cols.device)
            crow[1:] = torch.cumsum(torch.bincount(self.cols, minlength=self.n_latents), 0)
            self._by_latent = (order, crow)
        return self._by_latent

    def counts(self) -> Tensor:
        """How many tokens each latent fired on in this batch, (d_sae,)."""
        return torch.bincount(self.cols, minlength=self.n_latents)

    def dense(self) -> Tensor:
        out = self.vals.new_zeros(self.n_tokens, self.n_latents)
        return out.index_put((self.rows, self.cols), self.vals)


@dataclass
class StepOut:
    """What one training step returns to the trainer (tensors, so no GPU sync per step)."""

    loss: Tensor
    mse: Tensor  # mean over tokens of ||x - x^||^2 (normalised units)
    l0: Tensor  # mean active latents per token
    counts: Tensor  # (d_sae,) tokens each latent fired on
    parts: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class StepContext:
    """Per-step inputs from the trainer's schedules and bookkeeping."""

    sparsity_scale: float = 1.0  # 0 -> 1 over the sparsity warm-up
    dead: Optional[Tensor] = None  # (d_sae,) bool: latents dead in the recent window


# --------------------------------------------------------------------------- sparse kernels
def _by_latent_csr(codes: Codes, values: Tensor) -> Tensor:
    """(d_sae, n_tokens) CSR matrix holding `values` at the active pairs: rows grouped by latent."""
    order, crow = codes.by_latent()
    return torch.sparse_csr_tensor(crow, codes.rows[order], values[order],
                                   size=(codes.n_latents, codes.n_tokens), check_invariants=False)


class _GatherPre(torch.autograd.Function):
    """vals = (x @ W_enc + bias)[rows, cols], with gradients for W_enc and bias only."""

    @staticmethod
    def forward(ctx, x, W_enc, bias, pre_sel, codes):
        ctx.save_for_backward(x)
        ctx.codes = codes
        return pre_sel.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        codes = ctx.codes
        grad_W = (_by_latent_csr(codes, grad) @ x).t() if ctx.needs_input_grad[1] else None
        grad_b = torch.zeros(codes.n_latents, dtype=grad.dtype, device=grad.device).index_add_(0, codes.cols, grad)
        return None, grad_W, grad_b, None, None


class _SparseDecode(torch.autograd.Function):
    """out[t] = sum over active (t, j) of vals * W_dec[j]; sparse in both directions."""

    @staticmethod
    def forward(ctx, vals, W_dec, codes):
        ctx.save_for_backward(vals, W_dec)
        ctx.codes = codes
        offsets = torch.searchsorted(codes.rows, torch.arange(codes.n_tokens, device=vals.device))
        return F.embedding_bag(codes.cols, W_dec, offsets, mode="sum", per_sample_weights=vals)

    @staticmethod
    def backward(ctx, grad):
        vals, W_dec = ctx.saved_tensors
        codes = ctx.codes
        if codes.vals.numel() < GATHER_BELOW * codes.n_tokens * codes.n_latents:
            grad_vals = _pair_dots(grad, W_dec, codes.rows, codes.cols)
        else:  # many active pairs: one dense matmul then a gather
            grad_vals = (grad @ W_dec.t())[codes.rows, codes.cols]
        grad_W = _by_latent_csr(codes, vals) @ grad
        return grad_vals, grad_W, None


def _pair_dots(a: Tensor, b: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """a[rows[i]] . b[cols[i]] for every pair i, gathered in chunks that stay in cache (~3 MB): the
    decoder's backward d loss / d vals[t, j] = grad[t] . W_dec[j] at the active pairs only. On 2
    cores, batch 512: d 384 x 3072 latents, k = 32: 2.8 ms against 9.7 ms for the dense
    grad @ W_dec.T (an encoder-sized matmul) and a gather, k = 64: 4.8 ms against 9.4; SmolLM2's
    576 x 4608, k = 32: 4.9 against 22.5. Unchunked, the gathered rows outgrow the cache: 43 ms at k = 64."""
    out = torch.empty(len(rows), dtype=a.dtype, device=a.device)
    chunk = max(1, PAIR_CHUNK_FLOATS // a.shape[1])
    for i in range(0, len(rows), chunk):
        torch.sum(a.index_select(0, rows[i:i + chunk]) * b.index_select(0, cols[i:i + chunk]), 1,
                  out=out[i:i + chunk])
    return out


def sparse_decode(codes: Codes, W_dec: Tensor) -> Tensor:
    """Codes @ W_dec (no bias). Sparse kernels when few pairs are active, a matmul otherwise."""
    if codes.vals.numel() > DENSE_FALLBACK * codes.n_tokens * codes.n_latents or W_dec.device.type != "cpu":
        return codes.dense() @ W_dec  # dense is faster on GPUs and for dense codes
    return _SparseDecode.apply(codes.vals, W_dec, codes)


# --------------------------------------------------------------------------- base class
class SAE(nn.Module):
    """Shared parameters, encode/decode and the training step; variants define `select`.

    Args:
        d_in: activation width. d_sae: number of latents. k: target active latents per token.
        l1_coeff: penalty weight for penalty variants; None steers it so L0 tracks k.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""  # from the catalog, set at registration
    unit_norm_decoder: ClassVar[bool] = False  # TopK family: unit rows, parallel gradient removed
    penalty: ClassVar[bool] = False  # sparsity from a penalty (relu_l1, flops), not an allocation (catalog)
    options: ClassVar[tuple[str, ...]] = ()  # spec fields beyond the shared ones the constructor takes (catalog)
    aux_dead: ClassVar[bool] = False  # AuxK loss that revives dead latents

    def __init__(self, d_in: int, d_sae: int, k: int = 32, l1_coeff: Optional[float] = None, seed: int = 0):
        super().__init__()
        if not 1 <= k <= d_sae:
            raise ValueError(f"k={k} must be between 1 and the number of latents ({d_sae})")
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        gen = torch.Generator().manual_seed(seed)
        # Step 1: decoder rows random unit directions, encoder tied to them at init (OpenAI, Anthropic)
        W_dec = F.normalize(torch.randn(d_sae, d_in, generator=gen), dim=-1)
        if not self.unit_norm_decoder:
            W_dec = W_dec * 0.1  # Anthropic's April-2024 init: small decoder norms, L1 grows them
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.steer = self.penalty and l1_coeff is None
        self.register_buffer("coeff", torch.tensor(float(l1_coeff or self.initial_coeff)))
        self.register_buffer("threshold", torch.zeros(()))  # inference threshold (BatchTopK family)
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))
        self._last_pre: Optional[Tensor] = None  # pre-activations of the current step (AuxK reuses them)

    initial_coeff: ClassVar[float] = 1.0

    # ---- inference
    def pre_acts(self, x: Tensor) -> Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        """Dense latents (n, d_sae) for inference; variants with batch-level rules use thresholds."""
        return F.relu(self.pre_acts(x))

    def decode(self, f: Tensor) -> Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # ---- training
    def select(self, pre: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """(rows, cols) of the active pairs of `pre` (no gradient); rows ascending."""
        raise NotImplementedError

    def codes(self, x: Tensor, ctx: StepContext) -> Codes:
        # Step 1: pre-activations without a gradient through x (b_dec enters through a vector)
        with torch.no_grad():
            pre = torch.addmm(self.b_enc - self.b_dec @ self.W_enc, x, self.W_enc)  # one pass, not matmul + add
            rows, cols = self.select(pre, ctx)
        self._last_pre = pre
        return self.attach(x, pre, rows, cols)

    def attach(self, x: Tensor, pre: Tensor, rows: Tensor, cols: Tensor) -> Codes:
        """Codes for the chosen pairs that are positive (ReLU), re-attached to the graph with
        sparse gradients for W_enc, b_enc and b_dec."""
        with torch.no_grad():
            pre_sel = pre[rows, cols]
            keep = pre_sel > 0
            rows, cols, pre_sel = rows[keep], cols[keep], pre_sel[keep]
        codes = Codes(rows, cols, pre_sel, len(x), self.d_sae)
        bias = self.b_enc - self.b_dec @ self.W_enc
        codes.vals = _GatherPre.apply(x, self.W_enc, bias, pre_sel, codes)
        return codes

    def train_step(self, x: Tensor, ctx: StepContext) -> StepOut:
        codes = self.codes(x, ctx)
        recon = sparse_decode(codes, self.W_dec) + self.b_dec
        mse = (recon - x).pow(2).sum(-1).mean()
        parts = {"mse": mse}
        loss = mse + self.extra_loss(x, recon, codes, ctx, parts)
        self.after_select(codes, ctx)
        l0 = torch.tensor(codes.vals.numel() / len(x))
        if self.steer:
            self._steer(l0)
        self._last_pre = None
        return StepOut(loss, mse.detach(), l0, codes.counts(), {k: v.detach() for k, v in parts.items()})

    def extra_loss(self, x: Tensor, recon: Tensor, codes: Codes, ctx: StepContext, parts: dict) -> Tensor:
        return x.new_zeros(())

    def after_select(self, codes: Codes, ctx: StepContext) -> None:
        """Hook for state learned from the selection (inference thresholds)."""

    @torch.no_grad()
    def calibrate(self, x: Tensor) -> None:
        """After training: set inference thresholds from one large batch (variants that have them)."""

    @torch.no_grad()
    def selection_minima(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(smallest selected value, per-latent smallest selected value or inf) of the training
        rule applied to batch `x` at full sparsity."""
        pre = self.pre_acts(x)
        rows, cols = self.select(pre, StepContext(1.0))
        vals = pre[rows, cols]
        keep = vals > 0
        per = torch.full((self.d_sae,), float("inf"), device=x.device)
        per = per.scatter_reduce(0, cols[keep], vals[keep], reduce="amin")
        return vals[keep].min(), per

    def threshold_momentum(self, ctx: StepContext) -> float | None:
        """Weight of the old value in a threshold update, or None to skip this step.

        Thresholds learn only once the sparsity warm-up is over (earlier selections are looser);
        then a running mean of every update so far, turning into an EMA over ~100 steps."""
        if not self.training or ctx.sparsity_scale < 1.0:
            return None
        self.threshold_updates += 1
        return min(THRESHOLD_MOMENTUM, 1.0 - 1.0 / float(self.threshold_updates))

    def _steer(self, l0: Tensor) -> None:
        # multiplicative controller on the penalty: +-5% a step at most, so L0 settles near k
        # within a few hundred steps without oscillating (tanh bounds the step)
        self.coeff.mul_(torch.exp(0.05 * torch.tanh((l0 - self.k) / self.k)))

    # ---- decoder constraint (unit-norm variants)
    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """Remove the gradient component parallel to each decoder row (it only changes the norm)."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            W, G = self.W_dec, self.W_dec.grad
            G.sub_((G * W).sum(-1, keepdim=True) * W)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp(min=1e-8))

    @torch.no_grad()
    def init_pre_bias(self, sample: Tensor) -> None:
        """b_dec from the data: the geometric median of a sample (Weiszfeld, a few iterations)."""
        median = sample.mean(0)
        for _ in range(20):
            w = 1.0 / (sample - median).norm(dim=-1).clamp(min=1e-6)
            median = (w[:, None] * sample).sum(0) / w.sum()
        self.b_dec.copy_(median)

    # ---- helpers for variants
    def auxk_loss(self, x: Tensor, recon: Tensor, ctx: StepContext, parts: dict) -> Tensor:
        """AuxK (Gao et al. 2024): the top k_aux *dead* latents model the residual, weight 1/32."""
        if ctx.dead is None or not bool(ctx.dead.any()):
            return x.new_zeros(())
        k_aux = min(self.d_in // 2, int(ctx.dead.sum()))  # d_in/2 as in the paper
        pre = self._last_pre.masked_fill(~ctx.dead, float("-inf"))
        with torch.no_grad():
            idx = pre.topk(k_aux, dim=-1, sorted=False).indices
        rows = torch.arange(len(x), device=x.device).repeat_interleave(k_aux)
        aux = self.attach(x, self._last_pre, rows, idx.reshape(-1))
        residual = (x - recon).detach()
        loss = (sparse_decode(aux, self.W_dec) - residual).pow(2).sum(-1).mean()
        parts["auxk"] = loss
        return loss / 32.0  # alpha = 1/32 (Gao et al.)

    def rows_topk(self, pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
        idx = pre.topk(k, dim=-1, sorted=False).indices
        rows = torch.arange(len(pre), device=pre.device).repeat_interleave(k)
        return rows, idx.reshape(-1)

    def effective_k(self, ctx: StepContext) -> int:
        """Sparsity warm-up for allocation variants: start at 4k and anneal to k."""
        return min(self.d_sae, round(self.k * (1 + 3 * (1 - ctx.sparsity_scale))))

    def config(self) -> dict:
        return {"architecture": self.name, "d_in": self.d_in, "d_sae": self.d_sae, "k": self.k,
                "coeff": float(self.coeff), "threshold": float(self.threshold)}
