"""Structured pruning: remove whole attention heads or FFN neurons, physically.

A *unit* is one attention head (or, for grouped-query attention, one key/value group with its
query heads) or one FFN intermediate neuron. Removing a unit deletes rows of the Linear layers
that produce it (q/k/v, or intermediate/gate/up) and columns of the Linear that consumes it (the
attention output projection, or the FFN down projection), so the layers really get smaller:

    removal = prune_structured(handle, sparsity=0.5, pattern="heads")   # half the heads, gone
    removal.restore()                                                    # the dense model again

Scores (`magnitude`, lowest removed first): the L2 norm of the unit's slice of the consuming
projection, the part of the weights through which the unit writes into the residual stream
(Michel et al., 2019 use a first-order variant of the same idea). `random` is the baseline.
Removing a unit equals masking it (zeroing its output-projection slice) exactly; a test proves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from sparsity_core.catalog.pruning import STRUCTURED
from sparsity_core.pruning.checks import UNIT_FAMILIES, unit_problem
from sparsity_core.zoo import ModelHandle, blocks


@dataclass
class UnitGroup:
    """The units of one attention or FFN sub-layer and the Linear layers they live in.

    producers: (parent, attribute, rows per unit) of layers whose output rows are the units;
    consumer: (parent, attribute, columns per unit) of the layer that reads them.
    """

    name: str
    producers: list[tuple[nn.Module, str, int]]
    consumer: tuple[nn.Module, str, int]
    on_resize: Optional[Callable[[int], None]] = None  # keeps a module's head counter right

    @property
    def units(self) -> int:
        parent, attr, width = self.consumer
        return getattr(parent, attr).in_features // width

    def consumer_weight(self) -> Tensor:
        parent, attr, _ = self.consumer
        return getattr(parent, attr).weight


# ---------------------------------------------------------------- finding the units of a model

Finder = Callable[[ModelHandle], list[UnitGroup]]
FINDERS: dict[tuple[str, str], Finder] = {}  # (family, heads | neurons) -> the groups of a model


def finds(family: str, pattern: str) -> Callable[[Finder], Finder]:
    """Decorator: the finder of `pattern` units in models of `family` (a pair checks.UNIT_FAMILIES names)."""
    def register(finder: Finder) -> Finder:
        if family not in UNIT_FAMILIES.get(pattern, ()):
            raise ValueError(f"({family}, {pattern}) is not in pruning/checks.py's UNIT_FAMILIES")
        FINDERS[(family, pattern)] = finder
        return finder
    return register


def unit_groups(handle: ModelHandle, pattern: str) -> list[UnitGroup]:
    """The head or neuron groups of every block, by family. Raises ValueError when there are none."""
    if pattern not in STRUCTURED:
        raise ValueError(f"pattern {pattern!r} is not structured ({', '.join(STRUCTURED)})")
    if problem := unit_problem(handle.name, handle.family, pattern):
        raise ValueError(problem)
    return FINDERS[(handle.family, pattern)](handle)


@finds("bert", "heads")
def _bert_heads(handle: ModelHandle) -> list[UnitGroup]:
    out = []
    for i, block in enumerate(blocks(handle)):
        att = block.attention.self
        d = att.attention_head_size

        def resize(n: int, att=att) -> None:  # BERT keeps its own counters (transformers v4 did too)
            att.num_attention_heads, att.all_head_size = n, n * att.attention_head_size

        out.append(UnitGroup(f"layer.{i}.attention", [(att, "query", d), (att, "key", d), (att, "value", d)],
                             (block.attention.output, "dense", d), resize))
    return out


@finds("bert", "neurons")
def _bert_neurons(handle: ModelHandle) -> list[UnitGroup]:
    return [UnitGroup(f"layer.{i}.ffn", [(b.intermediate, "dense", 1)], (b.output, "dense", 1))
            for i, b in enumerate(blocks(handle))]


@finds("llama", "heads")
def _llama_heads(handle: ModelHandle) -> list[UnitGroup]:
    """With grouped-query attention a unit is one key/value head and the query heads sharing it,
    so the query/key ratio (`num_key_value_groups`) stays what the attention code expects."""
    out = []
    for i, block in enumerate(blocks(handle)):
        att = block.self_attn
        d, r = att.head_dim, att.num_key_value_groups
        out.append(UnitGroup(f"layer.{i}.attention",
                             [(att, "q_proj", r * d), (att, "k_proj", d), (att, "v_proj", d)],
                             (att, "o_proj", r * d)))
    return out


@finds("llama", "neurons")
def _llama_neurons(handle: ModelHandle) -> list[UnitGroup]:
    return [UnitGroup(f"layer.{i}.ffn", [(b.mlp, "gate_proj", 1), (b.mlp, "up_proj", 1)], (b.mlp, "down_proj", 1))
            for i, b in enumerate(blocks(handle))]


@finds("mlp", "neurons")
def _mlp_neurons(handle: ModelHandle) -> list[UnitGroup]:
    """An MLP's hidden units: rows of each hidden Linear, columns of the next Linear (or the head)."""
    seq = [m for m in handle.model.modules() if isinstance(m, nn.Sequential)]
    body = seq[0] if seq else None
    idx = [i for i, m in enumerate(body or []) if isinstance(m, nn.Linear)]
    if not idx or not hasattr(handle.model, "head"):
        raise ValueError(f"{handle.name}: no hidden Linear layers found")
    nexts = [(body, str(j), 1) for j in idx[1:]] + [(handle.model, "head", 1)]
    return [UnitGroup(f"body.{i}", [(body, str(i), 1)], nxt) for i, nxt in zip(idx, nexts)]


