"""The method base class and the registry.

A method scores every weight (higher = more important); the pattern and scope turn scores into
masks; the masks are applied in place. Methods that change the surviving weights too (SparseGPT)
or refine a mask (DSnoT) override `prune_layer`.

    method = METHODS["wanda"](seed=0)
    masks = method.prune(linears, 0.5, pattern="2:4", stats=calibration_stats)

Weights are handled as (out, in) matrices; GPT-2's Conv1D stores (in, out), so `weight_2d` gives
the transposed view and masks come back in the layer's own layout.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

import torch
from torch import Tensor, nn

from sparsity_core.pruning.masks import Pattern, global_masks, parse_pattern, pattern_mask

METHODS: dict[str, type["PruningMethod"]] = {}

LayerCallback = Callable[[int, int, str], None]  # (layers done, layers in all, layer name)


def register_method(cls: type["PruningMethod"]) -> type["PruningMethod"]:
    """Class decorator: make a method available by its `name` (names are unique)."""
    if cls.name in METHODS:
        raise ValueError(f"pruning method {cls.name!r} is registered already")
    METHODS[cls.name] = cls
    return cls


def weight_2d(module: nn.Module) -> Tensor:
    """The layer's weight as an (out, in) view (Conv1D keeps (in, out))."""
    w = module.weight
    return w.t() if type(module).__name__ == "Conv1D" else w


def in_features(module: nn.Module) -> int:
    return weight_2d(module).shape[1]


class PruningMethod:
    """Base class. Subclasses set `name`, `description`, `patterns` (one concrete pattern per
    pattern kind they support; the shared tests run over them), and implement `score`.

    `params` declares the method's own parameters as {name: (default, description)}; the spec's
    `params` dict is validated against it and passed to __init__ as keyword arguments."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    needs_calibration: ClassVar[bool] = False
    stats_needed: ClassVar[tuple[str, ...]] = ()  # calibration statistics: "norm", "mean", "hessian"
    patterns: ClassVar[tuple[str, ...]] = ("unstructured",)  # what the shared tests exercise
    scopes: ClassVar[tuple[str, ...]] = ("layer", "global")
    params: ClassVar[dict[str, tuple[Any, str]]] = {}

    def __init__(self, seed: int = 0, **params: Any):
        self.seed = seed
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"{self.name} has no parameter {', '.join(sorted(unknown))}")
        for key, (default, _) in self.params.items():
            setattr(self, key, params.get(key, default))

    @classmethod
    def supports(cls, pattern: str | Pattern) -> bool:
        kind = parse_pattern(pattern).kind if isinstance(pattern, str) else pattern.kind
        return kind in {parse_pattern(p).kind for p in cls.patterns}

    @classmethod
    def stats_for(cls, params: Optional[dict[str, Any]] = None) -> tuple[str, ...]:
        """Calibration statistics this method needs with these parameters."""
        return cls.stats_needed

    def score(self, name: str, weight: Tensor, stats: Optional[dict] = None) -> Tensor:
        """Importance of every weight of an (out, in) matrix; higher = kept first."""
        raise NotImplementedError

    @torch.no_grad()
    def prune(self, linears: dict[str, nn.Module], sparsity: float, scope: str = "layer",
              pattern: str = "unstructured", stats: Optional[dict] = None,
              on_layer: Optional[LayerCallback] = None) -> dict[str, Tensor]:
        """Mask `linears` in place at `sparsity`; returns {name: bool mask} (True = kept), each
        mask in the layer's own weight layout."""
        pat = parse_pattern(pattern)
        if not self.supports(pat):
            raise ValueError(f"{self.name} does not support pattern {pattern!r}")
        if scope not in self.scopes:
            raise ValueError(f"{self.name} does not support scope {scope!r}")
        stats = stats or {}
        if scope == "global":
            return self._prune_global(linears, sparsity, pat, stats)
        masks = {}
        for i, (name, module) in enumerate(linears.items()):
            w = weight_2d(module)
            mask = self.prune_layer(name, w, sparsity, pat, stats.get(name))
            w.mul_(mask.to(w.dtype))
            masks[name] = mask.t() if w is not module.weight else mask
            if on_layer:
                on_layer(i + 1, len(linears), name)
        return masks

    def prune_layer(self, name: str, weight: Tensor, sparsity: float, pattern: Pattern,
                    stats: Optional[dict]) -> Tensor:
        """The kept-mask of one (out, in) weight; may also update `weight` in place."""
        return pattern_mask(self.score(name, weight, stats), sparsity, pattern)

    def _prune_global(self, linears, sparsity, pattern, stats):
        if pattern.kind != "unstructured":
            raise ValueError("global scope works with the unstructured pattern only")
        scores = {n: self.score(n, weight_2d(m), stats.get(n)) for n, m in linears.items()}
        masks = global_masks(scores, sparsity)
        out = {}
        for name, module in linears.items():
            w = weight_2d(module)
            w.mul_(masks[name].to(w.dtype))
            out[name] = masks[name].t() if w is not module.weight else masks[name]
        return out
