"""Quality of a (pruned) model, measured the same way at every sparsity of a run.

An evaluator is built once from the dense model (it caches what is shared: data, dense
embeddings) and then called on the model after each pruning step. `describe()` goes into the
run's info, so a reader knows exactly what a number measured.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from sparsity_core.data import digits, rotten_tomatoes
from sparsity_core.data.calibration import lm_token_stream
from sparsity_core.zoo import ModelHandle
from sparsity_core.zoo.classifier import TextClassifierAccuracy

PROBE_TRAIN = 2000  # Rotten Tomatoes snippets the linear probe is fitted on
PROBE_TEST = 1000  # held-out snippets (different movies) it is scored on


class Evaluator:
    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def __call__(self, handle: ModelHandle) -> dict[str, float]:
        raise NotImplementedError


class DigitsAccuracy(Evaluator):
    """Top-1 accuracy on the digits test split."""

    def __init__(self, seed: int, limit: Optional[int]):
        data = digits("test", seed=0).subset(limit)  # split seed fixed: the cached model trained on seed 0
        self.x, self.y = torch.from_numpy(data.images), torch.from_numpy(data.labels)

    def describe(self):
        return {"dataset": "digits", "split": "test", "rows": len(self.y), "metric": "top-1 accuracy"}

    @torch.no_grad()
    def __call__(self, handle):
        pred = handle.model(self.x.to(handle.device)).argmax(-1).cpu()
        return {"accuracy": float((pred == self.y).float().mean())}


class ProbeAndCosine(Evaluator):
    """Encoders: accuracy of a logistic-regression probe refitted on the model's embeddings
    (Rotten Tomatoes fresh/rotten) and mean cosine similarity to the dense model's embeddings."""

    def __init__(self, handle: ModelHandle, seed: int, limit: Optional[int]):
        train = rotten_tomatoes("train", seed=seed).subset(PROBE_TRAIN)
        test = rotten_tomatoes("test", seed=seed).subset(limit or PROBE_TEST)
        self.train_texts, self.y_train = train.texts, train.labels
        self.test_texts, self.y_test = test.texts, test.labels
        self.seed = seed
        self.dense_test = handle.embed(self.test_texts)

    def describe(self):
        return {"dataset": "rotten_tomatoes", "split": "train -> test (disjoint movies)",
                "probe_train_rows": len(self.y_train), "test_rows": len(self.y_test),
                "probe": "logistic regression (C=1) on mean-pooled unit embeddings",
                "embedding_cosine": "mean cosine(pruned, dense) over test rows"}

    def __call__(self, handle):
        from sklearn.linear_model import LogisticRegression

        emb_train = handle.embed(self.train_texts).numpy()
        emb_test = handle.embed(self.test_texts)
        probe = LogisticRegression(C=1.0, max_iter=2000, random_state=self.seed).fit(emb_train, self.y_train)
        acc = float(np.mean(probe.predict(emb_test.numpy()) == self.y_test))
        cos = torch.nn.functional.cosine_similarity(emb_test, self.dense_test, dim=-1).mean()
        return {"accuracy": acc, "embedding_cosine": float(cos)}


class Perplexity(Evaluator):
    """Causal LMs: token-level perplexity on held-out BBC News (test split; calibration reads the
    train split). Articles are joined with EOS into one stream and cut into non-overlapping
    windows of CONTEXT tokens (stride = CONTEXT, as the Wanda/SparseGPT papers evaluate); every
    token after the first of a window is scored, so each has 1..CONTEXT-1 tokens of context."""

    CONTEXT = 512  # tokens per window: long enough for real context, short enough for a CPU
    WINDOWS = 16  # default windows scored (8,192 tokens): perplexity stable to ~1% between seeds

    def __init__(self, handle: ModelHandle, seed: int, limit: Optional[int]):
        stream = lm_token_stream(handle.tokenizer, "test", seed)
        n = min(limit or self.WINDOWS, len(stream) // self.CONTEXT)
        self.windows = stream[:n * self.CONTEXT].view(n, self.CONTEXT)
        self.seed = seed

    def describe(self):
        n = len(self.windows)
        return {"dataset": "bbc_news", "split": "test (calibration uses train)", "metric": "perplexity",
                "level": "token", "context_length": self.CONTEXT, "stride": self.CONTEXT,
                "windows": n, "scored_tokens": n * (self.CONTEXT - 1), "seed": self.seed}

    @torch.no_grad()
    def __call__(self, handle):
        nll, count = 0.0, 0
        for batch in self.windows.split(4):  # 4 windows per forward: bounded logits memory
            ids = batch.to(handle.device)
            logits = handle.model(input_ids=ids).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     ids[:, 1:].reshape(-1), reduction="sum")
            nll, count = nll + float(loss), count + ids[:, 1:].numel()
        return {"perplexity": float(np.exp(nll / count))}


def make_evaluator(handle: ModelHandle, seed: int, limit: Optional[int] = None) -> Evaluator:
    """The evaluation of the model's task on its catalog entry's `eval_data`."""
    eval_data = handle.entry.eval_data if handle.entry is not None else None
    if handle.task == "causal_lm":
        return Perplexity(handle, seed, limit)
    if handle.task == "classifier" and eval_data == "digits":
        return DigitsAccuracy(seed, limit)
    if handle.task == "classifier" and eval_data == "rotten_tomatoes":
        return TextClassifierAccuracy(handle, seed, limit)
    if handle.task == "encoder" and handle.embed is not None:
        return ProbeAndCosine(handle, seed, limit)
    raise ValueError(f"no evaluation for {handle.name} ({handle.task}) yet")
