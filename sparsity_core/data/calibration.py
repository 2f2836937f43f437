"""Calibration samples for pruning: deterministic, seeded, disjoint from every evaluation set.

    calibration_problem("smollm2-135m", samples=64, seq_len=256)   # None, or why the data is too short
    calib = calibration_set(handle, samples=64, seq_len=256, seed=0)
    for batch in calib.batches: handle.model(**batch)      # dicts of tensors (or a tensor)

Causal LMs: `samples` windows of exactly `seq_len` tokens cut from the BBC News *train* split
(articles joined with the EOS token, non-overlapping windows drawn at random), as the papers cut
C4 windows; perplexity is measured on the *test* split. Image models (digits-mlp): digits *train*
images. Other text models: Rotten Tomatoes *val* snippets (probes train on train, score on test).

`calibration_problem` runs in the app before a run is queued, so for a bundled model it needs
neither torch nor transformers. Row counts come from the datasets (torch-free); a causal LM's token
count from the `tokenizers` package and the tokenizer.json its loader left in the model cache, or
else from the bytes of the split (no tokenizer makes fewer than one byte per token), so before a
bundled LM was ever loaded the check is a bound. Every count is cached (`cache/calibration`), so
the check takes milliseconds the next time. torch is imported only where tensors are built.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from sparsity_core.catalog.models import model_entry
from sparsity_core.data.datasets import bbc_news, load_dataset
from sparsity_core.paths import cache_dir

BATCH = 8  # calibration sequences per forward pass: bounded activation memory


@dataclass
class Calibration:
    batches: list[Any]  # model inputs: a dict of tensors (text) or a tensor (images)
    info: dict[str, Any] = field(default_factory=dict)


def source(task: str, image: bool) -> tuple[str, str, bool]:
    """(dataset, split, split seed fixed at 0) a model of this task calibrates on."""
    if task == "causal_lm":
        return "bbc_news", "train", False
    if image:
        return "digits", "train", True  # the split the cached digits model trained on
    return "rotten_tomatoes", "val", False


# ---------------------------------------------------------------- sizes, without torch

def _sizes_path():
    return cache_dir("calibration") / "sizes.json"


def _sizes() -> dict[str, int]:
    path = _sizes_path()
    return json.loads(path.read_text()) if path.is_file() else {}


def _remember(key: str, value: int) -> None:
    sizes = {**_sizes(), key: value}
    tmp = _sizes_path().with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(sizes, indent=0, sort_keys=True))
    tmp.replace(_sizes_path())  # atomic: a reader never sees half a file


def _cached(key: str, compute: Callable[[], int]) -> int:
    sizes = _sizes()
    if key not in sizes:
        sizes[key] = compute()
        _remember(key, sizes[key])
    return sizes[key]


def _token_key(model: str, split: str, seed: int) -> str:
    return f"tokens:{model}:bbc_news:{split}:{seed}"


def count_tokens(tokenizer_file: Path, texts: list[str]) -> int:
    """Tokens of `texts` joined as `lm_token_stream` joins them (EOS after each article), with the
    `tokenizers` package alone: the same ids transformers' fast tokenizer gives, without torch."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()  # a tokenizer.json may carry the model's max length; the stream has none
    tok.no_padding()
    config = tokenizer_file.with_name("tokenizer_config.json")
    eos = json.loads(config.read_text()).get("eos_token") if config.is_file() else None
    eos = eos.get("content") if isinstance(eos, dict) else eos
    sep = 1 if eos is not None and tok.token_to_id(eos) is not None else 0
    return sum(len(e.ids) + sep for e in tok.encode_batch(texts, add_special_tokens=False))


def _lm_tokens(model: str, split: str, seed: int) -> tuple[int, bool]:
    """(tokens of the split, exact) for a bundled causal LM, without loading it."""
    key = _token_key(model, split, seed)
    if key in (sizes := _sizes()):
        return sizes[key], True
    tokenizer_file = cache_dir("models") / model / "tokenizer.json"  # where a bundled loader caches it
    if tokenizer_file.is_file():
        tokens = count_tokens(tokenizer_file, bbc_news(split, seed=seed).texts)
        _remember(key, tokens)
        return tokens, True
    return _cached(f"bytes:bbc_news:{split}:{seed}",
                   lambda: sum(len(t.encode()) + 1 for t in bbc_news(split, seed=seed).texts)), False


