"""Synthetic runs written straight into the store, for the UI benchmark and the compare tests.

No model is loaded: the numbers follow simple, hand-checkable curves (accuracy falls linearly with
sparsity, latency of a sparse layout falls with it), and every run is named "synthetic ..." so
nobody mistakes one for a measurement.

    ids = seed_pruning(method="magnitude", slope=0.5)   # accuracy = 0.95 - 0.5 * s
    kid = seed_kernel(parent=ids, dense_ms=10.0)        # latency_ms per layout vs sparsity
    seed_store(200)                                      # a store of 200 mixed runs
"""

from __future__ import annotations

from typing import Optional

from db import repo
from sparsity_core.specs import SCHEMA_VERSION

SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.9)
LAYERS = ("body.0", "body.1", "head")


def seed_pruning(method: str = "magnitude", slope: float = 0.5, model: str = "digits-mlp",
                 name: Optional[str] = None, scope: str = "layer", seed: int = 0,
                 sparsities: tuple[float, ...] = SPARSITIES) -> int:
    """A finished pruning run with accuracy = 0.95 - slope * s and exact per-layer sparsity."""
    spec = {"kind": "prune", "model": model, "method": method, "scope": scope, "seed": seed,
            "sparsities": list(sparsities), "pattern": "unstructured", "eval_samples": None,
            "name": name, "parent_run": None}
    run_id = repo.create_run(kind="prune", model=model, method=method, name=name or f"synthetic {method}",
                             spec=spec, spec_version=SCHEMA_VERSION, status="running")
    rows = []
    for s in sparsities:
        rows += [{"key": "sparsity", "x": s, "value": s},
                 {"key": "accuracy", "x": s, "value": round(0.95 - slope * s, 6)}]
        rows += [{"key": "layer_sparsity", "x": s, "series": layer, "value": s} for layer in LAYERS]
    repo.add_metrics(run_id, rows)
    repo.update_info(run_id, evaluation={"dataset": "digits", "split": "test", "rows": 360},
                     device={"name": "cpu (synthetic)"})
    repo.finish_run(run_id, "succeeded", message="done")
    return run_id


def seed_kernel(parent: int, dense_ms: float = 10.0, layouts: tuple[str, ...] = ("csr", "2:4"),
                sparsities: tuple[float, ...] = SPARSITIES) -> int:
    """A finished kernel run under `parent`: latency_ms = dense_ms * (1 - s * gain(layout))."""
    gain = {"csr": 0.8, "2:4": 0.45, "bsr": 0.6}
    spec = {"kind": "kernel", "model": "digits-mlp", "parent_run": parent, "name": None, "seed": 0}
    run_id = repo.create_run(kind="kernel", model="digits-mlp", spec=spec, spec_version=SCHEMA_VERSION,
                             parent_run_id=parent, status="running", name="synthetic latency")
    rows = []
    for layout in layouts:
        for s in sparsities:
            ms = dense_ms * (1 - s * gain.get(layout, 0.5))
            rows += [{"key": "latency_ms", "series": layout, "x": s, "value": ms},
                     {"key": "speedup", "series": layout, "x": s, "value": dense_ms / ms}]
    repo.add_metrics(run_id, rows)
    repo.finish_run(run_id, "succeeded", message="done")
    return run_id


def seed_store(n_runs: int = 200) -> list[int]:
    """`n_runs` mixed runs: pruning runs of three methods and a kernel run under every third one."""
    methods = ("magnitude", "wanda", "sparsegpt")
    ids: list[int] = []
    while len(ids) < n_runs:
        i = len(ids)
        run_id = seed_pruning(method=methods[i % 3], slope=0.3 + 0.1 * (i % 5), seed=i)
        ids.append(run_id)
        if i % 3 == 0 and len(ids) < n_runs:
            ids.append(seed_kernel(run_id, dense_ms=8.0 + i % 4))
    return ids
