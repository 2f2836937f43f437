"""submit / cancel / status over the store, the preflight at submit, and stored pruned models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from db import repo
from sparsity_core.jobs.executors import PREFLIGHTS, resolve
from sparsity_core.jobs.store_context import parent_run
from sparsity_core.specs import SCHEMA_VERSION, BaseSpec, parse_spec

if TYPE_CHECKING:
    from sparsity_core.zoo import ModelHandle


def preflight(spec: BaseSpec) -> None:
    """Checks beyond the spec's own fields, by the spec's lab; raises SpecError({field: message}).
    The parent run (None when the spec names none, or one that does not exist) is read once here."""
    parent = parent_run(spec.parent_run) if spec.parent_run is not None else None
    resolve(PREFLIGHTS[spec.kind])(spec, parent)


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


def load_pruned_run(run_id: int, sparsity: Optional[float] = None, device: str = "cpu") -> ModelHandle:
    """The model of stored pruning run `run_id` at target `sparsity` (None: its highest), for a
    notebook or a script: `load_pruned` on the run read from the store. KeyError for no such run."""
    from sparsity_core.pruning.artifacts import load_pruned  # torch: here only, so submit stays light

    parent = parent_run(run_id)
    if parent is None:
        raise KeyError(f"no run {run_id}")
    return load_pruned(parent, sparsity, device)
