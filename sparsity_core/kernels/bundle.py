"""JSON bundles: latency measured on another machine (a GPU box), imported into this store.

    bundle = make_bundle(spec, progress)          # on the GPU machine, after run_kernel(spec, progress)
    run_id = import_bundle(json.loads(text))      # here: a finished `kernel` run with its fingerprint

A bundle is plain JSON (never pickle): the spec, the device fingerprint and run facts, the metric
rows and the sweep table. Import validates the spec and every row before anything is stored.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from db import repo
from sparsity_core.paths import artifacts_dir
from sparsity_core.progress import Progress
from sparsity_core.specs import SCHEMA_VERSION, KernelSpec, SpecError, parse_spec

FORMAT = "sparsity-lab/kernel-bundle"
VERSION = 1


def make_bundle(spec: KernelSpec, progress: Progress) -> dict[str, Any]:
    sweep = progress.artifacts.get("sweep")
    rows = pd.read_parquet(sweep[0]).to_dict("records") if sweep else []
    return {"format": FORMAT, "version": VERSION, "spec": spec.model_dump(mode="json"),
            "info": progress.facts, "metrics": progress.metrics, "sweep": _json_safe(rows)}


def _json_safe(rows: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


def _check_metric(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict) or not isinstance(row.get("key"), str):
        raise SpecError({"bundle": f"a metric row needs a string key: {str(row)[:80]}"})
    try:
        value = float(row["value"])
        x = None if row.get("x") is None else float(row["x"])
    except (KeyError, TypeError, ValueError):
        raise SpecError({"bundle": f"metric {row.get('key')!r} has no numeric value"}) from None
    return {"key": row["key"], "series": str(row.get("series") or ""), "x": x, "value": value}


def import_bundle(bundle: dict[str, Any], name: str | None = None) -> int:
    """Store a bundle as a finished kernel run; returns its id. Raises SpecError if malformed."""
    # Step 1: validate everything first, so a bad file stores nothing
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise SpecError({"bundle": f"not a kernel bundle (format should be {FORMAT!r})"})
    if bundle.get("version") != VERSION:
        raise SpecError({"bundle": f"bundle version {bundle.get('version')!r}; this app reads {VERSION}"})
    spec_data = {**bundle.get("spec", {}), "parent_run": None}  # the parent lived in the other store
    spec = parse_spec(spec_data)
    if spec.kind != "kernel":
        raise SpecError({"bundle": "the bundle's spec is not a kernel spec"})
    metrics = [_check_metric(r) for r in bundle.get("metrics", [])]
    info = bundle.get("info") or {}
    device = info.get("device") or {}
    # Step 2: a finished run with the measuring machine's fingerprint
    run_id = repo.create_run(kind="kernel", model=spec.model, spec=spec.model_dump(mode="json"),
                             spec_version=SCHEMA_VERSION, name=name or spec.name or
                             f"imported: {device.get('gpu') or device.get('cpu_model') or 'unknown device'}",
                             status="running", worker="import")
    repo.add_metrics(run_id, metrics)
    repo.update_info(run_id, **info, imported=True)
    if bundle.get("sweep"):
        path = artifacts_dir(run_id) / "sweep.parquet"
        pd.DataFrame(bundle["sweep"]).to_parquet(path, index=False)
        repo.add_artifact(run_id, "sweep", path, "parquet")
    repo.finish_run(run_id, "succeeded", message="imported from a bundle")
    return run_id
