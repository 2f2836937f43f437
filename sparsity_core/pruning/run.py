"""The pruning job: load the model, prune it at each target sparsity, measure, evaluate, save.

    run_prune(spec, ctx)          # ctx: a RunContext (in memory) or the jobs layer's store context

One-shot runs are here: every sparsity starts again from the dense weights, so points on the curve
are independent prunes. Calibration statistics (Wanda, SparseGPT, DSnoT) are collected once from
the dense model and shared by all targets. Runs that train (gradual schedule, fine-tune / distill
recovery) or remove whole heads / neurons go to `recovery.run_recovery`; both paths record each
target the same way (record.py).
"""

from __future__ import annotations

import torch

from sparsity_core.data.calibration import calibration_set
from sparsity_core.jobs.context import RunContext, Stage
from sparsity_core.pruning import METHODS
from sparsity_core.pruning.base import PruningMethod
from sparsity_core.pruning.calibrate import collect_stats
from sparsity_core.pruning.checks import structured, trains
from sparsity_core.pruning.record import Recorder, open_model, restore_dense
from sparsity_core.pruning.recovery import run_recovery
from sparsity_core.specs import PruneSpec
from sparsity_core.zoo import ModelHandle, prunable_linears

CALIBRATION_SHARE = 0.15  # of the progress bar: one forward pass over the calibration set


def calibrate(spec: PruneSpec, handle: ModelHandle, method: PruningMethod, stage: Stage) -> dict:
    calib = calibration_set(handle, spec.calibration_samples, spec.seq_len, spec.seed)
    stage.ctx.info(calibration={**calib.info, "statistics": "one pass of the dense model"})
    return collect_stats(handle.model, prunable_linears(handle), calib.batches, method.stats(),
                         on_batch=lambda i, n: stage(i / n, f"calibration batch {i}/{n}"))


def run_oneshot(spec: PruneSpec, ctx: RunContext) -> None:
    # Step 1: the model, its evaluation, the method and a copy of the dense prunable weights
    handle, evaluator = open_model(spec, ctx)
    linears = prunable_linears(handle)
    dense = {f"{n}.weight": m.weight.detach().clone() for n, m in linears.items()}
    method = METHODS[spec.method](seed=spec.seed, **spec.params)
    ctx.info(method_params=method.params.model_dump())
    # Step 2: calibration statistics, when the method needs activations
    stats, start = None, 0.0
    if method.entry.needs_calibration:
        stats, start = calibrate(spec, handle, method, Stage(ctx, 0.0, CALIBRATION_SHARE)), CALIBRATION_SHARE
    recorder = Recorder(spec, ctx, handle, evaluator)
    # Step 3: each target from the dense weights: prune, then record
    n = len(spec.sparsities)
    for i, target in enumerate(spec.sparsities):
        stage = Stage(ctx, start + (1 - start) * i / n, start + (1 - start) * (i + 1) / n)
        restore_dense(handle, dense)

        def on_layer(done: int, total: int, name: str, target=target, stage=stage) -> None:
            stage(0.8 * done / total, f"target {target:.0%}: pruning layer {done}/{total}")

        masks = method.prune(linears, target, scope=spec.scope, pattern=spec.pattern, stats=stats,
                             on_layer=on_layer)
        recorder.record(target, stage, masks)
    recorder.finish()


def run_prune(spec: PruneSpec, ctx: RunContext) -> None:
    """The `prune` job."""
    torch.manual_seed(spec.seed)
    if trains(spec) or structured(spec):
        run_recovery(spec, ctx)
    else:
        run_oneshot(spec, ctx)
    ctx.update(1.0, "done")
