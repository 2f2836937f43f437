"""Masks from scores: keep the highest-scoring weights, per layer or with one global threshold.

A mask is a bool tensor shaped like the weight; True = kept. Ties are broken by position (stable
sort) so a mask is a pure function of its scores.
"""

from __future__ import annotations

import torch
from torch import Tensor


def n_pruned(numel: int, sparsity: float) -> int:
    return int(round(numel * sparsity))


def unstructured_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Zero the `round(sparsity * numel)` lowest scores of the tensor."""
    k = n_pruned(scores.numel(), sparsity)
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        order = torch.argsort(scores.flatten().float(), stable=True)
        mask[order[:k]] = False
    return mask.view_as(scores)


def global_masks(scores: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """One threshold over all layers: the lowest `sparsity` fraction of all scores is pruned."""
    flat = torch.cat([s.flatten().float().cpu() for s in scores.values()])
    keep = unstructured_mask(flat, sparsity)
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start:start + s.numel()].view_as(s).to(s.device)
        start += s.numel()
    return out


def measured_sparsity(masks_or_weights: dict[str, Tensor]) -> tuple[float, dict[str, float]]:
    """(overall fraction of zeros, per-layer fraction of zeros), counted from the tensors."""
    zeros = total = 0
    per_layer = {}
    for name, t in masks_or_weights.items():
        z = int((t == 0).sum()) if t.dtype != torch.bool else int((~t).sum())
        per_layer[name] = z / t.numel()
        zeros += z
        total += t.numel()
    return (zeros / total if total else 0.0), per_layer
