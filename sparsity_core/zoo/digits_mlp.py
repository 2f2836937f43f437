"""digits-mlp: the teaching model. A 64-256-128-10 MLP trained on scikit-learn's 8x8 digits.

Trained once (a few seconds on a CPU), then cached under SPARSITY_HOME as safetensors.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sparsity_core.data import digits
from sparsity_core.paths import cache_dir
from sparsity_core.zoo.registry import ModelHandle, register_loader

HIDDEN = (256, 128)
TRAIN_SEED = 0  # the cached model is one fixed model, whatever the run's seed
EPOCHS = 60


class DigitsMLP(nn.Module):
    def __init__(self, hidden: tuple[int, ...] = HIDDEN, n_classes: int = 10):
        super().__init__()
        dims = (64, *hidden)
        self.body = nn.Sequential(*[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())])
        self.head = nn.Linear(dims[-1], n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer (what representer points decompose over)."""
        return self.body(x.flatten(1) / 16.0)  # pixels are 0..16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train(seed: int = TRAIN_SEED) -> DigitsMLP:
    torch.manual_seed(seed)
    data = digits("train", seed=0)
    x, y = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def _handle(model: DigitsMLP) -> ModelHandle:
    return ModelHandle("digits-mlp", model, "classifier", "mlp", classes=tuple(str(d) for d in range(10)),
                       meta={"dataset": "digits", "input": "8x8 image, pixels 0..16"})


def skeleton() -> ModelHandle:
    with torch.device("meta"):
        return _handle(DigitsMLP())


@register_loader("digits-mlp", skeleton=skeleton)
def load() -> ModelHandle:
    folder = cache_dir("models", "digits-mlp")
    weights = folder / "model.safetensors"
    model = DigitsMLP()
    if weights.exists():
        model.load_state_dict(load_file(weights))
    else:
        model = train()
        tmp = weights.with_suffix(f".tmp{os.getpid()}")  # one file per process: two nodes training at once
        save_file(model.state_dict(), tmp)  # (same seed, same weights) never write into one file
        tmp.replace(weights)  # atomic: a reader sees the old file or the whole new one
        (folder / "config.json").write_text(json.dumps({"hidden": HIDDEN, "epochs": EPOCHS, "seed": TRAIN_SEED}))
    return _handle(model)
