"""Datasets that work offline, with deterministic seeded splits.

Every loader returns a `Dataset` (texts or images, integer labels, class names, split). Split
membership depends only on the data and the seed, so two runs with the same seed see the same rows.
"""

from sparsity_core.data.datasets import (
    DATASETS,
    Dataset,
    bbc_news,
    digits,
    load_dataset,
    rotten_tomatoes,
    tweets,
)

__all__ = ["DATASETS", "Dataset", "bbc_news", "digits", "load_dataset", "rotten_tomatoes", "tweets"]