# ---------------------------------------------------------------- scoring and choosing units

def _magnitude_units(group: UnitGroup, generator: torch.Generator) -> Tensor:
    # the L2 norm of the unit's columns in the consuming projection
    w = group.consumer_weight().detach().float()
    return w.view(w.shape[0], group.units, group.consumer[2]).pow(2).sum(dim=(0, 2)).sqrt().cpu()


def _random_units(group: UnitGroup, generator: torch.Generator) -> Tensor:
    return torch.rand(group.units, generator=generator)


# the catalog's structured methods (`MethodEntry.structured`); a test keeps the two in step
UNIT_SCORES: dict[str, Callable[[UnitGroup, torch.Generator], Tensor]] = {
    "magnitude": _magnitude_units, "random": _random_units,
}


def unit_scores(group: UnitGroup, method: str = "magnitude", generator: Optional[torch.Generator] = None) -> Tensor:
    """One score per unit, higher = more important."""
    if method not in UNIT_SCORES:
        raise ValueError(f"structured pruning supports {', '.join(UNIT_SCORES)}, not {method!r}")
    return UNIT_SCORES[method](group, generator if generator is not None else torch.Generator().manual_seed(0))


def choose_units(scores: dict[str, Tensor], sparsity: float, scope: str = "layer") -> dict[str, Tensor]:
    """{group: indices of the units kept}. Every group keeps at least one unit (an attention layer
    with no head left has nothing to attend with). Layer scope removes round(sparsity * units)
    per group; global scope ranks all units of all groups together."""
    if scope == "layer":
        drop = {n: min(int(round(sparsity * len(s))), len(s) - 1) for n, s in scores.items()}
    else:
        flat = torch.cat([s.float() for s in scores.values()])
        owner = torch.cat([torch.full((len(s),), i) for i, s in enumerate(scores.values())])
        k = int(round(sparsity * len(flat)))
        drop = dict.fromkeys(scores, 0)
        names = list(scores)
        for j in torch.argsort(flat, stable=True).tolist():
            if k == 0:
                break
            name = names[int(owner[j])]
            if drop[name] < len(scores[name]) - 1:
                drop[name] += 1
                k -= 1
    keep = {}
    for name, s in scores.items():
        order = torch.argsort(s.float(), stable=True)
        keep[name] = torch.sort(order[drop[name]:]).values
    return keep


