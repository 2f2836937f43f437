"""Repository functions: the only way pages, the worker and the CLI touch the store.

Each function opens its own short session, so callers never hold a transaction open across slow
work (a job may run for minutes while others write). Rows come back detached with every column
loaded; a relationship (`run.artifacts`, `run.metrics`) only where a function says so
(`get_run_with_artifacts`); elsewhere touching one raises at once (`lazy="raise"` in db/models.py)
rather than a query against a closed session. Metrics come as frames (`metrics_frame`).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import pandas as pd
from sqlalchemy import delete, select, update
from sqlalchemy.orm import selectinload

from db.engine import session
from db.models import FINISHED, Artifact, Metric, Run, Worker, utcnow

METRIC_COLUMNS = ["run_id", "key", "series", "x", "value"]


# ---------------------------------------------------------------- runs
def create_run(
    *,
    kind: str,
    model: str,
    spec: dict[str, Any],
    spec_version: int,
    method: Optional[str] = None,
    name: Optional[str] = None,
    parent_run_id: Optional[int] = None,
    status: str = "queued",
    worker: Optional[str] = None,
) -> int:
    now = utcnow()
    run = Run(
        kind=kind, model=model, method=method, spec=spec, spec_version=spec_version, name=name,
        parent_run_id=parent_run_id, status=status, created_at=now, info={},
        started_at=now if status == "running" else None,
        heartbeat_at=now if status == "running" else None, worker=worker,
    )
    with session() as s:
        s.add(run)
        s.commit()
        return run.id


def get_run(run_id: int) -> Optional[Run]:
    with session() as s:
        return s.get(Run, run_id)


def get_run_with_artifacts(run_id: int) -> Optional[Run]:
    """A run with `run.artifacts` loaded (in creation order), read in one session."""
    query = select(Run).where(Run.id == run_id).options(selectinload(Run.artifacts))
    with session() as s:
        return s.scalar(query)


def list_runs(
    *, kind: Optional[str] = None, status: Optional[str] = None, ids: Optional[Iterable[int]] = None,
    parent_run_id: Optional[int] = None, limit: Optional[int] = None,
) -> list[Run]:
    query = select(Run).order_by(Run.id.desc())
    if kind:
        query = query.where(Run.kind == kind)
    if status:
        query = query.where(Run.status == status)
    if ids is not None:
        query = query.where(Run.id.in_(list(ids)))
    if parent_run_id is not None:
        query = query.where(Run.parent_run_id == parent_run_id)
    if limit:
        query = query.limit(limit)
    with session() as s:
        return list(s.scalars(query))


def list_children(run_ids: Iterable[int]) -> list[Run]:
    """Runs whose parent is one of `run_ids` (kernel / SAE / explanation runs of a pruning run)."""
    with session() as s:
        return list(s.scalars(select(Run).where(Run.parent_run_id.in_(list(run_ids))).order_by(Run.id)))


def claim_next(worker_id: str) -> Optional[Run]:
    """Claim the oldest queued run for `worker_id`, or None. Compare-and-set on the status column:
    of two workers racing for one row exactly one UPDATE matches, on SQLite and PostgreSQL alike."""
    with session() as s:
        while True:
            run_id = s.scalar(select(Run.id).where(Run.status == "queued").order_by(Run.id).limit(1))
            if run_id is None:
                return None
            now = utcnow()
            claimed = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == "queued")
                .values(status="running", worker=worker_id, started_at=now, heartbeat_at=now)
            ).rowcount
            s.commit()
            if claimed == 1:
                return s.get(Run, run_id, populate_existing=True)


def finish_run(
    run_id: int, status: str, *, error: Optional[str] = None, traceback: Optional[str] = None,
    message: Optional[str] = None,
) -> bool:
    """Move a run that is not finished yet to a final status. Returns False if it already was
    (a run ends once: a late crash report never overwrites a cancellation)."""
    assert status in FINISHED, status
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error,
                              "traceback": traceback}
    if status == "succeeded":
        values["progress"] = 1.0
    if message is not None:
        values["message"] = message
    with session() as s:
        done = s.execute(
            update(Run).where(Run.id == run_id, Run.status.not_in(FINISHED)).values(**values)
        ).rowcount
        s.commit()
        return done == 1


def heartbeat(run_id: int, child_pid: Optional[int] = None) -> None:
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if child_pid is not None:
        values["child_pid"] = child_pid
    with session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(**values))
        s.commit()


def set_progress(run_id: int, fraction: float, message: Optional[str] = None) -> None:
    values: dict[str, Any] = {"progress": max(0.0, min(1.0, float(fraction)))}
    if message is not None:
        values["message"] = message
    with session() as s:
        s.execute(update(Run).where(Run.id == run_id).values(**values))
        s.commit()


def update_info(run_id: int, **facts: Any) -> None:
    """Merge facts (evaluation setup, device fingerprint, ...) into the run's `info` JSON."""
    with session() as s:
        run = s.get(Run, run_id)
        run.info = {**(run.info or {}), **facts}
        s.commit()


