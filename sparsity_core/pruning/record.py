"""What every pruning run shares, one-shot or recovery: the model on its device, and one record per target.

    handle, evaluator = open_model(spec, ctx)         # on the GPU when there is one
    recorder = Recorder(spec, ctx, handle, evaluator)
    recorder.record(0.5, stage, masks)                # measure, evaluate, store masks@0.5 / pruned@0.5
    recorder.finish()                                 # the page's views

`record` measures the sparsity really reached (overall and per layer, counting removed units as
zeros), the size in each storage format and the whole model's parameter count (`model_params`), evaluates the model, adds the
views (weight histogram, a mask crop, a generation for causal LMs) and stores what `load_pruned`
rebuilds (artifacts.py); at the highest target it also saves the whole model.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from sparsity_core.jobs.context import RunContext, Stage, target_tag
from sparsity_core.pruning.artifacts import save_model, save_target, write_json
from sparsity_core.pruning.base import weight_2d
from sparsity_core.pruning.evaluate import Evaluator, make_evaluator
from sparsity_core.pruning.masks import measured_sparsity
from sparsity_core.pruning.size import size_report
from sparsity_core.pruning.structured import Removal
from sparsity_core.pruning.views import PROMPT, generate, histogram, histogram_edges, mask_crop
from sparsity_core.specs import PruneSpec
from sparsity_core.zoo import ModelHandle, load_model, prunable_linears
from sparsity_core.zoo.devices import resolve_device


def open_model(spec: PruneSpec, ctx: RunContext) -> tuple[ModelHandle, Evaluator]:
    """The dense model on the run's device and its evaluation, both written into the run's info."""
    ctx.update(0.0, f"loading {spec.model}")
    handle = load_model(spec.model, device=resolve_device("auto"))
    evaluator = make_evaluator(handle, spec.seed, spec.eval_samples)
    linears = prunable_linears(handle)
    ctx.info(evaluation=evaluator.describe(), params=handle.num_params(), device=str(handle.device),
             prunable_params=sum(m.weight.numel() for m in linears.values()), prunable_layers=len(linears))
    return handle, evaluator


def restore_dense(handle: ModelHandle, dense: dict[str, Tensor]) -> None:
    """Write a saved copy of (part of) the dense state dict back into the model."""
    handle.model.load_state_dict(dense, strict=False)


class Recorder:
    """Measures, evaluates and stores each target of one run, whatever path pruned the model.

    `reference` is the dense state dict of a run that changes more than the prunable weights
    (training, removed units): what differs from it is stored with the target."""

    def __init__(self, spec: PruneSpec, ctx: RunContext, handle: ModelHandle, evaluator: Evaluator,
                 reference: Optional[dict[str, Tensor]] = None):
        self.spec, self.ctx, self.handle, self.evaluator, self.reference = spec, ctx, handle, evaluator, reference
        dense = {n: weight_2d(m).detach() for n, m in prunable_linears(handle).items()}
        self.dense_numel = {n: w.numel() for n, w in dense.items()}
        self.edges = histogram_edges(dense, spec.seed)
        self.views = {"histogram": {"edges": self.edges.tolist(), "dense": histogram(dense, self.edges, spec.seed)},
                      "mask_layer": next(iter(dense)), "masks": {}, "pruned": {}}
        if handle.task == "causal_lm":
            self.views["generation"] = {"prompt": PROMPT, "dense": generate(handle), "pruned": {}}

    def record(self, target: float, stage: Stage, masks: Optional[dict[str, Tensor]] = None,
               removal: Optional[Removal] = None) -> None:
        """Everything one target reports; `masks` default to the nonzeros of the weights."""
        ctx, linears, tag = self.ctx, prunable_linears(self.handle), target_tag(target)
        weights = {n: weight_2d(m).detach() for n, m in linears.items()}
        # Step 1: the sparsity really reached, overall and per layer, and what the model weighs
        overall, per_layer = measured_sparsity(weights, self.dense_numel)
        ctx.metric("sparsity", overall, x=target)
        for name, value in per_layer.items():
            ctx.metric("layer_sparsity", value, x=target, series=name)
        if removal is not None:
            ctx.metric("unit_sparsity", removal.unit_sparsity, x=target)
        ctx.metric("model_params", self.handle.num_params(), x=target)  # "params" is the pruned layers (size)
        for key, value in size_report(weights).items():
            ctx.metric(key, value, x=target)
        # Step 2: quality
        stage(0.85, f"target {target:.0%}: evaluating")
        for key, value in self.evaluator(self.handle).items():
            ctx.metric(key, value, x=target)
        # Step 3: views for the page, and what loads back
        self.views["pruned"][tag] = histogram(weights, self.edges, self.spec.seed)
        self.views["masks"][tag] = mask_crop(weights[self.views["mask_layer"]] != 0)
        if "generation" in self.views:
            self.views["generation"]["pruned"][tag] = generate(self.handle)
        if masks is None:
            masks = {n: m.weight.detach() != 0 for n, m in linears.items()}
        save_target(ctx, target, linears, masks, self._changed(linears), removal, self.spec.pattern)
        if target == self.spec.sparsities[-1]:
            save_model(ctx, self.handle, target, removal, self.spec.pattern)

    def _changed(self, linears) -> dict[str, Tensor]:
        """State entries other than the prunable weights that differ from the dense reference."""
        if self.reference is None:
            return {}
        ref, pruned = self.reference, {f"{n}.weight" for n in linears}
        return {k: v for k, v in self.handle.model.state_dict().items()
                if k not in pruned and (k not in ref or ref[k].shape != v.shape or not torch.equal(ref[k], v))}

    def finish(self) -> None:
        write_json(self.ctx, "views", self.views)
