"""The pruning job: load the model, prune it at each target sparsity, measure, evaluate, save.

Every sparsity starts again from the dense weights, so points on the curve are independent
one-shot prunes. Calibration statistics (Wanda, SparseGPT, DSnoT) are collected once from the
dense model and shared by all targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from sparsity_core.data.calibration import calibration_set
from sparsity_core.progress import Progress, Stage
from sparsity_core.pruning import METHODS
from sparsity_core.pruning.artifacts import save_model, save_target, write_json
from sparsity_core.pruning.base import PruningMethod, weight_2d
from sparsity_core.pruning.calibrate import collect_stats
from sparsity_core.pruning.evaluate import Evaluator, make_evaluator
from sparsity_core.pruning.masks import measured_sparsity
from sparsity_core.pruning.size import size_report
from sparsity_core.pruning.views import PROMPT, generate, histogram, histogram_edges, mask_crop
from sparsity_core.specs import PruneSpec
from sparsity_core.zoo import ModelHandle, load_model, prunable_linears

CALIBRATION_SHARE = 0.15  # of the progress bar: one forward pass over the calibration set


@dataclass
class Context:
    """What every target of one run shares."""

    spec: PruneSpec
    handle: ModelHandle
    linears: dict[str, nn.Module]
    dense: dict[str, Tensor]
    evaluator: Evaluator
    method: PruningMethod
    stats: Optional[dict] = None
    edges: Optional[Tensor] = None
    views: dict[str, Any] = field(default_factory=dict)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def prepare(spec: PruneSpec, progress: Progress) -> Context:
    # Step 1: model, the layers to prune and a copy of their dense weights
    progress.update(0.0, f"loading {spec.model}")
    handle = load_model(spec.model, device=pick_device())
    linears = prunable_linears(handle)
    dense = {n: m.weight.detach().clone() for n, m in linears.items()}
    # Step 2: the evaluation, fixed for the whole run and written into it
    evaluator = make_evaluator(handle, spec.seed, spec.eval_samples)
    method = METHODS[spec.method](seed=spec.seed, **spec.params)
    progress.info(evaluation=evaluator.describe(), params=handle.num_params(), device=str(handle.device),
                  prunable_params=sum(w.numel() for w in dense.values()), prunable_layers=len(dense),
                  method_params={k: getattr(method, k) for k in method.params})
    ctx = Context(spec, handle, linears, dense, evaluator, method)
    # Step 3: calibration statistics, when the method needs activations
    if method.needs_calibration:
        ctx.stats = calibrate(ctx, Stage(progress, 0.0, CALIBRATION_SHARE))
    ctx.edges = histogram_edges({n: weight_2d(m) for n, m in linears.items()}, spec.seed)
    ctx.views = {"histogram": {"edges": ctx.edges.tolist(), "dense": histogram(dense, ctx.edges, spec.seed)},
                 "mask_layer": next(iter(linears)), "masks": {}, "pruned": {}}
    if handle.task == "causal_lm":
        ctx.views["generation"] = {"prompt": PROMPT, "dense": generate(handle), "pruned": {}}
    return ctx


def calibrate(ctx: Context, stage: Stage) -> dict:
    spec = ctx.spec
    calib = calibration_set(ctx.handle, spec.calibration_samples, spec.seq_len, spec.seed)
    stage.progress.info(calibration={**calib.info, "statistics": "one pass of the dense model"})
    need = ctx.method.stats_for(spec.params)
    return collect_stats(ctx.handle.model, ctx.linears, calib.batches, need,
                         on_batch=lambda i, n: stage(i / n, f"calibration batch {i}/{n}"))


def restore_dense(ctx: Context) -> None:
    with torch.no_grad():
        for name, module in ctx.linears.items():
            module.weight.copy_(ctx.dense[name])


def prune_once(ctx: Context, target: float, stage: Stage) -> dict[str, Tensor]:
    """One-shot prune of the dense model to `target`, reporting each layer as it is done."""
    restore_dense(ctx)

    def on_layer(done: int, total: int, name: str) -> None:
        stage(0.8 * done / total, f"{target:.0%}: pruned {name} ({done}/{total})")

    return ctx.method.prune(ctx.linears, target, scope=ctx.spec.scope, pattern=ctx.spec.pattern,
                            stats=ctx.stats, on_layer=on_layer)


def record(ctx: Context, target: float, masks: dict[str, Tensor], progress: Progress, stage: Stage) -> None:
    """Measure, evaluate and store one target: metrics, views, masks and pruned weights."""
    weights = {n: weight_2d(m).detach() for n, m in ctx.linears.items()}
    # Step 1: the sparsity really reached, overall and per layer
    overall, per_layer = measured_sparsity(weights)
    progress.metric("sparsity", overall, x=target)
    for name, value in per_layer.items():
        progress.metric("layer_sparsity", value, x=target, series=name)
    for key, value in size_report(weights).items():
        progress.metric(key, value, x=target)
    # Step 2: quality
    stage(0.85, f"{target:.0%}: evaluating")
    for key, value in ctx.evaluator(ctx.handle).items():
        progress.metric(key, value, x=target)
    # Step 3: views for the page, and what loads back
    tag = f"{target:g}"
    ctx.views["pruned"][tag] = histogram(weights, ctx.edges, ctx.spec.seed)
    ctx.views["masks"][tag] = mask_crop(weight_2d(ctx.linears[ctx.views["mask_layer"]]) != 0)
    if "generation" in ctx.views:
        ctx.views["generation"]["pruned"][tag] = generate(ctx.handle)
    save_target(progress, target, ctx.linears, masks)


def run_prune(spec: PruneSpec, progress: Progress) -> None:
    torch.manual_seed(spec.seed)
    from sparsity_core.pruning.recovery import run_recovery, uses_this_path

    if uses_this_path(spec):  # gradual schedule, fine-tune / distill recovery, heads / neurons
        return run_recovery(spec, progress)
    ctx = prepare(spec, progress)
    start, n = CALIBRATION_SHARE if ctx.stats is not None else 0.0, len(spec.sparsities)
    for i, target in enumerate(spec.sparsities):
        stage = Stage(progress, start + (1 - start) * i / n, start + (1 - start) * (i + 1) / n)
        # the schedule / recovery paths (gradual, finetune, distill) branch here
        masks = prune_once(ctx, target, stage)
        record(ctx, target, masks, progress, stage)
    save_model(progress, ctx.handle, spec.sparsities[-1])
    write_json(progress, "views", ctx.views)
    progress.update(1.0, "done")
