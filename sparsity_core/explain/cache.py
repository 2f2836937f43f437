"""What is computed once and reused: features, trained heads and their checkpoints, representer fits,
the flipped-label experiment.

Everything is safetensors under `paths.cache_dir("explain", key)`, keyed by model + dataset + seed +
training rows + parent pruning run, so a second explanation of the same setup (another test
point, a typed sentence, a drawn digit) is a load and one matrix-vector product. What else depends
on parameters (the flipped-label experiment: lambda, flip fraction, seed) sits beside them under
`keyed_path`: the file name hashes every input, including a fingerprint of the features and
labels it was computed from, and the key is stored in the file and compared on load, so a change
of any input misses. Writes are atomic (a per-process tmp file + rename), so two workers filling
the same key never leave half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sparsity_core.explain.representer import RepresenterFit
from sparsity_core.paths import cache_dir

HEAD_EPOCHS = 40  # softmax regression on fixed features: loss flat well before 40 full passes
HEAD_LR = 0.002  # Adam on standardised (text) or ReLU (digits) features; 0.05 overshoots on text
HEAD_BATCH = 256
N_CHECKPOINTS = 5  # TracIn sums over checkpoints; 5 evenly spaced ones is what its paper uses


def cache_key(model: str, dataset: str, seed: int, train_rows: int, parent: Optional[tuple[int, float]]) -> Path:
    tag = f"{model}-{dataset}-s{seed}-n{train_rows}" + (f"-run{parent[0]}@{parent[1]:g}" if parent else "")
    return cache_dir("explain", re.sub(r"[^A-Za-z0-9_.@-]+", "_", tag))


def save_atomic(tensors: dict[str, Tensor], path: Path, meta: Optional[dict] = None) -> Path:
    tmp = path.with_suffix(f".tmp{os.getpid()}")  # per process: two writers never share a half-written file
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp,
              metadata={"meta": json.dumps(meta or {})})
    tmp.replace(path)
    return path


def load_meta(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(path, "pt") as fh:
        return json.loads((fh.metadata() or {}).get("meta", "{}"))


def fingerprint(*tensors: Tensor) -> str:
    """A short content hash of tensors (dtype, shape and bytes): what a result computed from them is keyed by."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().contiguous().cpu()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def keyed_path(folder: Path, stem: str, key: dict) -> Path:
    """`folder/<stem>-<hash of key>.safetensors`: one file per distinct key (JSON-able values)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"{stem}-{digest}.safetensors"


def load_keyed(path: Path, key: dict) -> Optional[tuple[dict[str, Tensor], dict]]:
    """(tensors, meta) stored under `key` at `path`, or None when absent or written for another key."""
    if not path.exists():
        return None
    meta = load_meta(path)
    if meta.get("key") != json.loads(json.dumps(key)):  # a JSON round trip: tuples come back as lists
        return None
    return load_file(path), meta


# ---------------------------------------------------------------- heads
def train_head(features: Tensor, labels: Tensor, n_classes: int, seed: int = 0,
               checkpoint_dir: Optional[Path] = None) -> tuple[nn.Linear, list[Path]]:
    """Softmax regression on fixed features; saves N_CHECKPOINTS evenly spaced checkpoints
    ({weight, bias, lr} safetensors) for TracIn. Returns the head and the checkpoint paths."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], n_classes).double()
    opt = torch.optim.Adam(head.parameters(), lr=HEAD_LR)
    x, y = features.double(), labels.long()
    every = max(1, HEAD_EPOCHS // N_CHECKPOINTS)
    paths: list[Path] = []
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    for epoch in range(1, HEAD_EPOCHS + 1):
        for batch in torch.randperm(len(y), generator=gen).split(HEAD_BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(head(x[batch]), y[batch]).backward()
            opt.step()
        if checkpoint_dir is not None and epoch % every == 0:
            paths.append(save_atomic({"weight": head.weight, "bias": head.bias,
                                      "lr": torch.tensor([HEAD_LR], dtype=torch.float64)},
                                     Path(checkpoint_dir) / f"ckpt-{epoch:03d}.safetensors"))
    return head.float().eval(), paths


def load_head(path: Path) -> nn.Linear:
    state = load_file(path)
    head = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    head.load_state_dict({"weight": state["weight"].float(), "bias": state["bias"].float()})
    return head.eval()


def load_checkpoint_into(model: nn.Module, path: str) -> float:
    """captum's `checkpoints_load_func`: safetensors into `model.fc`, returns the learning rate."""
    state = load_file(path)
    with torch.no_grad():
        model.fc.weight.copy_(state["weight"].to(model.fc.weight.dtype))
        model.fc.bias.copy_(state["bias"].to(model.fc.bias.dtype))
    return float(state["lr"][0])


# ---------------------------------------------------------------- representer fits
def fit_path(folder: Path, lam: float) -> Path:
    return folder / f"representer-lam{lam:g}.safetensors"


def save_fit(fit: RepresenterFit, path: Path) -> Path:
    return save_atomic({"features": fit.features, "weight": fit.weight, "alpha": fit.alpha}, path,
                       {"lam": fit.lam, "grad_norm_start": fit.grad_norm_start,
                        "grad_norm_final": fit.grad_norm_final, "iterations": fit.iterations,
                        "seconds": fit.seconds})


def load_fit(path: Path) -> RepresenterFit:
    t, m = load_file(path), load_meta(path)
    return RepresenterFit(t["features"], t["weight"], t["alpha"], m["lam"], m["grad_norm_start"],
                          m["grad_norm_final"], m["iterations"], m["seconds"])
