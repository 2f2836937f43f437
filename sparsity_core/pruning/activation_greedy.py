"""TEAL's block-wise greedy allocation of activation sparsity (Liu et al. 2024, sec. 4.2), which
WINA's release uses too: each block's inputs get different sparsities, chosen on calibration data,
instead of every layer skipping the same share.

    levels = greedy_levels(handle, ACTIVATION_METHODS["teal"], [0.25, 0.5], calib.batches)
    levels[0.5]["model.layers.3.mlp.down_proj"]          # that layer's share of inputs skipped at 50%
    with sparsify_inputs(linears, method, levels[0.5]) as counts: ...

Per block, on the inputs the dense model gives it (every calibration batch): all of the block's
inputs start dense; at each step, for each of its input *units* (the layers reading one tensor
share a level: q/k/v, o, gate/up, down in a Llama block), the unit's sparsity is raised by STEP and
the block's output error measured, ||block(x) - dense(x)||^2 / ||dense(x)||^2 summed over the
batches, with the method's own selection at those levels; the unit whose raise costs least is
raised. A unit's weight is the parameters of the layers reading it (a skipped input element skips
one column of each), so the block's sparsity is the parameter-weighted mean of its levels, the
share of weight reads a batch-1 kernel skips. When that mean passes a target, the allocation is
recorded with the last step cut short so the mean equals the target exactly: every block, and so
the model, skips exactly the target share of its weight reads, as uniform allocation does.

Differences from TEAL's code: it cuts each layer at a calibrated magnitude threshold and here
each token keeps its top-k at the layer's level (pruning/activation.py); its step is finer. A
model without blocks (an MLP) has one unit per block, so its greedy allocation is uniform.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from sparsity_core.pruning.activation import ActivationMethod, input_groups, plan_layers, sparsify_inputs
from sparsity_core.pruning.base import weight_2d
from sparsity_core.pruning.calibrate import _hidden, _no_cache, _set_hidden, catch_block_inputs
from sparsity_core.zoo import ModelHandle, blocks, prunable_linears
from sparsity_core.zoo.adapters import block_prefix

STEP = 0.05  # a unit's sparsity rises by this much per step
MAX_LEVEL = 0.95  # no unit skips more of its inputs


def block_units(group: dict[str, nn.Module]) -> dict[str, tuple[str, ...]]:
    """{unit: the layers reading that input}, a unit named by its first reader, in block order."""
    units: dict[str, tuple[str, ...]] = {}
    for members in input_groups(list(group)).values():
        units.setdefault(members[0], members)
    return units


def unit_weights(group: dict[str, nn.Module], units: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """{unit: the share of the block's weight parameters its layers hold} (sums to 1)."""
    params = {u: sum(weight_2d(group[m]).numel() for m in members) for u, members in units.items()}
    total = sum(params.values())
    return {u: p / total for u, p in params.items()}


def allocate(levels: dict[str, float], weights: dict[str, float], before: dict[str, float], unit: str,
             target: float) -> dict[str, float]:
    """The levels between `before` and `levels` (which differ in `unit` alone) whose weighted mean
    is exactly `target`: `unit` raised only part of the way."""
    low = sum(before[u] * w for u, w in weights.items())
    high = sum(levels[u] * w for u, w in weights.items())
    part = 1.0 if high <= low else (target - low) / (high - low)
    return {**before, unit: before[unit] + part * (levels[unit] - before[unit])}


@torch.no_grad()
def greedy_block(run_block, group: dict[str, nn.Module], method: ActivationMethod, plans, targets: list[float],
                 dense: list[torch.Tensor]) -> dict[float, dict[str, float]]:
    """{target: {layer: level}} for one block. run_block() -> the block's outputs on every batch;
    dense: those outputs without sparsity."""
    units = block_units(group)
    weights = unit_weights(group, units)
    scale = sum(float(d.float().pow(2).sum()) for d in dense) or 1.0
    unit_levels = dict.fromkeys(units, 0.0)
    layer_levels = dict.fromkeys(group, 0.0)  # read by the hooks at every call

    def set_unit(unit: str, level: float) -> None:
        for member in units[unit]:
            layer_levels[member] = level

    def error() -> float:
        return sum(float((out.float() - d.float()).pow(2).sum()) for out, d in zip(run_block(), dense)) / scale

    pending, found = sorted(targets), {}
    with sparsify_inputs(group, method, layer_levels, {n: plans[n] for n in group}):
        while pending:
            # Step 1: the raise of each unit, measured; the cheapest kept
            best: Optional[tuple[float, str]] = None
            for unit, level in unit_levels.items():
                if level + STEP > MAX_LEVEL + 1e-9:
                    continue
                set_unit(unit, level + STEP)
                cost = error()
                set_unit(unit, level)
                if best is None or cost < best[0]:
                    best = (cost, unit)
            if best is None:  # every unit at MAX_LEVEL: higher targets stay out of reach
                break
            before = dict(unit_levels)
            unit_levels[best[1]] += STEP
            set_unit(best[1], unit_levels[best[1]])
            # Step 2: every target the block's weighted sparsity has now passed
            mean = sum(unit_levels[u] * w for u, w in weights.items())
            while pending and mean >= pending[0] - 1e-12:
                levels = allocate(unit_levels, weights, before, best[1], pending[0])
                found[pending.pop(0)] = {m: levels[u] for u, members in units.items() for m in members}
    for target in pending:
        raise ValueError(f"activation sparsity {target:.0%} is above what greedy allocation reaches "
                         f"(every input at most {MAX_LEVEL:.0%})")
    return found


@torch.no_grad()
def greedy_levels(handle: ModelHandle, method: ActivationMethod, targets: list[float], batches: Iterable,
                  on_block=None) -> dict[float, dict[str, float]]:
    """{target: {layer: its share of inputs skipped}} for every prunable layer (see the module docstring).
    on_block(i, n): called after each block."""
    batches, model, linears = list(batches), handle.model, prunable_linears(handle)
    out: dict[float, dict[str, float]] = {t: dict.fromkeys(linears, 0.0) for t in targets if t <= 0}
    targets = [t for t in targets if t > 0]
    stack = blocks(handle)
    if not stack or not targets:  # no blocks: every layer is its own block of one unit, so uniform
        return {**out, **{t: dict.fromkeys(linears, t) for t in targets}}
    plans = plan_layers(linears, method)
    out.update({t: {} for t in targets})
    prefix = block_prefix(handle)
    with _no_cache(model):
        inputs = catch_block_inputs(model, stack[0], batches)
        for i, block in enumerate(stack):
            group = {n: m for n, m in linears.items() if n.startswith(f"{prefix}.{i}.")}
            run_block = lambda block=block: [_hidden(block(*a, **k)) for a, k in inputs]  # noqa: E731
            dense = run_block()
            if group:
                for target, levels in greedy_block(run_block, group, method, plans, targets, dense).items():
                    out[target].update(levels)
            for item, hidden in zip(inputs, dense):  # the dense outputs feed the next block
                _set_hidden(item, hidden)
            if on_block:
                on_block(i + 1, len(stack))
    return out
