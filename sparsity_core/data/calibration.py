"""Calibration samples for pruning: deterministic, seeded, disjoint from every evaluation set.

    calib = calibration_set(handle, samples=64, seq_len=256, seed=0)
    for batch in calib.batches: handle.model(**batch)      # dicts of tensors (or a tensor)

Causal LMs: `samples` windows of exactly `seq_len` tokens cut from the BBC News *train* split
(articles joined with the EOS token, non-overlapping windows drawn at random), as the papers cut
C4 windows; perplexity is measured on the *test* split. Encoders: Rotten Tomatoes *val* snippets
(probe trains on train, scores on test). digits-mlp: digits *train* images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sparsity_core.data.datasets import bbc_news, digits, rotten_tomatoes

BATCH = 8  # calibration sequences per forward pass: bounded activation memory


@dataclass
class Calibration:
    batches: list[Any]  # model inputs: a dict of tensors (text) or a tensor (images)
    info: dict[str, Any] = field(default_factory=dict)


_STREAMS: dict[tuple, torch.Tensor] = {}  # (tokenizer, vocab, split, seed) -> tokens; tokenising takes seconds


def lm_token_stream(tokenizer, split: str, seed: int = 0) -> torch.Tensor:
    """All articles of a BBC News split as one 1-D token tensor, EOS between articles."""
    key = (tokenizer.name_or_path, len(tokenizer), split, seed)
    if key not in _STREAMS:
        texts = bbc_news(split, seed=seed).texts
        sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        _STREAMS[key] = torch.tensor([t for ids in encoded for t in ids + sep], dtype=torch.long)
    return _STREAMS[key]


def calibration_problem(handle, samples: int, seq_len: int, seed: int = 0) -> str | None:
    """Why this calibration cannot be drawn (longer than the data), or None."""
    available = _available(handle, seq_len, seed)
    if samples > available:
        unit = f"windows of {seq_len} tokens" if handle.task == "causal_lm" else "rows"
        return (f"asked for {samples} calibration samples but the calibration split has only "
                f"{available} {unit}: lower calibration_samples or seq_len")
    return None


def _available(handle, seq_len: int, seed: int) -> int:
    if handle.task == "causal_lm":
        return len(lm_token_stream(handle.tokenizer, "train", seed)) // seq_len
    if handle.name == "digits-mlp":
        return len(digits("train", seed=0))
    return len(rotten_tomatoes("val", seed=seed))


def calibration_set(handle, samples: int, seq_len: int, seed: int = 0) -> Calibration:
    """The calibration inputs for `handle`'s model; raises ValueError when too long for the data."""
    problem = calibration_problem(handle, samples, seq_len, seed)
    if problem:
        raise ValueError(problem)
    rng = np.random.default_rng(seed)
    if handle.task == "causal_lm":
        return _lm_windows(handle, samples, seq_len, seed, rng)
    if handle.name == "digits-mlp":
        data = digits("train", seed=0)
        x = torch.from_numpy(data.images[rng.choice(len(data), samples, replace=False)])
        return Calibration(list(x.split(64)), {"dataset": "digits", "split": "train", "samples": samples})
    data = rotten_tomatoes("val", seed=seed)
    texts = [data.texts[i] for i in rng.choice(len(data), samples, replace=False)]
    batches = [dict(handle.tokenizer(texts[i:i + BATCH], padding=True, truncation=True, max_length=seq_len,
                                     return_tensors="pt")) for i in range(0, samples, BATCH)]
    return Calibration(batches, {"dataset": "rotten_tomatoes", "split": "val", "samples": samples,
                                 "max_tokens": seq_len})


def _lm_windows(handle, samples, seq_len, seed, rng) -> Calibration:
    stream = lm_token_stream(handle.tokenizer, "train", seed)
    n_windows = len(stream) // seq_len
    picks = np.sort(rng.choice(n_windows, samples, replace=False))
    windows = torch.stack([stream[i * seq_len:(i + 1) * seq_len] for i in picks])
    batches = [{"input_ids": w} for w in windows.split(BATCH)]
    return Calibration(batches, {"dataset": "bbc_news", "split": "train", "samples": samples,
                                 "seq_len": seq_len, "tokens": samples * seq_len,
                                 "sampling": "non-overlapping windows, seeded"})
