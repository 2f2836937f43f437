"""The pruning job: load the model, prune it at each target sparsity, measure, evaluate, save.

    run_prune(spec, ctx)          # ctx: a RunContext (in memory) or the jobs layer's store context

One-shot runs are here: every sparsity starts again from the dense weights (a copy kept on the
CPU, not beside the model on the GPU), so points on the curve are independent prunes. Methods that
read activations (Wanda, SparseGPT, DSnoT) get their statistics `sequential`ly by default: block by
block through the model as it is pruned, once per target, one block's statistics alive at a time
(the papers' way, pruning/calibrate.py); `one_pass` collects every layer's statistics once from the
dense model and shares them by all targets. A layer-wise `allocation` (OWL, ERK: allocation.py)
gives each layer its own share of the target. Runs that train (gradual schedule, fine-tune /
distill recovery) or remove whole heads / neurons go to `recovery.run_recovery`; both paths record
each target the same way (record.py).

    cal = calibrate(spec, handle, method, stage)          # the data, one-pass stats, OWL's ratios
    masks, sparsity = prune_target(spec, handle, method, cal, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from torch import Tensor, nn

from sparsity_core.catalog.pruning import CALIBRATIONS
from sparsity_core.data.calibration import calibration_set
from sparsity_core.jobs.context import RunContext, Stage
from sparsity_core.pruning import METHODS
from sparsity_core.pruning.allocation import layer_sparsities, owl_outlier_ratios
from sparsity_core.pruning.base import LayerCallback, PruningMethod, Sparsity
from sparsity_core.pruning.calibrate import block_by_block, block_groups, collect_stats
from sparsity_core.pruning.checks import reads_calibration, sequential, structured, trains
from sparsity_core.pruning.record import Recorder, open_model, restore_dense
from sparsity_core.pruning.recovery import run_recovery
from sparsity_core.specs import PruneSpec
from sparsity_core.zoo import ModelHandle, prunable_linears

CALIBRATION_SHARE = 0.15  # of the progress bar: one forward pass over the calibration set


@dataclass
class Calibrated:
    """What calibration gives a run: the batches (kept for a sequential prune), one-pass statistics,
    and OWL's outlier ratio of every block (from the dense model, the same for every target)."""

    batches: Optional[list] = None
    stats: Optional[dict] = None
    ratios: Optional[list[float]] = None


def dense_copy(linears: dict[str, nn.Module]) -> dict[str, Tensor]:
    """The dense prunable weights as state-dict entries, on the CPU whatever the model's device."""
    return {f"{n}.weight": m.weight.detach().to("cpu", copy=True) for n, m in linears.items()}


def calibrate(spec: PruneSpec, handle: ModelHandle, method: PruningMethod, stage: Stage) -> Calibrated:
    """The calibration the run needs (none for magnitude / random with a uniform or ERK allocation)."""
    if not reads_calibration(spec):
        return Calibrated()
    calib = calibration_set(handle, spec.calibration_samples, spec.seq_len, spec.seed)
    needs, mode = method.entry.needs_calibration, spec.calibration
    statistics = CALIBRATIONS[mode] if needs else "dense-model input norms, for OWL's outlier ratios only"
    stage.ctx.info(calibration={**calib.info, "mode": mode if needs else "one_pass", "statistics": statistics})
    # Step 1: one-pass statistics (also what OWL's ratios need) unless the method goes block by block
    stats = None
    if (needs and not sequential(spec)) or spec.allocation == "owl":
        need = method.stats() if needs and not sequential(spec) else ()
        stats = collect_stats(handle.model, prunable_linears(handle), calib.batches, need,
                              on_batch=lambda i, n: stage(i / n, f"calibration batch {i}/{n}"))
    # Step 2: OWL's outlier ratio of every block, from the dense model's norms
    ratios = None
    if spec.allocation == "owl":
        ratios = owl_outlier_ratios(block_groups(handle), stats, spec.owl_m)
        stage.ctx.info(allocation={"kind": "owl", "M": spec.owl_m, "lambda": spec.owl_lambda,
                                   "outlier_ratios": [round(r, 6) for r in ratios]})
        if sequential(spec) or not needs:
            stats = None  # only the ratios were wanted: free the norms
    return Calibrated(calib.batches if sequential(spec) else None, stats, ratios)


