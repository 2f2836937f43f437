"""The method base class and the registry.

A method scores every weight (higher = more important); the pattern and scope turn scores into
masks; the masks are applied in place. Methods that change the surviving weights too (SparseGPT)
or refine a mask (DSnoT) override `prune_layer`.

    method = METHODS["wanda"](seed=0)
    masks = method.prune(linears, 0.5, pattern="2:4", stats=calibration_stats)
    masks = method.prune(linears, {"fc1": 0.6, "fc2": 0.4}, stats=calibration_stats)  # per layer (OWL, ERK)

A method's name, description, patterns, scopes and parameters are its catalog entry
(`sparsity_core.catalog.pruning.METHODS[name]`, `cls.entry`): the class only implements them.
Weights are handled as (out, in) matrices; GPT-2's Conv1D stores (in, out), so `weight_2d` gives
the transposed view and masks come back in the layer's own layout.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Optional, Union

import torch
from pydantic import BaseModel, ValidationError
from torch import Tensor, nn

from sparsity_core.catalog.pruning import METHODS as CATALOG
from sparsity_core.catalog.pruning import STRUCTURED, MethodEntry, Pattern, parse_pattern
from sparsity_core.pruning.masks import global_masks, pattern_mask

METHODS: dict[str, type["PruningMethod"]] = {}

LayerCallback = Callable[[int, int, str], None]  # (layers done, layers in all, layer name)
Sparsity = Union[float, Mapping[str, float]]  # one target for every layer, or one per layer name


def register_method(cls: type["PruningMethod"]) -> type["PruningMethod"]:
    """Class decorator: the implementation of catalog method `cls.name` (names are unique)."""
    if cls.name not in CATALOG:
        raise ValueError(f"pruning method {cls.name!r} is not in the catalog (sparsity_core/catalog/pruning.py)")
    if cls.name in METHODS:
        raise ValueError(f"pruning method {cls.name!r} is registered already")
    cls.entry = CATALOG[cls.name]
    METHODS[cls.name] = cls
    return cls


def weight_2d(module: nn.Module) -> Tensor:
    """The layer's weight as an (out, in) view (Conv1D keeps (in, out))."""
    w = module.weight
    return w.t() if type(module).__name__ == "Conv1D" else w


def in_features(module: nn.Module) -> int:
    return weight_2d(module).shape[1]


def _problem(error: dict) -> str:
    field = ".".join(map(str, error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"no parameter {field!r}"
    return f"parameter {field!r}: {error['msg']}"


class PruningMethod:
    """Base class. Subclasses set `name` (a catalog method) and implement `score` (or `prune_layer`).

    `__init__` validates the method's own parameters with the catalog entry's pydantic model and
    sets each as an attribute (`self.damp`); `self.params` is the validated model."""

    name: ClassVar[str]
    entry: ClassVar[MethodEntry]  # set by register_method
    stats_needed: ClassVar[tuple[str, ...]] = ()  # calibration statistics: "norm", "mean", "hessian"

    def __init__(self, seed: int = 0, **params: Any):
        self.seed = seed
        try:
            self.params: BaseModel = self.entry.params.model_validate(params)
        except ValidationError as exc:
            raise ValueError(f"{self.name}: {'; '.join(map(_problem, exc.errors()))}") from None
        for key, value in self.params:
            setattr(self, key, value)

    @classmethod
    def supports(cls, pattern: str | Pattern) -> bool:
        """A weight pattern this method prunes (heads / neurons are pruning/structured.py's)."""
        pat = parse_pattern(pattern) if isinstance(pattern, str) else pattern
        return pat.kind not in STRUCTURED and cls.entry.supports(pat)

    def stats(self) -> tuple[str, ...]:
        """Calibration statistics this method needs with its parameters."""
        return self.stats_needed

    def score(self, name: str, weight: Tensor, stats: Optional[dict] = None) -> Tensor:
        """Importance of every weight of an (out, in) matrix; higher = kept first."""
        raise NotImplementedError

    @torch.no_grad()
    def prune(self, linears: dict[str, nn.Module], sparsity: Sparsity, scope: str = "layer",
              pattern: str = "unstructured", stats: Optional[dict] = None,
              on_layer: Optional[LayerCallback] = None) -> dict[str, Tensor]:
        """Mask `linears` in place at `sparsity` (one fraction, or {layer name: fraction} from a
        layer-wise allocation); returns {name: bool mask} (True = kept), each mask in the layer's
        own weight layout."""
        pat = parse_pattern(pattern)
        if not self.supports(pat):
            raise ValueError(f"{self.name} does not support pattern {pattern!r}")
        if scope not in self.entry.scopes:
            raise ValueError(f"{self.name} does not support scope {scope!r}")
        per_layer = isinstance(sparsity, Mapping)
        if per_layer and (missing := [n for n in linears if n not in sparsity]):
            raise ValueError(f"no sparsity given for layer {missing[0]!r} (and {len(missing) - 1} more)")
        stats = stats or {}
        if scope == "global":
            if per_layer:
                raise ValueError("global scope sets one threshold over all layers; per-layer sparsities "
                                 "need the layer scope")
            return self._prune_global(linears, sparsity, pat, stats)
        masks = {}
        for i, (name, module) in enumerate(linears.items()):
            w = weight_2d(module)
            mask = self.prune_layer(name, w, sparsity[name] if per_layer else sparsity, pat, stats.get(name))
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
