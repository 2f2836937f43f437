"""A pruning run's pruned models on disk, and the loader other labs call for `parent_run`.

    handle = load_pruned(run_id, sparsity=0.5)     # ModelHandle with the pruned weights in place

Per target sparsity the run stores `masks@<x>` (bool, True = kept) and `pruned@<x>` (the kept
values in row-major mask order; SparseGPT changes them, so the masks alone are not enough), both
safetensors in each layer's own layout. The highest target is also saved whole as `model`
(`save_pretrained` layout for transformers models, model.safetensors otherwise), so tools outside
the lab can open it. Only safetensors and JSON are read back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sparsity_core.progress import Progress
from sparsity_core.zoo import ModelHandle, load_model, prunable_linears


def target_tag(target: float) -> str:
    return f"{target:g}"


def save_target(progress: Progress, target: float, linears: dict[str, nn.Module],
                masks: dict[str, Tensor]) -> None:
    """Write `masks@x` and `pruned@x` for one target sparsity."""
    tag = target_tag(target)
    values = {n: m.weight.detach()[masks[n]].contiguous().cpu() for n, m in linears.items()}
    for name, tensors in (("masks", {k: v.contiguous().cpu() for k, v in masks.items()}), ("pruned", values)):
        path = progress.artifact_dir / f"{name}-s{tag}.safetensors"
        save_file(tensors, path)
        progress.artifact(f"{name}@{tag}", path, "safetensors")


def save_model(progress: Progress, handle: ModelHandle, target: float) -> None:
    """The whole pruned model as `model`: save_pretrained for transformers, else safetensors."""
    folder = progress.artifact_dir / "model"
    folder.mkdir(exist_ok=True)
    if hasattr(handle.model, "save_pretrained"):
        handle.model.save_pretrained(folder)
        if handle.tokenizer is not None:
            handle.tokenizer.save_pretrained(folder)
    else:
        save_file({k: v.contiguous().cpu() for k, v in handle.model.state_dict().items()},
                  folder / "model.safetensors")
    (folder / "sparsity.json").write_text(json.dumps({"target": target, "base_model": handle.name}))
    progress.artifact("model", folder, "dir")


def apply_pruned(handle: ModelHandle, masks: dict[str, Tensor], values: dict[str, Tensor]) -> None:
    """Put stored kept values back into `handle`'s prunable layers (zeros elsewhere)."""
    linears = prunable_linears(handle)
    missing = set(masks) - set(linears)
    if missing:
        raise ValueError(f"stored masks name layers this model lacks: {sorted(missing)[:3]}")
    with torch.no_grad():
        for name, mask in masks.items():
            w = linears[name].weight
            new = torch.zeros_like(w)
            new[mask.to(w.device)] = values[name].to(w.device, w.dtype)
            w.copy_(new)


def _targets(run_id: int, prefix: str) -> list[float]:
    from db import repo

    return sorted(float(a.name.split("@", 1)[1]) for a in repo.list_artifacts(run_id)
                  if a.name.startswith(prefix + "@"))


def stored_targets(run_id: int) -> list[float]:
    """Targets whose pruned weights were stored: what `load_pruned` can rebuild."""
    return _targets(run_id, "pruned")


def mask_targets(run_id: int) -> list[float]:
    """Targets with a stored mask (every target, recovery runs included)."""
    return _targets(run_id, "masks")


def load_pruned(run_id: int, sparsity: Optional[float] = None, device: str | torch.device = "cpu"
                ) -> ModelHandle:
    """The model of pruning run `run_id` at target `sparsity` (None: the highest target).

    Loads the run's base model and writes the stored pruned weights into it; the handle's
    `meta` records the run and target."""
    from db import repo

    run = repo.get_run(run_id)
    if run is None or run.kind != "prune":
        raise KeyError(f"run {run_id} is not a pruning run")
    targets = stored_targets(run_id)
    if not targets:
        raise KeyError(f"run {run_id} has no stored pruned weights (status {run.status})")
    target = max(targets) if sparsity is None else sparsity
    if target_tag(target) not in {target_tag(t) for t in targets}:
        raise KeyError(f"run {run_id} has no target {target:g}; it has {', '.join(map(target_tag, targets))}")
    handle = load_model(run.model, device=device)
    tag = target_tag(target)
    apply_pruned(handle, load_file(repo.artifact_path(run_id, f"masks@{tag}")),
                 load_file(repo.artifact_path(run_id, f"pruned@{tag}")))
    handle.meta.update(pruned_run=run_id, target_sparsity=target, method=run.method,
                       pattern=run.spec.get("pattern"))
    return handle


def write_json(progress: Progress, name: str, payload: dict) -> Path:
    path = progress.artifact_dir / f"{name}.json"
    path.write_text(json.dumps(payload))
    progress.artifact(name, path, "json")
    return path
