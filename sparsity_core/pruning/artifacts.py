"""A pruning run's pruned models on disk, and the loader other labs call for a `parent_run`.

    handle = load_pruned(ctx.parent(spec.parent_run), sparsity=0.5)   # the pruned weights in place

Every pruning run (one-shot, gradual, fine-tune / distill recovery, heads / neurons) stores per
target sparsity x, both safetensors:
  `masks@x`   {layer: bool mask, True = kept}, in each prunable layer's own layout;
  `pruned@x`  {layer: the kept values in row-major mask order} (SparseGPT changes them, so the
              masks alone are not enough), plus {state key: tensor} of every other weight the run
              changed (the biases, norms and head that recovery trained; nothing for one-shot);
  `plan@x`    (heads / neurons only, JSON) the units each group kept: the layers are physically
              smaller, so loading first rebuilds them with `structured.apply_plan`.
The highest target is also saved whole as `model` (`save_pretrained` layout for transformers
models, model.safetensors otherwise), so tools outside the lab can open it. Only safetensors and
JSON are read back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sparsity_core.jobs.context import ParentRun, RunContext, target_tag
from sparsity_core.pruning.structured import Removal, apply_plan
from sparsity_core.zoo import ModelHandle, load_model, prunable_linears


def save_target(ctx: RunContext, target: float, linears: dict[str, nn.Module], masks: dict[str, Tensor],
                changed: Optional[dict[str, Tensor]] = None, removal: Optional[Removal] = None,
                pattern: str = "") -> None:
    """Write `masks@x` and `pruned@x` (and `plan@x` after a structured prune) for one target."""
    tag = target_tag(target)
    values = {n: m.weight.detach()[masks[n].to(m.weight.device)].contiguous().cpu() for n, m in linears.items()}
    values.update({k: v.detach().contiguous().cpu() for k, v in (changed or {}).items()})
    for name, tensors in (("masks", {k: v.contiguous().cpu() for k, v in masks.items()}), ("pruned", values)):
        path = ctx.artifact_dir / f"{name}-s{tag}.safetensors"
        save_file(tensors, path)
        ctx.artifact(f"{name}@{tag}", path, "safetensors")
    if removal is not None:
        write_json(ctx, f"plan@{tag}", {"pattern": pattern, "kept": removal.kept}, f"plan-s{tag}")


def save_model(ctx: RunContext, handle: ModelHandle, target: float, removal: Optional[Removal] = None,
               pattern: str = "") -> None:
    """The whole pruned model as `model`: save_pretrained for transformers, else safetensors. A
    model with removed units no longer matches its config, so it is saved as a state dict plus
    the plan that rebuilds its layers."""
    folder = ctx.artifact_dir / "model"
    folder.mkdir(exist_ok=True)
    if hasattr(handle.model, "save_pretrained") and removal is None:
        handle.model.save_pretrained(folder)
        if handle.tokenizer is not None:
            handle.tokenizer.save_pretrained(folder)
    else:
        save_file({k: v.contiguous().cpu() for k, v in handle.model.state_dict().items()},
                  folder / "model.safetensors")
    if removal is not None:
        (folder / "plan.json").write_text(json.dumps({"pattern": pattern, "kept": removal.kept}))
    (folder / "sparsity.json").write_text(json.dumps({"target": target, "base_model": handle.name}))
    ctx.artifact("model", folder, "dir")


def apply_pruned(handle: ModelHandle, masks: dict[str, Tensor], values: dict[str, Tensor]) -> None:
    """Put stored kept values back into `handle`'s prunable layers (zeros elsewhere), and any other
    stored state (what recovery trained) into the model."""
    linears = prunable_linears(handle)
    missing = set(masks) - set(linears)
    if missing:
        raise ValueError(f"stored masks name layers this model lacks: {sorted(missing)[:3]}")
    state = {k: v for k, v in values.items() if k not in masks}
    unknown = set(state) - set(handle.model.state_dict())
    if unknown:
        raise ValueError(f"stored weights name parameters this model lacks: {sorted(unknown)[:3]}")
    with torch.no_grad():
        for name, mask in masks.items():
            w = linears[name].weight
            new = torch.zeros_like(w)
            new[mask.to(w.device)] = values[name].to(w.device, w.dtype)
            w.copy_(new)
    handle.model.load_state_dict(state, strict=False)


def load_pruned(parent: ParentRun, sparsity: Optional[float] = None, device: str | torch.device = "cpu"
                ) -> ModelHandle:
    """The model of pruning run `parent` at target `sparsity` (None: the highest target).

    Loads the run's base model and writes the stored pruned weights into it (after rebuilding
    smaller layers for a heads / neurons run); the handle's `meta` records the run and target."""
    if parent.kind != "prune":
        raise KeyError(f"run {parent.id} is a {parent.kind} run, not a pruning run")
    targets = parent.targets()
    if not targets:
        raise KeyError(f"run {parent.id} has no stored pruned weights (status {parent.status})")
    target = targets[-1] if sparsity is None else sparsity
    tag = target_tag(target)
    if tag not in map(target_tag, targets):
        raise KeyError(f"run {parent.id} has no target {tag}; it has {', '.join(map(target_tag, targets))}")
    handle = load_model(parent.model, device=device)
    if f"plan@{tag}" in parent.artifacts:
        plan = json.loads(parent.path(f"plan@{tag}").read_text())
        apply_plan(handle, plan["pattern"], plan["kept"])
    apply_pruned(handle, load_file(parent.path(f"masks@{tag}")), load_file(parent.path(f"pruned@{tag}")))
    handle.meta.update(pruned_run=parent.id, target_sparsity=target, method=parent.method,
                       pattern=parent.spec.get("pattern"))
    return handle


def write_json(ctx: RunContext, name: str, payload: dict, filename: Optional[str] = None) -> Path:
    path = ctx.artifact_dir / f"{filename or name}.json"
    path.write_text(json.dumps(payload))
    ctx.artifact(name, path, "json")
    return path