def allocate(spec: PruneSpec, handle: ModelHandle, cal: Calibrated, target: float) -> Sparsity:
    """The target itself (uniform), or {layer: sparsity} of the spec's allocation."""
    if spec.allocation == "uniform":
        return target
    return layer_sparsities(spec.allocation, block_groups(handle), target, cal.ratios, spec.owl_lambda)


def prune_target(spec: PruneSpec, handle: ModelHandle, method: PruningMethod, cal: Calibrated, target: float,
                 on_layer: Optional[LayerCallback] = None) -> tuple[dict[str, Tensor], Sparsity]:
    """Prune the (dense) model in place at `target`; returns (masks, the sparsity each layer was given)."""
    sparsity = allocate(spec, handle, cal, target)
    if cal.batches is None:  # one pass, or no calibration at all
        masks = method.prune(prunable_linears(handle), sparsity, scope=spec.scope, pattern=spec.pattern,
                             stats=cal.stats, on_layer=on_layer)
        return masks, sparsity
    masks: dict[str, Tensor] = {}
    total = len(prunable_linears(handle))

    def visit(_i: int, group: dict[str, nn.Module], stats: dict) -> None:
        done = len(masks)
        part = {n: sparsity[n] for n in group} if isinstance(sparsity, Mapping) else sparsity
        masks.update(method.prune(group, part, scope=spec.scope, pattern=spec.pattern, stats=stats,
                                  on_layer=on_layer and (lambda d, _n, name: on_layer(done + d, total, name))))

    block_by_block(handle, cal.batches, method.stats(), visit)
    return masks, sparsity


def run_oneshot(spec: PruneSpec, ctx: RunContext) -> None:
    # Step 1: the model, its evaluation, the method and a CPU copy of the dense prunable weights
    handle, evaluator = open_model(spec, ctx)
    dense = dense_copy(prunable_linears(handle))
    method = METHODS[spec.method](seed=spec.seed, **spec.params)
    ctx.info(method_params=method.params.model_dump())
    # Step 2: calibration (one-pass statistics, or the batches a sequential prune reads per target)
    start = CALIBRATION_SHARE if reads_calibration(spec) else 0.0
    cal = calibrate(spec, handle, method, Stage(ctx, 0.0, CALIBRATION_SHARE))
    if spec.allocation == "erk":
        ctx.info(allocation={"kind": "erk"})
    recorder = Recorder(spec, ctx, handle, evaluator)
    # Step 3: each target from the dense weights: prune, then record
    n = len(spec.sparsities)
    for i, target in enumerate(spec.sparsities):
        stage = Stage(ctx, start + (1 - start) * i / n, start + (1 - start) * (i + 1) / n)
        restore_dense(handle, dense)

        def on_layer(done: int, total: int, name: str, target=target, stage=stage) -> None:
            stage(0.8 * done / total, f"target {target:.0%}: pruning layer {done}/{total}")

        masks, sparsity = prune_target(spec, handle, method, cal, target, on_layer)
        if isinstance(sparsity, Mapping):  # what the allocation asked of each layer
            for name, value in sparsity.items():
                ctx.metric("layer_target", value, x=target, series=name)
        recorder.record(target, stage, masks)
    recorder.finish()


def run_prune(spec: PruneSpec, ctx: RunContext) -> None:
    """The `prune` job."""
    torch.manual_seed(spec.seed)
    from sparsity_core.pruning.activation import ACTIVATION_METHODS, run_activation  # WINA / TEAL

    if spec.method in ACTIVATION_METHODS:  # inputs sparsified per token at inference, weights stay dense
        run_activation(spec, ctx)
    elif trains(spec) or structured(spec):
        run_recovery(spec, ctx)
    else:
        run_oneshot(spec, ctx)
    ctx.update(1.0, "done")
