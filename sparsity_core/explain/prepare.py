"""Everything an explanation run starts from: model, data splits, features, head, checkpoints.

    prep = prepare("digits-mlp", "digits", seed=0, train_limit=None)       # the dense model
    prep = prepare("digits-mlp", "digits", parent=run, sparsity=0.8, device=device)   # pruned by `run`
    prep.train_features, prep.train_logits, prep.clf.head, prep.checkpoints
    prep.cached        # {"features": True, "checkpoints": True}: what came from the cache

Features and logits of both splits, an encoder's trained head and the head-training checkpoints
(for TracIn) are cached (see `cache.py`); the first run of a setup pays for them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from sparsity_core.data import Dataset
from sparsity_core.explain.cache import cache_key, load_head, save_atomic, train_head
from sparsity_core.explain.models import Classifier, build_classifier, load_for_explain
from sparsity_core.explain.splits import splits
from sparsity_core.jobs.context import ParentRun


@dataclass
class Prepared:
    clf: Classifier
    train: Dataset
    test: Dataset
    train_features: Tensor  # (n, d) float32
    test_features: Tensor
    train_logits: Tensor  # (n, c) the model's own logits
    test_logits: Tensor
    checkpoints: list[Path]  # head checkpoints along its training, oldest first
    folder: Path  # the cache folder of this setup
    cached: dict[str, bool]  # which of the features and checkpoints were read from `folder`

    def inputs(self, split: str):
        data = self.train if split == "train" else self.test
        return data.images if self.clf.modality == "image" else data.texts


def prepare(model: str, dataset: str, seed: int = 0, train_limit: Optional[int] = None, *,
            parent: Optional[ParentRun] = None, sparsity: Optional[float] = None,
            device: torch.device | str = "cpu", report: Callable[[float, str], None] = lambda f, m: None) -> Prepared:
    """Everything to explain `model` on `dataset`, pruned as `parent` pruned it at `sparsity` when given."""
    # Step 1: data and the (possibly pruned) model
    train, test = splits(dataset, seed, train_limit)
    pruned = (parent.id, sparsity) if parent else None
    folder = cache_key(model, dataset, seed, len(train), pruned)
    report(0.0, f"loading {model}" + (f" pruned by run {parent.id} at sparsity {sparsity:g}" if parent else ""))
    handle = load_for_explain(model, parent, sparsity, device)
    if handle.classes and len(handle.classes) != len(train.classes):
        raise ValueError(f"{model} predicts {len(handle.classes)} classes ({', '.join(handle.classes)}) but "
                         f"{dataset} has {len(train.classes)} ({', '.join(train.classes)})")
    # Step 2: features of both splits (cached)
    feats_path = folder / "features.safetensors"
    # looked at before anything is written: an encoder's head training writes its checkpoints below
    cached = {"features": feats_path.exists(), "checkpoints": any(folder.glob("ckpt-*.safetensors"))}
    if cached["features"]:
        feats = load_file(feats_path)
    else:
        clf = build_classifier(handle, head=None)
        report(0.1, f"computing the features of {len(train)} training and {len(test)} test points")
        tr = clf.featurize(train.images if clf.modality == "image" else train.texts)
        report(0.6, "computing the features of the test split")
        te = clf.featurize(test.images if clf.modality == "image" else test.texts)
        feats = {"train": tr, "test": te}
        save_atomic(feats, feats_path, {"model": model, "dataset": dataset, "parent": pruned})
    # Step 3: the head: the model's own, or one trained on the dense features (shared with pruned)
    if handle.task == "encoder":
        head, mean, std = _encoder_head(model, dataset, seed, train, feats["train"], pruned is not None, handle.device)
        clf = build_classifier(handle, head.to(handle.device), (mean, std))
        feats = {k: (v - mean) / std for k, v in feats.items()}
    else:
        clf = build_classifier(handle)
    ckpts = _checkpoints(folder, feats["train"], train, seed)
    report(0.9, "the head's outputs on both splits")
    logits = {k: clf.head_logits(feats[k]).float() for k in ("train", "test")}
    return Prepared(clf, train, test, feats["train"], feats["test"], logits["train"], logits["test"], ckpts, folder,
                    cached)


def _encoder_head(model: str, dataset: str, seed: int, train: Dataset, features: Tensor, pruned: bool,
                  device: torch.device) -> tuple[nn.Linear, Tensor, Tensor]:
    """(head, mean, std): a softmax layer on the *dense* encoder's standardised embeddings; a
    pruned encoder keeps both. Why standardise: unit-norm embeddings (per-dimension scale ~0.05)
    need a large last layer, and the paper's lambda = 0.003 then shrinks it so much that the
    decomposition rebuilds Rotten Tomatoes outputs with r = 0.88 only; on standardised
    embeddings (the usual probe preprocessing) r is 0.999 at the same lambda."""
    dense_folder = cache_key(model, dataset, seed, len(train), None)
    path = dense_folder / "head-standardised.safetensors"
    if not path.exists():
        if pruned:  # the dense features are needed first
            features = load_file(dense_folder / "features.safetensors")["train"] \
                if (dense_folder / "features.safetensors").exists() \
                else prepare(model, dataset, seed, len(train), device=device).train_features
        mean, std = features.mean(0), features.std(0).clamp(min=1e-6)
        head, _ = train_head((features - mean) / std, torch.from_numpy(train.labels), len(train.classes), seed,
                             checkpoint_dir=dense_folder)
        save_atomic({"weight": head.weight, "bias": head.bias, "mean": mean, "std": std}, path)
    state = load_file(path)
    return load_head(path), state["mean"], state["std"]


def _checkpoints(folder: Path, features: Tensor, train: Dataset, seed: int) -> list[Path]:
    """Head checkpoints for TracIn: for an encoder, those of its own head's training (dense
    setup); for a model that came with its head, a last-layer retraining on frozen features."""
    found = sorted(folder.glob("ckpt-*.safetensors"))
    if not found:
        _, found = train_head(features, torch.from_numpy(train.labels), len(train.classes), seed,
                              checkpoint_dir=folder)
    return found
