"""The model registry and the handle every lab receives."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
from torch import nn

Task = Literal["classifier", "encoder", "causal_lm"]


@dataclass
class ModelHandle:
    """A loaded model and what a lab needs to drive it.

    task: `classifier` (logits over `classes`), `encoder` (sentence embeddings via `embed`),
    `causal_lm` (next-token logits; `tokenizer` set). `family` names the adapter (mlp, bert, llama,
    gpt2, opt) that finds blocks and linears.
    """

    name: str
    model: nn.Module
    task: Task
    family: str
    tokenizer: Any = None
    classes: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    # model-specific helpers set by the loader, e.g. `embed(texts) -> Tensor` for encoders
    embed: Optional[Callable[..., torch.Tensor]] = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@dataclass(frozen=True)
class ModelInfo:
    name: str
    task: Task
    description: str
    loader: str  # "module:function", imported on first load so the registry stays light


MODELS: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> None:
    if info.name in MODELS:
        raise ValueError(f"model {info.name!r} is registered already")
    MODELS[info.name] = info


register_model(ModelInfo("digits-mlp", "classifier",
                         "MLP 64-256-128-10 trained on scikit-learn's 8x8 digits (seconds, cached)",
                         "sparsity_core.zoo.digits_mlp:load"))
register_model(ModelInfo("minilm-l6", "encoder",
                         "all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7M params",
                         "sparsity_core.zoo.minilm:load"))
register_model(ModelInfo("minilm-l6-rt", "classifier",
                         "minilm-l6 fine-tuned on Rotten Tomatoes fresh/rotten (the distillation teacher; cached)",
                         "sparsity_core.zoo.classifier:load"))
register_model(ModelInfo("smollm2-135m", "causal_lm",
                         "SmolLM2-135M-Instruct: Llama-architecture causal LM, 30 layers, 134.5M params",
                         "sparsity_core.zoo.smollm2:load"))


def model_names() -> list[str]:
    return list(MODELS)


def check_model_name(name: str) -> str:
    """Validate a model name without loading it. Raises ValueError with a message for a person."""
    name = name.strip()
    if name in MODELS:
        return name
    if name.startswith("hf:"):
        ref = name[3:].strip()
        if not ref:
            raise ValueError("hf: needs a hub id or a local path, e.g. hf:./my-checkpoint")
        looks_local = ref.startswith((".", "/", "~")) or Path(ref).expanduser().exists()
        if looks_local:
            path = Path(ref).expanduser()
            if not path.is_dir():
                raise ValueError(f"hf path {ref!r} does not exist or is not a directory")
            if not (path / "config.json").is_file():
                raise ValueError(f"hf path {ref!r} has no config.json: not a transformers checkpoint")
        elif ref.count("/") > 1 or " " in ref:
            raise ValueError(f"{ref!r} is neither a local directory nor a hub id like 'org/model'")
        return f"hf:{ref}"
    known = ", ".join(MODELS)
    raise ValueError(f"unknown model {name!r}: pick one of {known}, or hf:<hub-id-or-path>")


def load_skeleton(name: str) -> ModelHandle:
    """The model's structure with weights on the meta device: shapes and tokenizer for checks
    made before a run is queued, without reading (or training) any weights."""
    name = check_model_name(name)
    if name.startswith("hf:"):
        from sparsity_core.zoo.hf import skeleton_hf

        return skeleton_hf(name[3:])
    module, _ = MODELS[name].loader.split(":")
    return importlib.import_module(module).skeleton()


def load_model(name: str, device: str | torch.device = "cpu", **kwargs: Any) -> ModelHandle:
    """Load a registered model or an `hf:` checkpoint, in eval mode on `device`."""
    name = check_model_name(name)
    if name.startswith("hf:"):
        from sparsity_core.zoo.hf import load_hf

        handle = load_hf(name[3:], **kwargs)
    else:
        module, fn = MODELS[name].loader.split(":")
        handle = getattr(importlib.import_module(module), fn)(**kwargs)
    handle.model.to(device).eval()
    return handle