def calibration_problem(model: str, samples: int, seq_len: int, seed: int = 0, handle=None) -> Optional[str]:
    """Why `samples` calibration samples cannot be drawn for `model` (the data is too short), or None.

    `handle` (the loaded model, or an `hf:` model's skeleton) gives the task and the tokenizer; a
    bundled model is checked from its catalog entry alone, without torch."""
    entry = model_entry(model)
    task, image = (handle.task, handle.image) if handle is not None else (entry.task, entry.image)
    dataset, split, fixed = source(task, image)
    seed_used = 0 if fixed else seed
    if task != "causal_lm":
        rows = _cached(f"rows:{dataset}:{split}:{seed_used}", lambda: len(load_dataset(dataset, split, seed_used)))
        if samples > rows:
            return (f"asked for {samples} calibration samples but the calibration split has only {rows} rows: "
                    "lower calibration_samples")
        return None
    if handle is not None and handle.tokenizer is not None:
        tokens, exact = len(lm_token_stream(handle.tokenizer, split, seed)), True
        if entry is not None:
            _remember(_token_key(model, split, seed), tokens)  # the app checks the next run without a tokenizer
    else:
        tokens, exact = _lm_tokens(model, split, seed)
    windows = tokens // seq_len
    if samples > windows:
        has = "has only" if exact else "has at most"
        return (f"asked for {samples} calibration samples but the calibration split {has} {windows} windows of "
                f"{seq_len} tokens: lower calibration_samples or seq_len")
    return None


# ---------------------------------------------------------------- the samples (torch)

_STREAMS: dict[tuple, Any] = {}  # (tokenizer, vocab, split, seed) -> tokens; tokenising takes seconds


def lm_token_stream(tokenizer, split: str, seed: int = 0):
    """All articles of a BBC News split as one 1-D token tensor, EOS between articles."""
    import torch

    key = (tokenizer.name_or_path, len(tokenizer), split, seed)
    if key not in _STREAMS:
        texts = bbc_news(split, seed=seed).texts
        sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        _STREAMS[key] = torch.tensor([t for ids in encoded for t in ids + sep], dtype=torch.long)
    return _STREAMS[key]


def calibration_set(handle, samples: int, seq_len: int, seed: int = 0) -> Calibration:
    """The calibration inputs for `handle`'s model; raises ValueError when too long for the data."""
    import torch

    problem = calibration_problem(handle.name, samples, seq_len, seed, handle=handle)
    if problem:
        raise ValueError(problem)
    rng = np.random.default_rng(seed)
    dataset, split, fixed = source(handle.task, handle.image)
    if dataset == "bbc_news":
        return _lm_windows(handle, samples, seq_len, seed, rng)
    data = load_dataset(dataset, split, seed=0 if fixed else seed)
    picks = rng.choice(len(data), samples, replace=False)
    info = {"dataset": dataset, "split": split, "samples": samples}
    if data.images is not None:
        return Calibration(list(torch.from_numpy(data.images[picks]).split(64)), info)
    texts = [data.texts[i] for i in picks]
    batches = [dict(handle.tokenizer(texts[i:i + BATCH], padding=True, truncation=True, max_length=seq_len,
                                     return_tensors="pt")) for i in range(0, samples, BATCH)]
    return Calibration(batches, {**info, "max_tokens": seq_len})


def _lm_windows(handle, samples, seq_len, seed, rng) -> Calibration:
    import torch

    stream = lm_token_stream(handle.tokenizer, "train", seed)
    n_windows = len(stream) // seq_len
    picks = np.sort(rng.choice(n_windows, samples, replace=False))
    windows = torch.stack([stream[i * seq_len:(i + 1) * seq_len] for i in picks])
    batches = [{"input_ids": w} for w in windows.split(BATCH)]
    return Calibration(batches, {"dataset": "bbc_news", "split": "train", "samples": samples,
                                 "seq_len": seq_len, "tokens": samples * seq_len,
                                 "sampling": "non-overlapping windows, seeded"})
