"""What an explanation needs from a classifier: its last hidden features, its last Linear, its inputs.

One adapter for every kind of model the lab explains:
- an image model (`handle.image`, the digits MLP): features = `model.features(images)`,
  head = `model.head` (pictures);
- an encoder with `embed` (minilm-l6, `hf:` encoders): features = the frozen pooled sentence
  embedding, head = a softmax layer trained on it (cached, see `cache.py`);
- an `hf:` sequence classifier: features = the input of its last Linear (captured by a hook),
  head = that Linear.
A pruning `parent_run` is applied to the body before features are taken; the head stays dense
(pruning keeps heads dense), so dense and pruned explanations are of the same classifier head.

    clf = build_classifier(handle, head)            # head: nn.Linear, or None for a trained one
    feats = clf.featurize(texts_or_images)           # (n, d) float32, on the CPU
    logits = clf.head_logits(feats)                  # the head on the model's device, CPU out

The body and head run on the model's device (a GPU when there is one); features and everything
computed from them (the representer fit, influence) stay on the CPU in float64 / float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from sparsity_core.jobs.context import ParentRun
from sparsity_core.pruning.artifacts import load_pruned
from sparsity_core.zoo import ModelHandle, load_model
from sparsity_core.zoo.minilm import MAX_LEN

BATCH = 64  # texts per encoder call: big enough to amortise, small enough for 2 shared cores


@dataclass
class Classifier:
    """A model seen as body -> features -> head. `modality` is "image" or "text"."""

    handle: ModelHandle
    modality: str
    encode: Callable[..., Tensor]  # image: (n, 8, 8) -> (n, d); text: (input_ids, attention_mask) -> (n, d)
    head: Optional[nn.Linear] = None

    @property
    def device(self) -> torch.device:
        return self.handle.device

    @torch.no_grad()
    def featurize(self, inputs: Any) -> Tensor:
        """(n, d) float32 CPU features for images (n, 8, 8) or a list of texts, batched by length."""
        if self.modality == "image":
            images = torch.as_tensor(np.asarray(inputs, dtype=np.float32)).to(self.device)
            return self.encode(images).float().cpu()
        order = np.argsort([len(t) for t in inputs], kind="stable")  # similar lengths pad less
        out: list[Tensor] = []
        for i in range(0, len(order), BATCH):
            ids, mask = self.tokenize([inputs[j] for j in order[i:i + BATCH]])
            out.append(self.encode(ids, mask).float().cpu())
        feats = torch.cat(out) if out else torch.empty(0)
        return feats[torch.from_numpy(np.argsort(order, kind="stable"))] if len(order) else feats

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        enc = self.handle.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_LEN,
                                    return_tensors="pt").to(self.handle.device)
        return enc["input_ids"], enc["attention_mask"]

    def logits(self, *inputs: Tensor) -> Tensor:
        """The whole classifier (body + head) on the model's device: what captum differentiates."""
        return self.head(self.encode(*inputs))

    @torch.no_grad()
    def head_logits(self, features: Tensor) -> Tensor:
        """The head's logits for CPU features (n, d), computed where the head is, returned on the CPU."""
        return self.head(features.to(self.head.weight.device, self.head.weight.dtype)).cpu()


def final_linear(model: nn.Module, n_classes: int) -> tuple[str, nn.Linear]:
    """The last nn.Linear with `n_classes` outputs: `classifier`, `score`, `classifier.out_proj`."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not found:
        raise ValueError(f"no Linear layer with {n_classes} outputs: not a classification head")
    return found[-1]


def _mean_pool_encoder(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """minilm-l6's sentence embedding (mean over real tokens, unit norm), differentiable."""

    def encode(ids: Tensor, mask: Tensor) -> Tensor:
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)

    return encode


def _head_input_encoder(model: nn.Module, head: nn.Linear) -> Callable[[Tensor, Tensor], Tensor]:
    """An hf sequence classifier: run it and keep what flows into its last Linear."""

    def encode(ids: Tensor, mask: Tensor) -> Tensor:
        seen: list[Tensor] = []
        hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            model(input_ids=ids, attention_mask=mask)
        finally:
            hook.remove()
        return seen[-1].reshape(len(ids), -1)

    return encode


def _standardized(encode: Callable[..., Tensor], mean: Tensor, std: Tensor) -> Callable[..., Tensor]:
    def standardized(*inputs: Tensor) -> Tensor:
        return (encode(*inputs) - mean.to(inputs[0].device)) / std.to(inputs[0].device)

    return standardized


def build_classifier(handle: ModelHandle, head: Optional[nn.Linear] = None,
                     scale: Optional[tuple[Tensor, Tensor]] = None) -> Classifier:
    """Wrap a loaded model. Encoders need the `head` trained on their features and that head's
    feature `scale` (mean, std): the head's input, its last hidden layer, is the standardised
    embedding (see `prepare._encoder_head` for why)."""
    model = handle.model
    if handle.image:
        return Classifier(handle, "image", model.features, model.head)
    if handle.task == "classifier" and handle.tokenizer is not None:
        _, last = final_linear(model, len(handle.classes))
        return Classifier(handle, "text", _head_input_encoder(model, last), last)
    if handle.task == "encoder" and handle.tokenizer is not None:
        encode = _mean_pool_encoder(model)
        return Classifier(handle, "text", _standardized(encode, *scale) if scale else encode, head)
    raise ValueError(f"{handle.name} ({handle.task}) has no classification head to explain")


# ---------------------------------------------------------------- pruned models (parent_run)
def load_for_explain(model: str, parent: Optional[ParentRun] = None, sparsity: Optional[float] = None,
                     device: torch.device | str = "cpu") -> ModelHandle:
    """The model on `device`, pruned as `parent` pruned it at `sparsity` when a parent is given.

    The pruned weights come from the pruning lab's own loader, the one every lab uses."""
    if parent is None:
        return load_model(model, device=device)
    return load_pruned(parent, sparsity, device=device)
