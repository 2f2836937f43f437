"""submit / cancel / status over the store."""

from __future__ import annotations

from typing import Any

from db import repo
from sparsity_core.jobs.executors import PREFLIGHTS, resolve
from sparsity_core.specs import SCHEMA_VERSION, BaseSpec, SpecError, parse_spec


def preflight(spec: BaseSpec) -> None:
    """Checks beyond the spec's own fields; raises SpecError({field: message})."""
    if spec.parent_run is not None and repo.get_run(spec.parent_run) is None:
        raise SpecError({"parent_run": f"run {spec.parent_run} does not exist"})
    if spec.kind in PREFLIGHTS:
        resolve(PREFLIGHTS[spec.kind])(spec)


def submit(spec: dict[str, Any] | str | BaseSpec, *, status: str = "queued", worker: str | None = None) -> int:
    """Validate, check and queue a spec. Raises SpecError (nothing stored) when it is invalid."""
    spec = parse_spec(spec)
    preflight(spec)
    return repo.create_run(
        kind=spec.kind, model=spec.model, method=spec.method_name, name=spec.name,
        spec=spec.model_dump(mode="json"), spec_version=SCHEMA_VERSION,
        parent_run_id=spec.parent_run, status=status, worker=worker)


def cancel(run_id: int) -> str:
    return repo.request_cancel(run_id)


def status(run_id: int) -> str:
    run = repo.get_run(run_id)
    if run is None:
        raise KeyError(f"no run {run_id}")
    return run.status
