"""The method base class and the registry.

A method scores every weight (higher = more important); the pattern and scope turn scores into
masks; the masks are applied in place. Methods that change the surviving weights too (SparseGPT)
override `prune`.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
from torch import Tensor, nn

from sparsity_core.pruning.masks import global_masks, unstructured_mask

METHODS: dict[str, type["PruningMethod"]] = {}


def register_method(cls: type["PruningMethod"]) -> type["PruningMethod"]:
    """Class decorator: make a method available by its `name` (names are unique)."""
    if cls.name in METHODS:
        raise ValueError(f"pruning method {cls.name!r} is registered already")
    METHODS[cls.name] = cls
    return cls


class PruningMethod:
    name: ClassVar[str]
    description: ClassVar[str] = ""
    needs_calibration: ClassVar[bool] = False
    patterns: ClassVar[tuple[str, ...]] = ("unstructured",)  # what the shared tests exercise
    scopes: ClassVar[tuple[str, ...]] = ("layer", "global")

    def __init__(self, seed: int = 0):
        self.seed = seed

    def score(self, name: str, weight: Tensor, stats: Optional[dict] = None) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def prune(self, linears: dict[str, nn.Module], sparsity: float, scope: str = "layer",
              pattern: str = "unstructured", stats: Optional[dict] = None) -> dict[str, Tensor]:
        """Mask `linears` in place at `sparsity`; returns {name: bool mask} (True = kept)."""
        if pattern != "unstructured":
            raise ValueError(f"{self.name} does not support pattern {pattern!r}")
        scores = {n: self.score(n, m.weight, (stats or {}).get(n)) for n, m in linears.items()}
        if scope == "global":
            masks = global_masks(scores, sparsity)
        else:
            masks = {n: unstructured_mask(s, sparsity) for n, s in scores.items()}
        for name, module in linears.items():
            module.weight.mul_(masks[name].to(module.weight.dtype))
        return masks
