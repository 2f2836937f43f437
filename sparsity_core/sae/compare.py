"""Two SAE runs side by side: matched features by decoder cosine similarity.

For each latent of run A, the latent of run B whose decoder direction is closest (cosine). A high
match means both SAEs found the same feature (dense vs pruned parent, or two variants).
"""

from __future__ import annotations

import pandas as pd
import torch

from db import repo
from sparsity_core.sae.export import load_sae

WEIGHTS = "sae"  # artifact name of the lab's weights file


def matched_features(run_a: int, run_b: int, chunk: int = 1024) -> pd.DataFrame:
    """One row per latent of A: latent_a, latent_b (best match), cosine."""
    sae_a, _ = load_sae(repo.artifact_path(run_a, WEIGHTS))
    sae_b, _ = load_sae(repo.artifact_path(run_b, WEIGHTS))
    if sae_a.d_in != sae_b.d_in:
        raise ValueError(f"runs {run_a} and {run_b} read activations of different widths "
                         f"({sae_a.d_in} vs {sae_b.d_in}): nothing to match")
    a = torch.nn.functional.normalize(sae_a.W_dec.detach(), dim=-1)
    b = torch.nn.functional.normalize(sae_b.W_dec.detach(), dim=-1)
    best_v, best_i = [], []
    for i in range(0, len(a), chunk):
        top = (a[i:i + chunk] @ b.t()).max(dim=-1)
        best_v.append(top.values)
        best_i.append(top.indices)
    return pd.DataFrame({"latent_a": range(len(a)), "latent_b": torch.cat(best_i).numpy(),
                         "cosine": torch.cat(best_v).numpy()})
