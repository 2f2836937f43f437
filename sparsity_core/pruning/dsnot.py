"""DSnoT: training-free prune-and-regrow refinement of another method's mask
(Zhang et al., 2024, "Dynamic Sparse No Training").

Start from the initial method's mask (`initial`, e.g. wanda or magnitude). For every output row,
the expected reconstruction error of the pruned weights is e = sum_{j pruned} W_j * E[x_j].
Each iteration swaps one pruned and one kept weight per row:
  grow  the pruned weight whose return brings e closest to zero (it must carry e's sign);
  prune the kept weight of least Wanda importance |W| * ||X|| among those whose removal pushes
        the remaining error back toward zero (opposite sign),
and keeps the swap only where |e| shrinks. N:M swaps stay inside one group of M, so the pattern
holds; rows that stop improving stop. No weight changes value, only the mask.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import sparsity_core.pruning as pruning
from sparsity_core.catalog.pruning import Pattern
from sparsity_core.pruning.base import PruningMethod, register_method
from sparsity_core.pruning.wanda import wanda_score

INF = float("inf")


def dsnot_refine(weight: Tensor, keep: Tensor, mean: Tensor, sq_sum: Tensor, iterations: int,
                 group: int = 0) -> Tensor:
    """Refine a kept-mask of an (out, in) weight; `group` > 0 restricts swaps to groups of that
    many columns (N:M). Returns the new mask (the same number of zeros in every row/group)."""
    w = weight.float()
    keep = keep.clone()
    contrib = w * mean.to(w.device, torch.float32).unsqueeze(0)  # E[W_j x_j] per weight
    importance = wanda_score(w, {"sq_sum": sq_sum})
    cols = torch.arange(w.shape[1], device=w.device)
    gid = cols // group if group else torch.zeros_like(cols)
    rows = torch.arange(w.shape[0], device=w.device)
    active = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
    for _ in range(iterations):
        # Step 1: the expected error of each row's pruned weights
        err = (contrib * ~keep).sum(1)
        # Step 2: grow the pruned weight (same sign as the error) that leaves the least error
        after_grow = (err.unsqueeze(1) - contrib).abs()
        can_grow = ~keep & (torch.sign(contrib) == torch.sign(err).unsqueeze(1)) & (contrib != 0)
        g = torch.where(can_grow, after_grow, INF).argmin(1)
        residual = err - contrib[rows, g]
        # Step 3: prune the least important kept weight (same group) that counters the residual
        can_prune = keep & (gid.unsqueeze(0) == gid[g].unsqueeze(1))
        can_prune &= torch.sign(contrib) != torch.sign(residual).unsqueeze(1)
        can_prune[rows, g] = False
        p = torch.where(can_prune, importance, INF).argmin(1)
        new_err = residual + contrib[rows, p]
        # Step 4: keep the swap only where it exists and shrinks |error|
        ok = active & can_grow[rows, g] & can_prune[rows, p] & (new_err.abs() < err.abs())
        if not ok.any():
            break
        keep[rows[ok], g[ok]] = True
        keep[rows[ok], p[ok]] = False
        active &= ok
    return keep


@register_method
class DSnoT(PruningMethod):
    name = "dsnot"
    initial: str  # the catalog's DSnoTParams: a one-shot method, never dsnot itself
    iterations: int

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        self.base = pruning.METHODS[self.initial](seed=seed)

    def stats(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(("norm", "mean", *self.base.stats())))

    def prune_layer(self, name: str, weight: Tensor, sparsity: float, pattern: Pattern,
                    stats: Optional[dict]) -> Tensor:
        if not stats or "mean" not in stats:
            raise ValueError("dsnot needs calibration statistics (input means and norms)")
        keep = self.base.prune_layer(name, weight, sparsity, pattern, stats)
        group = pattern.m if pattern.kind == "nm" else 0
        return dsnot_refine(weight, keep, stats["mean"], stats["sq_sum"], self.iterations, group)
