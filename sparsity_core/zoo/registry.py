"""The model registry and the handle every lab receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from sparsity_core.catalog.models import MODELS, ModelEntry, Task, check_model_name
from sparsity_core.specs import SpecError


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

    @property
    def entry(self) -> Optional[ModelEntry]:
        """The catalog entry of a bundled model (None for an `hf:` checkpoint)."""
        return MODELS.get(self.name)

    @property
    def image(self) -> bool:
        """Reads 8x8 images rather than text (the digits classifier)."""
        return self.entry is not None and self.entry.image

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@dataclass(frozen=True)
class Loader:
    """A bundled model's implementation: `load()` builds it with weights, `skeleton()` on the meta device."""

    load: Callable[..., ModelHandle]
    skeleton: Optional[Callable[[], ModelHandle]] = None


LOADERS: dict[str, Loader] = {}


def register_loader(name: str, skeleton: Optional[Callable[[], ModelHandle]] = None):
    """Decorator on a bundled model's `load`: the implementation of catalog entry `name`."""
    def wrap(load: Callable[..., ModelHandle]) -> Callable[..., ModelHandle]:
        if name not in MODELS:
            raise ValueError(f"model {name!r} is not in the catalog (sparsity_core/catalog/models.py)")
        if name in LOADERS:
            raise ValueError(f"model {name!r} has a loader already")
        LOADERS[name] = Loader(load, skeleton)
        return load
    return wrap


def load_skeleton(name: str) -> ModelHandle:
    """The model's structure with weights on the meta device: shapes and tokenizer for checks
    made before a run is queued, without reading (or training) any weights. A name or an hf:
    checkpoint that cannot be read is a SpecError on `model` (one line, for the page and the CLI)."""
    try:
        name = check_model_name(name)
        if name.startswith("hf:"):
            from sparsity_core.zoo.hf import skeleton_hf

            return skeleton_hf(name[3:])
    except SpecError:
        raise
    except ValueError as exc:
        raise SpecError({"model": str(exc)}) from None
    loader = LOADERS[name]
    if loader.skeleton is None:
        raise ValueError(f"{name} has no skeleton; its catalog entry carries its shapes")
    return loader.skeleton()


def load_model(name: str, device: str | torch.device = "cpu", **kwargs: Any) -> ModelHandle:
    """Load a registered model or an `hf:` checkpoint, in eval mode on `device`. ValueError (one
    line) for a name refused here or a checkpoint that cannot be read."""
    name = check_model_name(name)
    if name.startswith("hf:"):
        from sparsity_core.zoo.hf import load_hf

        handle = load_hf(name[3:], **kwargs)
    else:
        handle = LOADERS[name].load(**kwargs)
    handle.model.to(device).eval()
    return handle
