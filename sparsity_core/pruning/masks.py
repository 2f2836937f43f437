"""Masks from scores: keep the highest-scoring weights, per layer or with one global threshold.

A mask is a bool tensor shaped like the weight; True = kept. Ties are broken by position (stable
sort) so a mask is a pure function of its scores.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from sparsity_core.catalog.pruning import Pattern


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


def measured_sparsity(masks_or_weights: dict[str, Tensor], dense_numel: Optional[dict[str, int]] = None
                      ) -> tuple[float, dict[str, float]]:
    """(overall fraction of zeros, per-layer fraction of zeros), counted from the tensors.

    With `dense_numel` (each layer's size before pruning) a layer that got smaller counts its
    removed weights as zeros too: what structured pruning reaches is measured the same way."""
    zeros = total = 0
    per_layer = {}
    for name, t in masks_or_weights.items():
        nonzero = int(t.sum()) if t.dtype == torch.bool else int((t != 0).sum())
        size = dense_numel[name] if dense_numel is not None else t.numel()
        per_layer[name] = (size - nonzero) / size
        zeros += size - nonzero
        total += size
    return (zeros / total if total else 0.0), per_layer


def nm_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """Keep the n highest scores in every group of m consecutive weights along each row."""
    rows, cols = scores.shape
    groups = scores.float().reshape(rows, cols // m, m)
    # stable sort over the group: ties go to the earlier position, as in unstructured_mask
    order = torch.argsort(groups, dim=-1, stable=True, descending=True)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order[..., :n], True)
    return keep.reshape(rows, cols)


def block_scores(scores: Tensor, r: int, c: int) -> Tensor:
    """Sum of the scores in each r x c tile: shape (rows/r, cols/c)."""
    rows, cols = scores.shape
    return scores.float().reshape(rows // r, r, cols // c, c).sum(dim=(1, 3))


def expand_blocks(block_mask: Tensor, r: int, c: int) -> Tensor:
    return block_mask.repeat_interleave(r, 0).repeat_interleave(c, 1)


def block_mask(scores: Tensor, sparsity: float, r: int, c: int) -> Tensor:
    """Prune whole r x c tiles: the round(sparsity * tiles) tiles with the lowest score sum."""
    return expand_blocks(unstructured_mask(block_scores(scores, r, c), sparsity), r, c)


def pattern_mask(scores: Tensor, sparsity: float, pattern: Pattern) -> Tensor:
    """A mask of `pattern` at `sparsity` from per-weight scores (2-D: out x in).

    N:M masks first keep N of every M; a target above (M-N)/M then prunes further, lowest
    scores among the survivors first, so every group still has at least M-N zeros."""
    if pattern.kind == "unstructured":
        return unstructured_mask(scores, sparsity)
    if pattern.kind == "block":
        return block_mask(scores, sparsity, pattern.rows, pattern.cols)
    if pattern.kind == "nm":
        if sparsity == 0:
            return torch.ones_like(scores, dtype=torch.bool)
        mask = nm_mask(scores, pattern.n, pattern.m)
        extra = sparsity - pattern.min_sparsity
        if extra > 1e-9:
            survivors = torch.where(mask, scores.float(), torch.full_like(scores, float("-inf"), dtype=torch.float))
            mask &= unstructured_mask(survivors, sparsity)
        return mask
    raise ValueError(f"pattern {pattern.kind!r} is structured: it is pruned by pruning/structured.py")


def row_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Unstructured, compared within each output row: every row loses round(sparsity * in)."""
    k = n_pruned(scores.shape[1], sparsity)
    mask = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        order = torch.argsort(scores.float(), dim=1, stable=True)
        mask.scatter_(1, order[:, :k], False)
    return mask