def update_run_text(run_id: int, *, name: Optional[str] = None, notes: Optional[str] = None) -> None:
    with session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        if name is not None:
            run.name = name or None
        if notes is not None:
            run.notes = notes or None
        s.commit()


def request_cancel(run_id: int) -> str:
    """Cancel a run: a queued run ends at once; a running one is flagged and its worker ends the
    child process. Returns the run's status after the call."""
    with session() as s:
        now = utcnow()
        s.execute(update(Run).where(Run.id == run_id, Run.status == "queued")
                  .values(status="cancelled", finished_at=now, message="cancelled before it started"))
        s.execute(update(Run).where(Run.id == run_id, Run.status == "running")
                  .values(cancel_requested=True))
        s.commit()
        run = s.get(Run, run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        return run.status


def cancel_requested(run_id: int) -> bool:
    with session() as s:
        return bool(s.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


@dataclass(frozen=True)
class DeletePlan:
    """What deleting a run removes, said before anything is: the confirmation and the CLI show it."""

    run_id: int
    status: str
    metrics: int
    files: int  # artifact files on disk: the run's folder and any recorded artifact outside it
    bytes: int
    children: tuple[int, ...]  # runs that name it as parent: they stay, unlinked
    paths: tuple[Path, ...]

    @property
    def summary(self) -> str:
        children = ", ".join(f"#{c}" for c in self.children)
        return (f"run #{self.run_id} ({self.status}), {self.metrics} metric value(s), {self.files} artifact "
                f"file(s) ({self.bytes / 1e6:.1f} MB)"
                + (f"; child run(s) {children} stay, without a parent" if children else ""))


def _run_folder(run_id: int) -> Path:
    from sparsity_core.paths import home

    return home() / "artifacts" / f"run-{run_id:06d}"  # the layout of sparsity_core.paths.artifacts_dir


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    return [path] if path.is_file() else []


def delete_plan(run_id: int) -> DeletePlan:
    """What `delete_run(run_id)` would remove; KeyError when there is no such run."""
    from sqlalchemy import func

    from sparsity_core.paths import home

    with session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        metrics = s.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == run_id))
        recorded = [home() / p for p in s.scalars(select(Artifact.path).where(Artifact.run_id == run_id))]
        children = tuple(s.scalars(select(Run.id).where(Run.parent_run_id == run_id).order_by(Run.id)))
    folder = _run_folder(run_id)
    paths = [folder] + [p for p in recorded if not p.is_relative_to(folder)]  # an import may point elsewhere
    files = {f for path in paths for f in _files(path)}
    return DeletePlan(run_id, run.status, metrics, len(files), sum(f.stat().st_size for f in files),
                      children, tuple(p for p in paths if p.exists()))


def delete_run(run_id: int) -> DeletePlan:
    """Delete a finished or queued run: its row, metrics, artifact rows and artifact files, the run's
    folder included; its children stay, unlinked. Returns what was removed. KeyError for no such run,
    ValueError for a running one (cancel it first)."""
    plan = delete_plan(run_id)
    with session() as s:
        s.execute(update(Run).where(Run.parent_run_id == run_id).values(parent_run_id=None))
        # the status test is in the DELETE itself: a worker claiming the run meanwhile makes it match nothing
        deleted = s.execute(delete(Run).where(Run.id == run_id, Run.status != "running")).rowcount
        if deleted != 1:
            s.rollback()
            if s.get(Run, run_id) is None:
                raise KeyError(f"no run {run_id}")
            raise ValueError(f"run {run_id} is running: cancel it first")
        s.commit()  # metrics and artifact rows go with it (ON DELETE CASCADE)
    for path in plan.paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return plan


def forget_worker_process(host: str, pid: int, error: str) -> list[int]:
    """A worker process died without cleaning up (kill -9): drop its liveness rows, so nobody counts
    it as alive, and fail the runs it held at once instead of after the orphan timeout. Worker ids
    are "host:pid:n" (sparsity_core.jobs.worker.Worker). Returns the ids of the runs failed."""
    prefix = f"{host}:{pid}:"
    with session() as s:
        s.execute(delete(Worker).where(Worker.id.startswith(prefix, autoescape=True)))
        ids = list(s.scalars(select(Run.id).where(Run.status == "running",
                                                   Run.worker.startswith(prefix, autoescape=True))))
        if ids:
            s.execute(update(Run).where(Run.id.in_(ids), Run.status == "running")
                      .values(status="failed", finished_at=utcnow(), error=error))
        s.commit()
        return ids


