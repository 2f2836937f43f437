"""SparseGPT: layer-wise pruning with second-order reconstruction (Frantar & Alistarh, 2023).

For each layer it minimises ||W X - W' X||^2 over the calibration inputs X: columns are pruned
left to right and the error of each pruned weight is spread over the not-yet-processed columns
with the inverse Hessian H^-1 = (X X^T + damping)^-1 (its Cholesky factor, as in the paper).
Columns go in blocks of 128 with lazy updates (the rest of W is updated once per block), and the
mask is chosen adaptively per block by w^2 / [H^-1]_jj^2 (N:M per group of M columns, blocks
per tile of RxC).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from sparsity_core.catalog.pruning import Pattern
from sparsity_core.pruning.base import PruningMethod, register_method
from sparsity_core.pruning.masks import pattern_mask

BLOCK = 128  # columns per lazy-update block (the paper's default; fits cache, few big matmuls)


def inverse_hessian_factor(hessian: Tensor, damp: float, weight: Tensor) -> Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1. Dead inputs (never nonzero)
    get H_jj = 1 and their weights are zeroed, as in the reference code."""
    h = hessian.to(weight.device, torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    weight[:, dead] = 0
    # Step 1: dampen by a fraction of the mean diagonal so the Cholesky is stable
    h.diagonal().add_(damp * torch.mean(torch.diag(h)))
    # Step 2: H^-1 via Cholesky, then its upper factor (rows of it drive the updates)
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(hinv, upper=True).float()


def _block_width(pattern: Pattern) -> int:
    """Lazy-block width, a multiple of the pattern's column period so masks never straddle."""
    period = pattern.m if pattern.kind == "nm" else pattern.cols if pattern.kind == "block" else 1
    return period * math.ceil(BLOCK / period)


def sparsegpt_prune(weight: Tensor, hessian: Tensor, sparsity: float, pattern: Pattern,
                    damp: float = 0.01) -> Tensor:
    """Prune an (out, in) weight in place; returns the kept-mask."""
    w = weight.float().clone()
    hinv = inverse_hessian_factor(hessian, damp, w)
    rows, cols = w.shape
    keep = torch.ones_like(w, dtype=torch.bool)
    width = _block_width(pattern)
    for i1 in range(0, cols, width):
        i2 = min(i1 + width, cols)
        w1, hinv1 = w[:, i1:i2].clone(), hinv[i1:i2, i1:i2]
        err1 = torch.zeros_like(w1)
        d = torch.diag(hinv1)
        # Step 3: adaptive mask for this block: lowest w^2 / [H^-1]_jj^2 go first
        if pattern.kind != "nm":
            keep[:, i1:i2] = pattern_mask(w1 ** 2 / d.unsqueeze(0) ** 2, sparsity, pattern)
        for i in range(i2 - i1):
            if pattern.kind == "nm" and i % pattern.m == 0:  # N:M: choose with the updated weights
                grp = slice(i, i + pattern.m)
                keep[:, i1 + i:i1 + i + pattern.m] = pattern_mask(
                    w1[:, grp] ** 2 / d[grp].unsqueeze(0) ** 2, sparsity, pattern)
            # Step 4: zero the pruned weights of column i, push their error right via H^-1
            col = w1[:, i]
            q = col * keep[:, i1 + i]
            e = (col - q) / d[i]
            w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            w1[:, i] = q
            err1[:, i] = e
        w[:, i1:i2] = w1
        # Step 5: the lazy update of every column right of the block, once per block
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    weight.copy_((w * keep).to(weight.dtype))
    return keep


@register_method
class SparseGPT(PruningMethod):
    name = "sparsegpt"
    stats_needed = ("hessian",)
    damp: float  # the catalog's SparseGPTParams

    def prune_layer(self, name: str, weight: Tensor, sparsity: float, pattern: Pattern,
                    stats: Optional[dict]) -> Tensor:
        if not stats or "hessian" not in stats:
            raise ValueError("sparsegpt needs calibration statistics (the layer Hessian)")
        return sparsegpt_prune(weight, stats["hessian"], sparsity, pattern, self.damp)
