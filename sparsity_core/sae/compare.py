"""Two SAEs side by side: their features matched by decoder cosine similarity. Weights in, matches out.

    matches = match_features(dec_a, dec_b)       # decoders (d_sae, d_in) as numpy arrays
    share = (matches["cosine"] >= MATCH_THRESHOLD).mean()

For each latent of A, the latent of B whose decoder direction is closest (cosine). A high match
means both SAEs found the same feature (dense vs pruned parent, or two variants). numpy only: the
pages and reports read decoders from safetensors and match them without torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MATCH_THRESHOLD = 0.7  # decoder cosine above which two SAE features count as the same direction
MATCH_CHUNK = 1024  # rows of A per product: bounds memory at 1024 x d_sae_b floats


def match_features(dec_a: np.ndarray, dec_b: np.ndarray, chunk: int = MATCH_CHUNK) -> pd.DataFrame:
    """One row per latent of A: `latent_a`, `latent_b` (its best match in B) and their `cosine`
    (1: B learned the same direction; near 0: nothing like it). Both decoders share d_in."""
    if dec_a.shape[1] != dec_b.shape[1]:
        raise ValueError(f"the SAEs read activations of different widths ({dec_a.shape[1]} vs {dec_b.shape[1]}): "
                         "their features cannot be matched")
    unit_b = _unit_rows(np.asarray(dec_b, dtype=np.float32))
    best_i = np.empty(len(dec_a), dtype=np.int64)
    best_v = np.empty(len(dec_a), dtype=np.float32)
    for start in range(0, len(dec_a), chunk):
        sims = _unit_rows(np.asarray(dec_a[start:start + chunk], dtype=np.float32)) @ unit_b.T
        best_i[start:start + chunk] = sims.argmax(axis=1)
        best_v[start:start + chunk] = sims.max(axis=1)
    return pd.DataFrame({"latent_a": np.arange(len(dec_a)), "latent_b": best_i, "cosine": best_v})


def _unit_rows(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
