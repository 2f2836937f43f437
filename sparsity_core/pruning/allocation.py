"""Layer-wise sparsity allocation: how much of the target sparsity each layer takes.

    owl_sparsities([1.0, 3.0, 2.0], target=0.7, lam=0.08)        # [0.78, 0.62, 0.70]: mean 0.7
    erk_sparsities({"a": (4, 4), "b": (2, 8)}, target=0.5)      # {"a": 0.556, "b": 0.444}
    layer_sparsities("owl", groups, 0.7, ratios=..., lam=0.08)  # {layer name: sparsity} for prune()

`uniform` gives every layer the target (what the lab always did). The other two:

- OWL, Outlier-Weighted Layerwise sparsity (Yin et al., 2024). A block's outlier ratio D is the
  share of its Wanda scores |W_ij| * ||X_j|| above M times the block's mean score (one mean over
  all the block's linears, as `check_outlier_mean` in the authors' code). Blocks with more
  outliers keep more weights: D is min-max scaled into [0, 2 lambda], and a block's density is
  that minus its mean plus (1 - target), so sparsity = target + mean(s) - s_l stays within
  target +- lambda and averages to the target. The authors' blocks are all the same size, so their
  plain mean is the parameter-weighted one; here the mean is weighted by the blocks' sizes, which
  is the same for every transformer and keeps the overall sparsity at the target for an MLP whose
  layers differ. Every linear of a block gets the block's sparsity.
- ERK, Erdos-Renyi(-Kernel) (Mocanu et al., 2018; Evci et al., 2020, "Rigging the Lottery"; the
  allocation that makes random pruning competitive in Liu et al., 2022, "The Unreasonable
  Effectiveness of Random Pruning"). A layer's density is proportional to (n_in + n_out) /
  (n_in * n_out), scaled so the parameter-weighted density is 1 - target; a layer that would go
  above density 1 is kept dense and the rest are solved again (the RigL code's loop). For a
  Linear layer (no kernel dimensions) ER and ERK are the same formula.

The functions on numbers are pure (lists and dicts of floats); `outlier_ratio` and
`owl_outlier_ratios` read weights and calibration norms.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from sparsity_core.catalog.pruning import ALLOCATIONS

MAX_SPARSITY = 1.0  # the clip of _shift_to_mean: a block can at most lose every weight


# ---------------------------------------------------------------- OWL
def outlier_ratio(scores: Sequence[Tensor], m: float) -> float:
    """Share (0..1) of all entries of `scores` (one block's score matrices) above m x their mean."""
    flat = torch.cat([s.flatten().float() for s in scores])
    return float((flat > m * flat.mean()).float().mean())


@torch.no_grad()
def owl_outlier_ratios(groups: Sequence[Mapping[str, nn.Module]], stats: Mapping[str, dict], m: float) -> list[float]:
    """D of every block: its Wanda scores |W| * ||X|| (from calibration `stats` with `sq_sum`)
    against m x their mean. One block's scores exist at a time."""
    from sparsity_core.pruning.base import weight_2d
    from sparsity_core.pruning.wanda import wanda_score

    return [outlier_ratio([wanda_score(weight_2d(layer), stats[name]) for name, layer in group.items()], m)
            for group in groups]


def owl_sparsities(ratios: Sequence[float], target: float, lam: float,
                   sizes: Optional[Sequence[float]] = None) -> list[float]:
    """Per-block sparsities from outlier ratios D: target + mean(s) - s, s = (D - min) / (max - min)
    x 2 lambda (the authors' formula); their mean weighted by `sizes` (None: plain, as the paper)
    equals `target`. Equal ratios (or lambda 0) give the uniform target."""
    n = len(ratios)
    sizes = [1.0] * n if sizes is None else [float(s) for s in sizes]
    low, high = min(ratios), max(ratios)
    if target == 0 or high == low or lam == 0:
        return [float(target)] * n
    # Step 1: min-max scale into [0, 2 lambda]; more outliers = more kept
    scaled = [(d - low) / (high - low) * 2 * lam for d in ratios]
    # Step 2: sparsity = target - (scaled - its weighted mean): weighted mean = target
    return _shift_to_mean([-s for s in scaled], sizes, target)


# ---------------------------------------------------------------- ERK
def erk_densities(shapes: Mapping[str, tuple[int, int]], density: float) -> dict[str, float]:
    """Density of every (out, in) layer: eps x (in + out) / (in x out), parameter-weighted mean =
    `density`; layers over 1 are kept dense and eps is solved again for the rest."""
    numel = {n: out_f * in_f for n, (out_f, in_f) in shapes.items()}
    raw = {n: (out_f + in_f) / (out_f * in_f) for n, (out_f, in_f) in shapes.items()}
    budget = density * sum(numel.values())  # weights kept in all
    dense: set[str] = set()
    while True:
        # Step 1: eps so that the not-dense layers keep what the dense ones leave of the budget
        rest = [n for n in shapes if n not in dense]
        if not rest:
            return {n: 1.0 for n in shapes}
        eps = (budget - sum(numel[n] for n in dense)) / sum(raw[n] * numel[n] for n in rest)
        # Step 2: the layer furthest over density 1 becomes dense, then solve again (RigL's loop)
        worst = max(rest, key=lambda n: raw[n])
        if eps * raw[worst] <= 1.0:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense.add(worst)


def erk_sparsities(shapes: Mapping[str, tuple[int, int]], target: float) -> dict[str, float]:
    """1 - ERK density of every layer at overall `target` sparsity (parameter-weighted)."""
    if target == 0:
        return {n: 0.0 for n in shapes}
    return {n: 1.0 - d for n, d in erk_densities(shapes, 1.0 - target).items()}


# ---------------------------------------------------------------- shared
def _shift_to_mean(values: Sequence[float], weights: Sequence[float], target: float,
                   low: float = 0.0, high: float = MAX_SPARSITY) -> list[float]:
    """values + c, clipped to [low, high], with the `weights`-weighted mean equal to `target`.
    Without clipping c = target - mean(values); with it c is found by bisection (the clipped mean
    grows with c), so blocks at a bound stay there and the others share what is left."""
    total = sum(weights)

    def mean_at(c: float) -> float:
        return sum(w * min(high, max(low, v + c)) for v, w in zip(values, weights)) / total

    c = target - sum(v * w for v, w in zip(values, weights)) / total
    if all(low <= v + c <= high for v in values):
        return [v + c for v in values]
    lo, hi = low - max(values), high - min(values)
    for _ in range(100):  # 2^-100 of the bracket: exact in floating point
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_at(mid) < target else (lo, mid)
    return [min(high, max(low, v + hi)) for v in values]


def block_sizes(groups: Sequence[Mapping[str, nn.Module]]) -> list[int]:
    from sparsity_core.pruning.base import weight_2d

    return [sum(weight_2d(m).numel() for m in group.values()) for group in groups]


def layer_sparsities(kind: str, groups: Sequence[Mapping[str, nn.Module]], target: float,
                     ratios: Optional[Sequence[float]] = None, lam: float = 0.08) -> dict[str, float]:
    """{layer name: sparsity} of allocation `kind` at `target`; `groups` are the blocks' linears
    (pruning/calibrate.block_groups), `ratios` OWL's outlier ratios of those blocks."""
    from sparsity_core.pruning.base import weight_2d

    if kind == "uniform":
        return {name: float(target) for group in groups for name in group}
    if kind == "erk":
        shapes = {name: tuple(weight_2d(m).shape) for group in groups for name, m in group.items()}
        return erk_sparsities(shapes, target)
    if kind == "owl":
        if ratios is None or len(ratios) != len(groups):
            raise ValueError("owl needs one outlier ratio per block (owl_outlier_ratios)")
        per_block = owl_sparsities(ratios, target, lam, block_sizes(groups))
        return {name: s for group, s in zip(groups, per_block) for name in group}
    raise ValueError(f"unknown allocation {kind!r}; known: {', '.join(ALLOCATIONS)}")  # the catalog's names
