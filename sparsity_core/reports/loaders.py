"""What the report builders draw, read from the store: a selection's frames, lineage, the JSON and
safetensors artifacts a lab panel needs. The one reports module (with bundle.py and seed.py) that
reads the store; every builder it feeds takes frames and dicts.

    runs, children, metrics = load_selection([3, 7])     # a compare.Selection
    parent, kids = lineage(7)
    matches = sae_matches(12, 15)                          # None when one has no decoder
    est = estimate_for(spec)                               # "about 40 s" from similar runs, or None
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

import numpy as np
import pandas as pd
from safetensors.numpy import load_file

from db import repo
from sparsity_core.reports.compare import Selection, runs_frame
from sparsity_core.reports.estimate import HISTORY_COLUMNS, Estimate, estimate
from sparsity_core.sae.compare import match_features
from sparsity_core.specs import BaseSpec

ESTIMATE_HISTORY = 200  # runs of the kind read for an estimate: bounded, however large the store grows


def all_runs() -> pd.DataFrame:
    """Every run in the store as a runs frame, newest first."""
    return runs_frame(repo.list_runs())


def load_selection(run_ids: Iterable[int]) -> Selection:
    """The selected runs (in the order given), their children, and the metrics of both and of a
    selected run's parent (a kernel run's quality lives there). KeyError for an unknown id."""
    ids = [int(i) for i in run_ids]
    runs = runs_frame(repo.list_runs(ids=ids)) if ids else runs_frame([])
    missing = [i for i in ids if i not in set(runs["id"].astype(int))]
    if missing:
        raise KeyError(f"no run {', '.join(map(str, missing))} in the store")
    order = {i: n for n, i in enumerate(ids)}
    runs = runs.sort_values("id", key=lambda s: s.map(order)).reset_index(drop=True)
    children = runs_frame(repo.list_children(ids)) if ids else runs_frame([])
    parents = {int(p) for p in runs["parent_run"].dropna()}
    metrics = repo.metrics_frame(set(ids) | set(children["id"].astype(int)) | parents)
    return Selection(runs, children, metrics)


def lineage(run_id: int) -> tuple[Optional[Any], list[Any]]:
    """A run's parent (or None) and its children: pruning -> SAE / explanation / latency."""
    run = repo.get_run(run_id)
    parent = repo.get_run(run.parent_run_id) if run is not None and run.parent_run_id else None
    return parent, list(reversed(repo.list_runs(parent_run_id=run_id)))


def explanations(run_ids: Iterable[int], skipped: Optional[list[str]] = None) -> list[tuple[str, dict[str, Any]]]:
    """(`#run variant`, explanation) for every `explanation@<variant>` JSON artifact of the runs
    (an explain run writes one for the dense model and one for its pruned parent). An artifact that
    is not an explanation (not JSON, or missing its fields: an imported bundle may hold anything) is
    left out, its `#run variant` appended to `skipped` when given, so a page says so and draws the rest."""
    out = []
    for run_id in run_ids:
        for art in repo.list_artifacts(int(run_id)):
            if art.kind == "json" and art.name.startswith("explanation@"):
                name = f"#{run_id} {art.name.split('@', 1)[1]}"
                try:
                    data = json.loads(repo.artifact_path(int(run_id), art.name).read_bytes())
                except (OSError, ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                    data = None
                if _is_explanation(data):
                    out.append((name, data))
                elif skipped is not None:
                    skipped.append(name)
    return out


def _is_explanation(data: Any) -> bool:
    """The fields the compare page reads, with the types it reads them as."""
    if not (isinstance(data, dict) and isinstance(data.get("input"), dict) and isinstance(data.get("prediction"), dict)
            and "name" in data["prediction"] and isinstance(data.get("per_label", {}), dict)):
        return False
    if not all(isinstance(v, (int, float)) for v in data.get("per_label", {}).values()):
        return False
    for side in ("excitatory", "inhibitory"):
        items = data.get(side, [])
        if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("index"), int)
                and isinstance(i.get("value", 0), (int, float, type(None))) for i in items):
            return False
    return True


def sae_decoder(run_id: int) -> Optional[np.ndarray]:
    """The decoder (d_sae x d_in) of an SAE run: the `W_dec` tensor of its first safetensors
    artifact that has one (safetensors only: nothing executable is loaded)."""
    for art in repo.list_artifacts(int(run_id)):
        if art.kind == "safetensors":
            tensors = load_file(str(repo.artifact_path(int(run_id), art.name)))
            key = next((k for k in tensors if k.split(".")[-1] == "W_dec"), None)
            if key is not None:
                return tensors[key].astype(np.float32)
    return None


def sae_matches(run_a: int, run_b: int) -> Optional[pd.DataFrame]:
    """Each latent of SAE run A matched to its closest in B (`sae.compare.match_features`), or None
    when either run saved no decoder. ValueError when the two read different widths."""
    dec_a, dec_b = sae_decoder(run_a), sae_decoder(run_b)
    if dec_a is None or dec_b is None:
        return None
    return match_features(dec_a, dec_b)


def estimate_for(spec: BaseSpec) -> Optional[Estimate]:
    """How long `spec` will take, from the last `ESTIMATE_HISTORY` runs of its kind in the store
    (`reports.estimate.estimate`: similar succeeded runs, scaled by size); None without history."""
    runs = repo.list_runs(kind=spec.kind, limit=ESTIMATE_HISTORY)
    frame = pd.DataFrame([{"kind": r.kind, "model": r.model, "method": r.method, "spec": r.spec or {},
                           "duration_s": r.duration_s, "status": r.status, "info": r.info or {}} for r in runs], columns=HISTORY_COLUMNS)
    return estimate(spec, frame)