def mark_orphans(stale_after_s: float) -> list[int]:
    """Runs left `running` by a worker that stopped heartbeating end as failed."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    with session() as s:
        ids = list(s.scalars(select(Run.id).where(Run.status == "running", Run.heartbeat_at < cutoff)))
        for run_id in ids:
            s.execute(update(Run).where(Run.id == run_id, Run.status == "running").values(
                status="failed", finished_at=utcnow(),
                error=f"orphaned: its worker stopped heartbeating for over {stale_after_s:.0f} s"))
        s.commit()
        return ids


def import_runs(rows: list[dict[str, Any]], write_files: Callable[[dict[int, int]], list[dict[str, Any]]]) -> list[int]:
    """Insert runs from a bundle in ONE transaction: rows carry `old_id`, `old_parent`, run columns
    and `metrics`; `write_files(old -> new ids)` writes artifact files and returns artifact rows.
    A parent inside the rows is re-linked to its new id (in the column and in the spec), one
    outside is dropped. Any exception rolls everything back. Returns the new ids in row order."""
    fields = ("kind", "name", "notes", "model", "method", "spec", "spec_version", "status", "created_at",
              "started_at", "finished_at", "error", "info")
    with session() as s, s.begin():
        runs = [Run(**{k: row[k] for k in fields}) for row in rows]
        s.add_all(runs)
        s.flush()
        new_ids = {row["old_id"]: run.id for row, run in zip(rows, runs)}
        for row, run in zip(rows, runs):
            run.parent_run_id = new_ids.get(row["old_parent"])
            if "parent_run" in run.spec:  # the spec names the parent in this store, as submit would
                run.spec = {**run.spec, "parent_run": run.parent_run_id}
            s.add_all(Metric(run_id=run.id, key=m["key"], series=m["series"] or "", x=m["x"], value=m["value"])
                      for m in row["metrics"])
        s.add_all(Artifact(**a) for a in write_files(new_ids))
    return [new_ids[row["old_id"]] for row in rows]


# ---------------------------------------------------------------- metrics
def add_metrics(run_id: int, rows: Iterable[dict[str, Any]]) -> None:
    """rows: dicts with key, value and optional series, x."""
    items = [Metric(run_id=run_id, key=r["key"], series=r.get("series") or "",
                    x=None if r.get("x") is None else float(r["x"]), value=float(r["value"]))
             for r in rows]
    with session() as s:
        s.add_all(items)
        s.commit()


def metrics_frame(run_ids: Iterable[int], key: Optional[str] = None) -> pd.DataFrame:
    query = select(Metric.run_id, Metric.key, Metric.series, Metric.x, Metric.value).where(
        Metric.run_id.in_(list(run_ids))).order_by(Metric.id)
    if key:
        query = query.where(Metric.key == key)
    with session() as s:
        rows = s.execute(query).all()
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


# ---------------------------------------------------------------- artifacts
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def add_artifact(run_id: int, name: str, path: Path, kind: str) -> int:
    """Record a file (or a directory, e.g. a save_pretrained folder) the run wrote."""
    from sparsity_core.paths import home

    path = Path(path).resolve()
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() \
        else path.stat().st_size
    row = Artifact(run_id=run_id, name=name, kind=kind, path=str(path.relative_to(home())),
                   sha256=sha256_of(path), bytes=size)
    with session() as s:
        s.add(row)
        s.commit()
        return row.id


def list_artifacts(run_id: int) -> list[Artifact]:
    with session() as s:
        return list(s.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)))


def artifact_path(run_id: int, name: str) -> Path:
    """Absolute path of a run's artifact by name; KeyError if the run has none of that name."""
    from sparsity_core.paths import home

    for art in list_artifacts(run_id):
        if art.name == name:
            return home() / art.path
    raise KeyError(f"run {run_id} has no artifact {name!r}")


# ---------------------------------------------------------------- workers
def worker_heartbeat(worker_id: str, current_run_id: Optional[int] = None) -> None:
    with session() as s:
        row = s.get(Worker, worker_id)
        if row is None:
            s.add(Worker(id=worker_id, current_run_id=current_run_id))
        else:
            row.heartbeat_at = utcnow()
            row.current_run_id = current_run_id
        s.commit()


def worker_gone(worker_id: str) -> None:
    with session() as s:
        s.execute(delete(Worker).where(Worker.id == worker_id))
        s.commit()


def live_workers(within_s: float = 30.0) -> list[Worker]:
    cutoff = utcnow() - timedelta(seconds=within_s)
    with session() as s:
        return list(s.scalars(select(Worker).where(Worker.heartbeat_at >= cutoff)))


def count_by_status() -> dict[str, int]:
    from sqlalchemy import func

    with session() as s:
        return dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all())
