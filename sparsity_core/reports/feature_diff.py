"""What pruning did to an SAE's features: the dense model's dictionary against the pruned one's.

    fates = feature_fates(matches_ab, matches_ba, features_a, features_b)   # A dense, B pruned
    fate_counts(fates)        # {"kept": 2400, "moved": 500, "lost": 60, "new": 45}
    fates[fates["fate"] == "lost"].head()   # latent_a, top_tokens_a, cosine, latent_b, top_tokens_b, ...

Both SAEs read the same site of the same model, one dense and one pruned (an SAE run with a
`parent_run`). Every live latent of A is matched to the latent of B whose decoder direction is
closest (`sae.compare.match_features`), and every live latent of B to its closest in A:

  kept   cosine >= 0.7 (MATCH_THRESHOLD): the pruned model still has the feature
  moved  0.4 <= cosine < 0.7: a related direction, the feature turned
  lost   cosine < 0.4: nothing like it in the pruned model's dictionary
  new    a latent of B whose best match in A is below 0.4: a feature only the pruned model has

Dead latents (density 0 on the held-out tokens) are left out: their decoders are whatever
initialisation left, and would count as lost or new for no reason. Pure: frames in, frames out.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import pandas as pd

from sparsity_core.sae.compare import MATCH_THRESHOLD

MOVED_THRESHOLD = 0.4  # below this decoder cosine two features are unrelated
FATES = ("kept", "moved", "lost", "new")
FATE_HELP = {
    "kept": f"the closest latent on the other side has decoder cosine ≥ {MATCH_THRESHOLD}: the same feature",
    "moved": f"closest cosine between {MOVED_THRESHOLD} and {MATCH_THRESHOLD}: a related direction, the feature turned",
    "lost": f"closest cosine below {MOVED_THRESHOLD}: the pruned model's SAE has nothing like it",
    "new": f"a latent of the pruned model's SAE whose closest dense latent is below {MOVED_THRESHOLD}",
}
SAME_SETUP = ("model", "layer", "site", "data", "context", "variant", "expansion")  # what makes two SAEs comparable


def _fate(cosine: float) -> str:
    return "kept" if cosine >= MATCH_THRESHOLD else "moved" if cosine >= MOVED_THRESHOLD else "lost"


def feature_fates(matches_ab: pd.DataFrame, matches_ba: pd.DataFrame, features_a: pd.DataFrame,
                  features_b: pd.DataFrame) -> pd.DataFrame:
    """One row per live latent of A (fate kept / moved / lost, with its best match in B) and one
    per live latent of B that nothing in A resembles (fate new). Columns: fate, cosine, latent_a,
    latent_b, density_a, density_b, top_tokens_a, top_tokens_b."""
    a = features_a.set_index("latent")
    b = features_b.set_index("latent")
    live_a, live_b = set(a.index[a["density"] > 0]), set(b.index[b["density"] > 0])
    # Step 1: A's live latents and where each one went
    forward = matches_ab[matches_ab["latent_a"].isin(live_a)].copy()
    forward["fate"] = forward["cosine"].map(_fate)
    # Step 2: B's live latents with no counterpart in A
    backward = matches_ba[matches_ba["latent_a"].isin(live_b) & (matches_ba["cosine"] < MOVED_THRESHOLD)]
    new = pd.DataFrame({"latent_a": backward["latent_b"].to_numpy(), "latent_b": backward["latent_a"].to_numpy(),
                        "cosine": backward["cosine"].to_numpy(), "fate": "new"})
    out = pd.concat([forward, new], ignore_index=True)
    # Step 3: what a person reads to judge a match: how often each fires and on which tokens
    out["density_a"] = out["latent_a"].map(a["density"])
    out["density_b"] = out["latent_b"].map(b["density"])
    out["top_tokens_a"] = out["latent_a"].map(a["top_tokens"]) if "top_tokens" in a else ""
    out["top_tokens_b"] = out["latent_b"].map(b["top_tokens"]) if "top_tokens" in b else ""
    out["cosine"] = out["cosine"].astype(float).round(3)
    order = {f: i for i, f in enumerate(FATES)}
    out = out.sort_values(["fate", "density_a"], key=lambda s: s.map(order) if s.name == "fate" else -s,
                          kind="stable")
    return out[["fate", "cosine", "latent_a", "latent_b", "density_a", "density_b", "top_tokens_a",
                "top_tokens_b"]].reset_index(drop=True)


def fate_counts(fates: pd.DataFrame) -> dict[str, int]:
    """How many latents had each fate, every fate named (0 when none)."""
    counts = fates["fate"].value_counts()
    return {fate: int(counts.get(fate, 0)) for fate in FATES}


def dense_counterpart(spec: dict[str, Any], candidates: Iterable[tuple[int, dict[str, Any]]]) -> Optional[int]:
    """For an SAE run on a pruned parent (`spec`), the newest of `candidates` ((run id, spec),
    newest first) trained the same way on the dense model: the run its features are compared with
    by default. None for a run on the dense model, or when no such run exists."""
    if spec.get("parent_run") is None:
        return None
    for run_id, other in candidates:
        if other.get("parent_run") is None and all(other.get(k) == spec.get(k) for k in SAME_SETUP):
            return run_id
    return None
