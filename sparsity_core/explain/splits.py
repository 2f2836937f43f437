"""The data an explanation decomposes: seeded train/test splits, and their sizes without loading them.

    train, test = splits("digits", seed=0, train_limit=300)
    n_train, n_test = split_sizes("rotten_tomatoes", seed=0)    # read once, then from the cache

No torch: the pre-run check asks for the sizes in the app. Loading a split costs up to a second
in a fresh process (scikit-learn's import for digits), so the sizes are kept per (dataset, seed)
in `cache_dir("explain")/split_sizes.json`; they depend only on the installed data files.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from sparsity_core.catalog.datasets import IMAGE_DATASETS
from sparsity_core.data import Dataset, load_dataset
from sparsity_core.paths import cache_dir

TRAINED_SPLIT_SEED = 0  # the cached digits-mlp was trained on the seed-0 split of digits: explain that one


def split_seed(dataset: str, seed: int) -> int:
    return TRAINED_SPLIT_SEED if dataset in IMAGE_DATASETS else seed


def splits(dataset: str, seed: int, train_limit: Optional[int] = None) -> tuple[Dataset, Dataset]:
    """(training rows, at most `train_limit`; test rows) of `dataset` split with `seed`."""
    seed = split_seed(dataset, seed)
    return load_dataset(dataset, "train", seed).subset(train_limit), load_dataset(dataset, "test", seed)


def split_sizes(dataset: str, seed: int) -> tuple[int, int]:
    """(training rows, test rows) of the whole split, stored after the first time they are read."""
    path = cache_dir("explain") / "split_sizes.json"
    key = f"{dataset}|{split_seed(dataset, seed)}"
    sizes = json.loads(path.read_text()) if path.exists() else {}
    if key not in sizes:
        train, test = splits(dataset, seed)
        fresh = json.loads(path.read_text()) if path.exists() else {}  # another process may have added some
        sizes = {**fresh, key: [len(train), len(test)]}
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(sizes))
        tmp.replace(path)
    n_train, n_test = sizes[key]
    return n_train, n_test