# ---------------------------------------------------------------- removing (and masking) units

def _rows(units: Tensor, width: int) -> Tensor:
    return (units[:, None] * width + torch.arange(width)[None, :]).flatten()


def shrink_linear(layer: nn.Linear, index: Tensor, dim: int) -> nn.Linear:
    """A new, smaller Linear keeping `index` along dim 0 (output rows) or 1 (input columns)."""
    index = index.to(layer.weight.device)
    weight = layer.weight.detach().index_select(dim, index)
    bias = layer.bias
    if bias is not None and dim == 0:
        bias = bias.detach().index_select(0, index)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias.detach())
    return new


@dataclass
class Removal:
    """What `remove_units` replaced; `restore()` puts the original (dense) layers back."""

    replaced: list[tuple[nn.Module, str, nn.Module]] = field(default_factory=list)
    resized: list[tuple[UnitGroup, int]] = field(default_factory=list)
    kept: dict[str, list[int]] = field(default_factory=dict)
    units_before: int = 0

    @property
    def unit_sparsity(self) -> float:
        return 1.0 - sum(len(k) for k in self.kept.values()) / max(self.units_before, 1)

    def restore(self) -> None:
        for parent, attr, old in reversed(self.replaced):
            setattr(parent, attr, old)
        for group, n in self.resized:
            group.on_resize(n)
        self.replaced.clear()


def _swap(removal: Removal, parent: nn.Module, attr: str, index: Tensor, dim: int) -> None:
    old = getattr(parent, attr)
    removal.replaced.append((parent, attr, old))
    setattr(parent, attr, shrink_linear(old, index, dim))


def remove_units(groups: list[UnitGroup], keep: dict[str, Tensor]) -> Removal:
    """Physically drop every unit not in `keep` (rows of producers, columns of the consumer)."""
    removal = Removal(units_before=sum(g.units for g in groups))
    for g in groups:
        kept = keep[g.name]
        removal.kept[g.name] = kept.tolist()
        if len(kept) == g.units:
            continue
        if g.on_resize is not None:
            removal.resized.append((g, g.units))
        for parent, attr, width in g.producers:
            _swap(removal, parent, attr, _rows(kept, width), 0)
        parent, attr, width = g.consumer
        _swap(removal, parent, attr, _rows(kept, width), 1)
        if g.on_resize is not None:
            g.on_resize(len(kept))
    return removal


@torch.no_grad()
def mask_units(groups: list[UnitGroup], keep: dict[str, Tensor]) -> None:
    """Zero the consumer columns of the dropped units: what removal does, without resizing."""
    for g in groups:
        parent, attr, width = g.consumer
        w = getattr(parent, attr).weight
        mask = torch.zeros(g.units, dtype=torch.bool)
        mask[keep[g.name]] = True
        w.mul_(mask.repeat_interleave(width).to(w.device, w.dtype)[None, :])


def prune_structured(handle: ModelHandle, sparsity: float, pattern: str, scope: str = "layer",
                     method: str = "magnitude", seed: int = 0) -> Removal:
    """Score, choose and physically remove `sparsity` of the heads or neurons of `handle`."""
    # Step 1: the units of the model and one score each
    groups = unit_groups(handle, pattern)
    gen = torch.Generator().manual_seed(seed)
    scores = {g.name: unit_scores(g, method, gen) for g in groups}
    # Step 2: the lowest-scoring units go, then the layers are rebuilt without them
    return remove_units(groups, choose_units(scores, sparsity, scope))


def apply_plan(handle: ModelHandle, pattern: str, kept: dict[str, list[int]]) -> Removal:
    """Rebuild a dense model's layers for a saved plan ({group: kept unit indices}), so a pruned
    state dict (saved as safetensors) loads back into it."""
    groups = unit_groups(handle, pattern)
    return remove_units(groups, {g.name: torch.tensor(kept[g.name], dtype=torch.long) for g in groups})
