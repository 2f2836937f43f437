"""captum's view of the same prediction: input attributions and training-data influence.

- pixels: `IntegratedGradients` from a black image; text: `LayerIntegratedGradients` on the
  word embeddings from a baseline of [PAD] tokens (special tokens kept). Both return captum's
  convergence delta: sum(attributions) - (F(x) - F(baseline)), the completeness check of IG.
- influence over the last layer on fixed features: `TracInCPFast` (checkpoints are safetensors,
  read by `cache.load_checkpoint_into`) and `SimilarityInfluence` (cosine of the features).
  With the head as the whole trainable model, TracInCPFast's last-layer gradients are exact
  TracInCP, so its self-influence is TracInCP's.

A run does not call captum's influence classes per point: they recompute the whole training side
(an autograd Jacobian per training batch and checkpoint) for every query, seconds per point. The run
uses the same scores in closed form instead, `tracin_scores` and `cosine_top_k`: with the training
side (features, the checkpoints' weights) read from the setup's cache, one point costs a few
(n x d) products. The tests check they return captum's top-k ids and scores.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from sparsity_core.explain.cache import load_checkpoint_into
from sparsity_core.explain.models import Classifier

INFLUENCE_BATCH = 1024  # training rows per captum batch: one (1024 x d) product per checkpoint


class HeadModel(nn.Module):
    """features -> (identity layer captum can read) -> fc; what the influence methods run."""

    def __init__(self, d: int, n_classes: int):
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(d, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


# ---------------------------------------------------------------- attributions
def attribute(clf: Classifier, item: Any, target: int, steps: int = 50) -> dict[str, Any]:
    """Pixel or token attributions for class `target` of one image (8, 8) or one text."""
    if clf.modality == "image":
        return _pixels(clf, torch.as_tensor(np.asarray(item, dtype=np.float32))[None].to(clf.device), target, steps)
    return _tokens(clf, item, target, steps)


def _pixels(clf: Classifier, x: Tensor, target: int, steps: int) -> dict[str, Any]:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(lambda inp: clf.logits(inp))
    attr, delta = ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                               return_convergence_delta=True)
    return {"method": "IntegratedGradients", "baseline": "black image", "steps": steps,
            "pixels": attr[0].detach().tolist(), "delta": float(delta[0])}


def _tokens(clf: Classifier, text: str, target: int, steps: int) -> dict[str, Any]:
    from captum.attr import LayerIntegratedGradients

    tok = clf.handle.tokenizer
    ids, mask = clf.tokenize([text])
    special = torch.tensor(tok.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True),
                           dtype=torch.bool, device=ids.device)
    baseline = torch.where(special, ids[0], torch.full_like(ids[0], tok.pad_token_id or 0))[None]
    lig = LayerIntegratedGradients(lambda i, m: clf.logits(i, m), word_embeddings(clf.handle.model))
    attr, delta = lig.attribute(ids, baselines=baseline, additional_forward_args=(mask,), target=target,
                                n_steps=steps, internal_batch_size=steps, return_convergence_delta=True)
    per_token = attr.sum(-1)[0].detach()
    return {"method": "LayerIntegratedGradients (word embeddings)", "baseline": "[PAD] tokens",
            "steps": steps, "tokens": tok.convert_ids_to_tokens(ids[0].tolist()),
            "values": per_token.tolist(), "delta": float(delta[0])}


def word_embeddings(model: nn.Module) -> nn.Module:
    """The token embedding table: transformers' accessor, else the `word_embeddings` module
    (a plain nn.Module wrapping a BERT, like minilm-l6-rt), else the first nn.Embedding."""
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter) and getter() is not None:
        return getter()
    embeddings = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if not embeddings:
        raise ValueError("no token embedding layer to attribute to")
    return next((m for n, m in embeddings if n.endswith("word_embeddings")), embeddings[0][1])


# ---------------------------------------------------------------- influence
def _head_model(features: Tensor, n_classes: int) -> HeadModel:
    return HeadModel(features.shape[1], n_classes).double()


def tracin(features: Tensor, labels: Tensor, checkpoints: list[Path], n_classes: int):
    """A TracInCPFast over (features, labels) with the given head checkpoints."""
    from captum.influence import TracInCPFast

    model = _head_model(features, n_classes)
    data = TensorDataset(features.double(), labels.long())
    return TracInCPFast(model, model.fc, data, [str(p) for p in checkpoints], load_checkpoint_into,
                        loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=INFLUENCE_BATCH)


def tracin_top_k(method, test_feature: Tensor, target: int, k: int) -> dict[str, list]:
    """Proponents and opponents of one test point (labelled with the predicted class)."""
    inputs = (test_feature.double()[None], torch.tensor([target]))
    out = {}
    for side, prop in (("proponents", True), ("opponents", False)):
        idx, scores = method.influence(inputs, k=k, proponents=prop)
        out[side] = {"index": idx[0].tolist(), "score": scores[0].tolist()}
    return out


def checkpoint_heads(checkpoints: list[Path]) -> list[tuple[Tensor, Tensor, float]]:
    """(weight (c, d), bias (c,), learning rate) of every head checkpoint, float64."""
    from safetensors.torch import load_file

    states = [load_file(p) for p in checkpoints]
    return [(s["weight"].double(), s["bias"].double(), float(s["lr"][0])) for s in states]


def tracin_scores(features: Tensor, labels: Tensor, heads: list[tuple[Tensor, Tensor, float]],
                  test_feature: Tensor, target: int) -> Tensor:
    """TracInCPFast's influence of every training point on one test point labelled `target`, (n,).

    Step 1: per checkpoint k, the cross-entropy gradient at the head's output, softmax - onehot (the
    loss is summed, so each point's own), for the training points and the test point;
    Step 2: sum_k lr_k (g_ik . g_tk) (x_i . x_t): the last-layer gradient dot product, factorised
    as TracInCPFast does (its layer input x is the feature row, without a bias column)."""
    x, xt = features.double(), test_feature.double()
    n_classes = heads[0][0].shape[0]
    y = nn.functional.one_hot(labels.long(), n_classes).double()
    yt = nn.functional.one_hot(torch.tensor(target), n_classes).double()
    grad_dot = torch.zeros(len(x), dtype=torch.float64)
    for weight, bias, lr in heads:
        g = torch.softmax(x @ weight.T + bias, -1) - y
        gt = torch.softmax(xt @ weight.T + bias, -1) - yt
        grad_dot += lr * (g @ gt)
    return grad_dot * (x @ xt)


def top_k(scores: Tensor, k: int) -> dict[str, dict[str, list]]:
    """The k highest (proponents) and k lowest (opponents) scores with their indices, as captum lists them."""
    k = min(k, len(scores))
    high, low = torch.topk(scores, k), torch.topk(-scores, k)
    return {"proponents": {"index": high.indices.tolist(), "score": high.values.tolist()},
            "opponents": {"index": low.indices.tolist(), "score": (-low.values).tolist()}}


def cosine_top_k(features: Tensor, test_feature: Tensor, k: int) -> dict[str, dict[str, list]]:
    """SimilarityInfluence's top-k on the head's input: cosine of the test features with every training
    row. A training row of zeros has no direction; captum fills it with -2 (max) / 2 (min) before the
    product, so it never ranks first; here its cosine is 0."""
    x, xt = features.double(), test_feature.double()
    denom = x.norm(dim=1) * xt.norm()
    return top_k(torch.where(denom > 0, (x @ xt) / denom, torch.zeros_like(denom)), k)


def self_influence(features: Tensor, labels: Tensor, checkpoints: list[Path], n_classes: int) -> Tensor:
    """TracInCP self-influence of every training point (large = likely mislabelled)."""
    return tracin(features, labels, checkpoints, n_classes).self_influence(None).detach()


def similarity_top_k(features: Tensor, test_feature: Tensor, k: int) -> dict[str, list]:
    """captum SimilarityInfluence: the k most and least cosine-similar training features."""
    from captum.influence import SimilarityInfluence

    model = _head_model(features, 1)
    data = features.double()  # a tensor is a map-style dataset of rows (TensorDataset would yield tuples)
    out = {}
    with tempfile.TemporaryDirectory(prefix="siminf-") as tmp:
        for side, direction in (("proponents", "max"), ("opponents", "min")):
            # two layers: with a single one captum 0.9 wraps its activations in one list too many
            sim = SimilarityInfluence(model, ["features", "fc"], data, tmp, model_id="head",
                                      similarity_direction=direction, batch_size=INFLUENCE_BATCH)
            idx, scores = sim.influence(test_feature.double()[None], top_k=k)["features"]
            out[side] = {"index": idx[0].tolist(), "score": scores[0].tolist()}
    return out


def overlap(a: list[int], b: list[int]) -> float:
    """|a & b| / k: the fraction of one top-k list found in the other."""
    return len(set(a) & set(b)) / max(1, min(len(a), len(b)))
