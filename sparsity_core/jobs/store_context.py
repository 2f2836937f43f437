"""The run context of a stored run: every report goes through to the store, parents come from it.

    ctx = StoreContext(run_id, token)   # what the worker hands a core function: fn(spec, ctx)
    parent = parent_run(7)              # the same read-only view, for the preflight at submit

Pages follow a run live because each metric, artifact and fact is written as it is reported.
Every write carries the run's claim token: once the run was closed or re-queued, the store
refuses a stale job's writes (token None: a run not claimed from the queue, as the CLI's `run`).
No torch here: the app's submit reads parents through this module too.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any, Optional

from db import artifacts, repo
from sparsity_core.jobs.context import ParentArtifact, ParentRun, RunContext
from sparsity_core.paths import artifacts_dir, home
from sparsity_core.specs import SpecError, upgrade_spec

MIN_UPDATE_INTERVAL_S = 0.25  # progress-bar writes are throttled; metrics never are


def parent_run(run_id: int) -> Optional[ParentRun]:
    """Run `run_id` of the store as a ParentRun (artifact paths absolute), or None when there is no
    such run. Its spec is upgraded to this release's version, as the worker reads specs."""
    run = repo.get_run_with_artifacts(run_id)
    if run is None:
        return None
    try:
        spec = upgrade_spec(dict(run.spec or {}), run.spec_version)
    except SpecError as exc:
        raise SpecError({"parent_run": f"run {run_id}: {exc.errors['spec_version']}"}) from None
    return ParentRun(id=run.id, kind=run.kind, model=run.model, status=run.status, method=run.method,
                     spec=spec, info=dict(run.info or {}),
                     artifacts={a.name: ParentArtifact(a.name, a.kind, home() / a.path,
                                                        partial(artifacts.local_path, a.path, a.sha256))
                                for a in run.artifacts})


class StoreContext(RunContext):
    """A RunContext bound to run `run_id` under claim `token`: keeps what it is told, as RunContext
    does, and stores it (the store drops it when `token` no longer owns the run)."""

    def __init__(self, run_id: int, token: Optional[str] = None):
        super().__init__(artifacts_dir(run_id))
        self.run_id, self.token = run_id, token
        self._last_update = 0.0

    def update(self, fraction: float, message: str = "") -> None:
        super().update(fraction, message)
        now = time.monotonic()
        if now - self._last_update >= MIN_UPDATE_INTERVAL_S or fraction >= 1.0:
            repo.set_progress(self.run_id, fraction, message, token=self.token)
            self._last_update = now

    def metric(self, key: str, value: float, x: Optional[float] = None, series: str = "") -> None:
        super().metric(key, value, x, series)
        repo.add_metrics(self.run_id, [self.metrics[-1]], token=self.token)

    def artifact(self, name: str, path: Path, kind: str) -> None:
        super().artifact(name, path, kind)
        repo.add_artifact(self.run_id, name, path, kind, token=self.token)

    def info(self, **facts: Any) -> None:
        super().info(**facts)
        repo.update_info(self.run_id, token=self.token, **facts)

    def parent(self, run_id: int) -> Optional[ParentRun]:
        return parent_run(run_id)
