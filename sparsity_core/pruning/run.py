"""The pruning job: load the model, prune it at each target sparsity, measure, evaluate, save.

Every sparsity starts again from the dense weights, so points on the curve are independent
one-shot prunes (the gradual schedule is a separate path).
"""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from sparsity_core.progress import Progress
from sparsity_core.pruning import METHODS
from sparsity_core.pruning.evaluate import make_evaluator
from sparsity_core.pruning.masks import measured_sparsity
from sparsity_core.specs import PruneSpec
from sparsity_core.zoo import load_model, prunable_linears


def run_prune(spec: PruneSpec, progress: Progress) -> None:
    torch.manual_seed(spec.seed)
    # Step 1: model, the layers to prune and a copy of their dense weights
    progress.update(0.0, f"loading {spec.model}")
    handle = load_model(spec.model)
    linears = prunable_linears(handle)
    dense = {n: m.weight.detach().clone() for n, m in linears.items()}
    # Step 2: the evaluation, fixed for the whole run and written into it
    evaluator = make_evaluator(handle, spec.seed, spec.eval_samples)
    progress.info(evaluation=evaluator.describe(), params=handle.num_params(),
                  prunable_params=sum(w.numel() for w in dense.values()), prunable_layers=len(dense))
    method = METHODS[spec.method](seed=spec.seed)
    n = len(spec.sparsities)
    for i, target in enumerate(spec.sparsities):
        progress.update(i / n, f"pruning to {target:.0%} ({i + 1}/{n})")
        # Step 3: restore dense weights, prune, and measure what was really zeroed
        with torch.no_grad():
            for name, module in linears.items():
                module.weight.copy_(dense[name])
        masks = method.prune(linears, target, scope=spec.scope, pattern=spec.pattern)
        overall, per_layer = measured_sparsity({n_: m.weight for n_, m in linears.items()})
        progress.metric("sparsity", overall, x=target)
        for name, value in per_layer.items():
            progress.metric("layer_sparsity", value, x=target, series=name)
        # Step 4: evaluate and keep the masks
        for key, value in evaluator(handle).items():
            progress.metric(key, value, x=target)
        path = progress.artifact_dir / f"masks-s{target:.4f}.safetensors"
        save_file({k: v.contiguous().cpu() for k, v in masks.items()}, path)
        progress.artifact(f"masks@{target:g}", path, "safetensors")
    progress.update(1.0, "done")
