"""Wanda: prune by |W| x ||X|| (Sun et al., 2023, "A Simple and Effective Pruning Approach for LLMs").

The score of weight W[i, j] is |W[i, j]| times the L2 norm of input feature j over the
calibration tokens. Unstructured masks compare weights within each output row (the paper's
"per-output" group, which it found matters for LLMs); N:M and block masks use the same score.
No weight update, one forward pass of calibration data.
"""

from typing import Optional

import torch
from torch import Tensor

from sparsity_core.catalog.pruning import Pattern
from sparsity_core.pruning.base import PruningMethod, register_method
from sparsity_core.pruning.masks import pattern_mask, row_mask


def wanda_score(weight: Tensor, stats: Optional[dict]) -> Tensor:
    # Step 1: ||X_j||_2 over all calibration tokens, from the running sum of squares
    if not stats or "sq_sum" not in stats:
        raise ValueError("wanda needs calibration statistics (input norms)")
    norm = stats["sq_sum"].to(weight.device, torch.float32).sqrt()
    # Step 2: criterion = |W| * ||X||, broadcast along output rows
    return weight.abs().float() * norm.unsqueeze(0)


@register_method
class Wanda(PruningMethod):
    name = "wanda"
    stats_needed = ("norm",)

    def score(self, name: str, weight: Tensor, stats=None) -> Tensor:
        return wanda_score(weight, stats)

    def prune_layer(self, name: str, weight: Tensor, sparsity: float, pattern: Pattern,
                    stats: Optional[dict]) -> Tensor:
        scores = self.score(name, weight, stats)
        if pattern.kind == "unstructured":
            return row_mask(scores, sparsity)
        return pattern_mask(scores, sparsity, pattern)
