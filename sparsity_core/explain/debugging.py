"""The paper's data-debugging experiment (Yeh et al. 2018, section 4.2): find flipped labels.

Flip the labels of a fraction of the training set, train the last layer on the noisy labels,
then inspect training points in the order a method ranks them and count how many flipped ones
were found. Orders compared: representer |alpha_i,y_i| (the alpha of the given, noisy label),
TracInCP self-influence, and random. A good order finds most flips after inspecting little data.

    curves, areas = mislabel_curves(features, labels, n_classes, fraction=0.1, lam=0.003, seed=0, folder=tmp)
    curves["representer"]  # fraction of flips found after inspecting GRID[j] of the data
    curves, areas, cached = cached_mislabel_curves(features, labels, n_classes, 0.1, 0.003, 0, prep.folder)

Nothing in it depends on the point being explained, so a run computes it once per setup (features
and labels, fraction, lambda, seed) and every later run of that setup reads it back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sparsity_core.explain.cache import (
    HEAD_BATCH,
    HEAD_EPOCHS,
    HEAD_LR,
    N_CHECKPOINTS,
    fingerprint,
    keyed_path,
    load_keyed,
    save_atomic,
    train_head,
)
from sparsity_core.explain.captum_methods import self_influence
from sparsity_core.explain.representer import fit_representer, stack_head

GRID = np.linspace(0.0, 1.0, 41)  # fractions of the training set inspected: every 2.5%


def flip_labels(labels: np.ndarray, n_classes: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, indices flipped): each chosen label moves to a different random class."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), size=int(round(fraction * len(labels))), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, n_classes, size=len(flipped))) % n_classes
    return noisy, np.sort(flipped)


def found_curve(scores: np.ndarray, flipped: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Fraction of `flipped` among the top `grid[j]` of points ranked by `scores` (high first)."""
    order = np.argsort(-scores, kind="stable")
    is_flip = np.zeros(len(scores), dtype=bool)
    is_flip[flipped] = True
    hits = np.concatenate([[0], np.cumsum(is_flip[order])])
    return hits[np.round(grid * len(scores)).astype(int)] / max(1, len(flipped))


def area(curve: np.ndarray, grid: np.ndarray = GRID) -> float:
    """Area under a found-vs-inspected curve (random order gives about 0.5, a perfect one ~1)."""
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(grid)))


METHODS = ("representer", "tracin", "random")


def mislabel_curves(features: Tensor, labels: np.ndarray, n_classes: int, fraction: float, lam: float,
                    seed: int, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Curves and their areas for representer, TracInCP self-influence and random order
    (the noisy head's checkpoints are written to `folder`)."""
    # Step 1: noisy labels and a last layer trained on them (checkpoints for TracIn)
    noisy, flipped = flip_labels(labels, n_classes, fraction, seed)
    y = torch.from_numpy(noisy)
    head, ckpts = train_head(features, y, n_classes, seed, checkpoint_dir=folder)
    # Step 2: representer alpha against the noisy one-hot labels (the paper's setting)
    onehot = torch.nn.functional.one_hot(y, n_classes).double()
    fit = fit_representer(features, onehot, stack_head(head.weight.detach(), head.bias.detach()), lam)
    scores = {
        "representer": fit.alpha[torch.arange(len(y)), y].abs().numpy(),
        "tracin": self_influence(features, y, ckpts, n_classes).numpy(),
        "random": np.random.default_rng(seed + 1).random(len(y)),
    }
    curves = {k: found_curve(v, flipped) for k, v in scores.items()}
    return curves, {k: area(c) for k, c in curves.items()}


def experiment_key(features: Tensor, labels: np.ndarray, n_classes: int, fraction: float, lam: float,
                   seed: int) -> dict:
    """Every input of `mislabel_curves`, the head-training constants and the grid included."""
    return {"experiment": "flipped-labels", "data": fingerprint(features, torch.from_numpy(labels)),
            "classes": n_classes, "fraction": fraction, "lambda": lam, "seed": seed,
            "head": [HEAD_EPOCHS, HEAD_LR, HEAD_BATCH, N_CHECKPOINTS], "grid": len(GRID)}


def cached_mislabel_curves(features: Tensor, labels: np.ndarray, n_classes: int, fraction: float, lam: float,
                           seed: int, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, float], bool]:
    """`mislabel_curves` read from `folder` when this exact experiment ran before, else run and stored
    there; the last item says which."""
    key = experiment_key(features, labels, n_classes, fraction, lam, seed)
    path = keyed_path(folder, "mislabel", key)
    found = load_keyed(path, key)
    if found is not None:
        curves = {m: found[0][m].numpy() for m in METHODS}
        return curves, {m: area(c) for m, c in curves.items()}, True
    # the noisy head's checkpoints are only needed for its self-influence: a scratch folder
    with tempfile.TemporaryDirectory(prefix="mislabel-", dir=folder) as scratch:
        curves, areas = mislabel_curves(features, labels, n_classes, fraction, lam, seed, Path(scratch))
    save_atomic({m: torch.from_numpy(c) for m, c in curves.items()}, path, {"key": key})
    return curves, areas, False
