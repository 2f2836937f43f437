"""Two SAEs side by side: their features matched by decoder cosine similarity. Weights in, matches out.

    matches = match_features(dec_a, dec_b)       # decoders (d_sae, d_in) as numpy arrays
    share = (matches["cosine"] >= MATCH_THRESHOLD).mean()

For each latent of A, the latent of B whose decoder direction is closest (cosine). A high match
means both SAEs found the same feature (dense vs pruned parent, or two variants). numpy only: the
pages and reports read decoders from safetensors and match them without torch.

Feature splitting (Bricken et al. 2023; SAEBench, Karvonen et al. 2025): a bigger dictionary
splits a latent of a smaller one into several finer ones. `split_counts(small, big)` counts, for
each latent of the small dictionary, the latents of the big one whose decoder cosine with it is
above MATCH_THRESHOLD: 1 is the same feature kept, 2 or more a split, 0 a feature the big one lacks.

    children = split_counts(dec_small, dec_big)   # (d_sae_small,) ints
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

MATCH_THRESHOLD = 0.7  # decoder cosine above which two SAE features count as the same direction
MATCH_CHUNK = 1024  # rows of A per product: bounds memory at 1024 x d_sae_b floats


def match_features(dec_a: np.ndarray, dec_b: np.ndarray, chunk: int = MATCH_CHUNK) -> pd.DataFrame:
    """One row per latent of A: `latent_a`, `latent_b` (its best match in B) and their `cosine`
    (1: B learned the same direction; near 0: nothing like it). Both decoders share d_in."""
    best_i = np.empty(len(dec_a), dtype=np.int64)
    best_v = np.empty(len(dec_a), dtype=np.float32)
    for rows, sims in _cosines(dec_a, dec_b, chunk):
        best_i[rows], best_v[rows] = sims.argmax(axis=1), sims.max(axis=1)
    return pd.DataFrame({"latent_a": np.arange(len(dec_a)), "latent_b": best_i, "cosine": best_v})


def split_counts(dec_small: np.ndarray, dec_big: np.ndarray, threshold: float = MATCH_THRESHOLD,
                 chunk: int = MATCH_CHUNK) -> np.ndarray:
    """For each latent (row) of `dec_small`, how many rows of `dec_big` have a decoder cosine above
    `threshold` with it (module docstring). Both decoders share d_in."""
    counts = np.empty(len(dec_small), dtype=np.int64)
    for rows, sims in _cosines(dec_small, dec_big, chunk):
        counts[rows] = (sims > threshold).sum(axis=1)
    return counts


def _cosines(dec_a: np.ndarray, dec_b: np.ndarray, chunk: int) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows of A, their cosines with every row of B) a chunk of A at a time: memory stays at
    chunk x d_sae_b floats."""
    if dec_a.shape[1] != dec_b.shape[1]:
        raise ValueError(f"the SAEs read activations of different widths ({dec_a.shape[1]} vs {dec_b.shape[1]}): "
                         "their features cannot be matched")
    unit_b = _unit_rows(np.asarray(dec_b, dtype=np.float32))
    for start in range(0, len(dec_a), chunk):
        rows = slice(start, start + chunk)
        yield rows, _unit_rows(np.asarray(dec_a[rows], dtype=np.float32)) @ unit_b.T


def _unit_rows(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
