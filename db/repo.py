"""Repository functions: the only way pages, the worker and the CLI touch the store.

Each function opens its own short session, so callers never hold a transaction open across slow
work (a job may run for minutes while others write). Rows come back detached with every column
loaded; a relationship (`run.artifacts`, `run.metrics`) only where a function says so
(`get_run_with_artifacts`); elsewhere touching one raises at once (`lazy="raise"` in db/models.py)
rather than a query against a closed session. Metrics come as frames (`metrics_frame`).
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Optional

import pandas as pd
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, selectinload

from db import artifacts
from db.engine import session
from db.models import FINISHED, Artifact, Metric, Run, Worker, utcnow

METRIC_COLUMNS = ["run_id", "key", "series", "x", "value"]
MAX_ATTEMPTS = 2  # the orphan policy: a run whose worker vanished is re-queued once, then failed


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
        attempts=1 if status == "running" else 0,  # a run created running (CLI foreground) started once
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
    """Claim the oldest queued run for `worker_id`, or None: it becomes `running` with a fresh
    `claim_token` and one more attempt. On PostgreSQL the candidate row is read `FOR UPDATE SKIP
    LOCKED`, so racing workers each lock a different row instead of queueing on one; on SQLite
    (which has no row locks and ignores that clause) the UPDATE is a compare-and-set on the status,
    and of two workers racing for one row exactly one matches. Never one run to two workers."""
    with session() as s:
        while True:
            run_id = s.scalar(select(Run.id).where(Run.status == "queued").order_by(Run.id).limit(1)
                              .with_for_update(skip_locked=True))
            if run_id is None:
                s.commit()
                return None
            now = utcnow()
            claimed = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == "queued")
                .values(status="running", worker=worker_id, started_at=now, heartbeat_at=now, child_pid=None,
                        claim_token=uuid.uuid4().hex, attempts=Run.attempts + 1)
            ).rowcount
            s.commit()
            if claimed == 1:
                return s.get(Run, run_id, populate_existing=True)


def _owned(run_id: int, token: Optional[str]) -> list:
    """The WHERE clause of a write that only the claim `token` may make (none without a token)."""
    if token is None:
        return [Run.id == run_id]
    return [Run.id == run_id, Run.status == "running", Run.claim_token == token]


def _hold(s: Session, run_id: int, token: Optional[str]) -> bool:
    """Inside session `s`, make sure the run is still `running` under `token` and keep it so until
    `s` commits. The no-op UPDATE is the lock: on PostgreSQL it locks the row (a concurrent re-queue
    waits, or if it came first, this matches nothing); on SQLite it takes the database's write lock.
    So a write checked here can never land after the run was re-queued or closed. No token: True."""
    if token is None:
        return True
    return s.execute(update(Run).where(*_owned(run_id, token)).values(claim_token=Run.claim_token)).rowcount == 1


def finish_run(
    run_id: int, status: str, *, token: Optional[str] = None, error: Optional[str] = None,
    traceback: Optional[str] = None, message: Optional[str] = None,
) -> bool:
    """Move a run to a final status. With the claim's `token`: only while it is `running` under
    that token, so a stale child can never close a run that was re-queued or closed meanwhile.
    Without (a queued run's cancel, the CLI's foreground run): any run not finished yet. Returns
    False when nothing matched (a run ends once: a late crash report never overwrites a cancel)."""
    assert status in FINISHED, status
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error,
                              "traceback": traceback}
    if status == "succeeded":
        values["progress"] = 1.0
    if message is not None:
        values["message"] = message
    where = _owned(run_id, token) if token is not None else [Run.id == run_id, Run.status.not_in(FINISHED)]
    with session() as s:
        done = s.execute(update(Run).where(*where).values(**values)).rowcount
        s.commit()
        return done == 1


def heartbeat(run_id: int, child_pid: Optional[int] = None, *, token: Optional[str] = None) -> bool:
    """The supervising worker says it is alive (and which child runs the job). With `token`, only
    while its claim owns the run: a worker that was paused past the orphan timeout cannot keep a run
    another worker now holds alive, nor overwrite its child_pid. Returns whether it was written."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if child_pid is not None:
        values["child_pid"] = child_pid
    with session() as s:
        done = s.execute(update(Run).where(*_owned(run_id, token)).values(**values)).rowcount
        s.commit()
        return done == 1


def set_progress(run_id: int, fraction: float, message: Optional[str] = None, *,
                 token: Optional[str] = None) -> bool:
    """Returns whether it was written (with `token`: only while that claim owns the running run)."""
    values: dict[str, Any] = {"progress": max(0.0, min(1.0, float(fraction)))}
    if message is not None:
        values["message"] = message
    with session() as s:
        done = s.execute(update(Run).where(*_owned(run_id, token)).values(**values)).rowcount
        s.commit()
        return done == 1


def update_info(run_id: int, *, token: Optional[str] = None, **facts: Any) -> bool:
    """Merge facts (evaluation setup, device, `executor`: name/node/host/device) into the run's
    `info` JSON. The row is read FOR UPDATE (PostgreSQL), so two writers merge rather than one
    losing the other's facts. With `token`, nothing is written unless that claim owns the running
    run. Returns whether it was written; KeyError for no such run."""
    with session() as s:
        if not _hold(s, run_id, token):
            s.rollback()
            return False
        run = s.get(Run, run_id, with_for_update=True, populate_existing=True)
        if run is None:
            raise KeyError(f"no run {run_id}")
        run.info = {**(run.info or {}), **facts}
        s.commit()
        return True


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
    keys: tuple[str, ...] = ()  # what goes from a shared SPARSITY_ARTIFACTS root (db.artifacts)

    @property
    def summary(self) -> str:
        children = ", ".join(f"#{c}" for c in self.children)
        return (f"run #{self.run_id} ({self.status}), {self.metrics} metric value(s), {self.files} artifact "
                f"file(s) ({self.bytes / 1e6:.1f} MB)"
                + (f"; child run(s) {children} stay, without a parent" if children else ""))


def _run_folder(run_id: int) -> Path:
    from sparsity_core.paths import home

    return home() / "artifacts" / f"run-{run_id:06d}"  # the layout of sparsity_core.paths.artifacts_dir


def _run_key(run_id: int) -> str:
    return f"artifacts/run-{run_id:06d}"  # _run_folder relative to SPARSITY_HOME: the artifacts' key prefix


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
        keys = list(s.scalars(select(Artifact.path).where(Artifact.run_id == run_id)))
        recorded = [home() / k for k in keys]
        children = tuple(s.scalars(select(Run.id).where(Run.parent_run_id == run_id).order_by(Run.id)))
    folder = _run_folder(run_id)
    paths = [folder] + [p for p in recorded if not p.is_relative_to(folder)]  # an import may point elsewhere
    files = {f for path in paths for f in _files(path)}
    return DeletePlan(run_id, run.status, metrics, len(files), sum(f.stat().st_size for f in files),
                      children, tuple(p for p in paths if p.exists()), (_run_key(run_id), *keys))


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
    artifacts.remove(list(plan.keys))
    return plan


class Orphan(NamedTuple):
    """A run whose worker went away, and what the store did with it: "requeued" or "failed". The
    worker and child pid say which processes the caller should end, where it can reach them."""

    run_id: int
    worker: Optional[str]
    child_pid: Optional[int]
    action: str


def _remove_partial_results(s: Session, run_id: int) -> None:
    """Inside the transaction that puts the run back in the queue (so nobody can claim it yet):
    its metric and artifact rows and its artifact folder go, and the next attempt starts clean."""
    s.execute(delete(Metric).where(Metric.run_id == run_id))
    s.execute(delete(Artifact).where(Artifact.run_id == run_id))
    shutil.rmtree(_run_folder(run_id), ignore_errors=True)
    artifacts.remove([_run_key(run_id)])  # and its copies under a shared SPARSITY_ARTIFACTS root


def _back_to_queue(s: Session, run_id: int, where: list, message: str, attempts=Run.attempts) -> bool:
    """Put run `run_id` back to `queued` if it matches `where`, without its claim or partial results."""
    done = s.execute(update(Run).where(*where).values(
        status="queued", claim_token=None, worker=None, child_pid=None, progress=0.0, started_at=None,
        heartbeat_at=None, message=message, attempts=attempts)).rowcount == 1
    if done:
        _remove_partial_results(s, run_id)
    return done


def requeue_run(run_id: int, token: str, reason: str) -> bool:
    """A graceful stop (SIGTERM or Ctrl-C of the worker): the running run goes back to the queue,
    its message `reason`, its partial metrics and artifacts removed, and the attempt not counted
    (attempts - 1). Only the claim `token` can do it; returns whether it did."""
    with session() as s:
        done = _back_to_queue(s, run_id, _owned(run_id, token), reason, attempts=Run.attempts - 1)
        s.commit()
        return done


def _orphan(s: Session, run: Run, where: list, requeue_message: str, fail_error: str) -> Optional[Orphan]:
    """The orphan policy for one run whose worker is gone: re-queued if it has run fewer than
    MAX_ATTEMPTS times, else failed. `where` also holds the staleness test, re-checked in the UPDATE:
    a run that heartbeated (or ended) meanwhile matches nothing and is left alone (None)."""
    run_id, worker, child_pid = run.id, run.worker, run.child_pid  # before the UPDATE refreshes `run`
    where = [Run.id == run_id, Run.status == "running", *where]
    if _back_to_queue(s, run_id, [*where, Run.attempts < MAX_ATTEMPTS], requeue_message):
        return Orphan(run_id, worker, child_pid, "requeued")
    failed = s.execute(update(Run).where(*where, Run.attempts >= MAX_ATTEMPTS).values(
        status="failed", finished_at=utcnow(), error=fail_error)).rowcount == 1
    return Orphan(run_id, worker, child_pid, "failed") if failed else None


def _apply_orphan_policy(s: Session, runs: list[Run], where: list, requeue_message: str,
                         fail_error: Callable[[Run], str]) -> list[Orphan]:
    orphans = [_orphan(s, run, where, requeue_message, fail_error(run)) for run in runs]
    s.commit()
    return [o for o in orphans if o is not None]


def forget_worker_process(host: str, pid: int, error: str) -> list[Orphan]:
    """A worker process died without cleaning up (kill -9): drop its liveness rows, so nobody counts
    it as alive, and apply the orphan policy to the runs it held at once instead of after the orphan
    timeout: re-queued once (message "re-queued: <error>"), failed the second time (error "<error>
    (attempt 2: not re-queued again)"). Worker ids are "host:pid:n" (sparsity_core.jobs.worker)."""
    prefix = f"{host}:{pid}:"
    held = [Run.worker.startswith(prefix, autoescape=True)]
    with session() as s:
        s.execute(delete(Worker).where(Worker.id.startswith(prefix, autoescape=True)))
        runs = list(s.scalars(select(Run).where(Run.status == "running", *held).order_by(Run.id)
                              .with_for_update(skip_locked=True)))
        return _apply_orphan_policy(s, runs, held, f"re-queued: {error}",
                                    lambda run: f"{error} (attempt {run.attempts}: not re-queued again)")


def mark_orphans(stale_after_s: float) -> list[Orphan]:
    """Runs left `running` by a worker that stopped heartbeating for `stale_after_s`: re-queued
    once ("re-queued: its worker stopped heartbeating"), failed the second time ("orphaned: its
    worker stopped heartbeating twice"). Rows are locked SKIP LOCKED on PostgreSQL, so two workers
    recovering at once never both act on one run. Returns what was done, oldest run first."""
    stale = [Run.heartbeat_at < utcnow() - timedelta(seconds=stale_after_s)]
    with session() as s:
        runs = list(s.scalars(select(Run).where(Run.status == "running", *stale).order_by(Run.id)
                              .with_for_update(skip_locked=True)))
        return _apply_orphan_policy(s, runs, stale, "re-queued: its worker stopped heartbeating",
                                    lambda _run: "orphaned: its worker stopped heartbeating twice")


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
def add_metrics(run_id: int, rows: Iterable[dict[str, Any]], *, token: Optional[str] = None) -> bool:
    """rows: dicts with key, value and optional series, x. With `token`, nothing is written unless
    that claim still owns the running run (checked in the same transaction). Returns whether written."""
    items = [Metric(run_id=run_id, key=r["key"], series=r.get("series") or "",
                    x=None if r.get("x") is None else float(r["x"]), value=float(r["value"]))
             for r in rows]
    with session() as s:
        if not _hold(s, run_id, token):
            s.rollback()
            return False
        s.add_all(items)
        s.commit()
        return True


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
    return artifacts.sha256_of(Path(path))


def add_artifact(run_id: int, name: str, path: Path, kind: str, token: Optional[str] = None) -> Optional[int]:
    """Record a file (or a directory, e.g. a save_pretrained folder) the run wrote. With `token`,
    nothing is recorded (None) unless that claim still owns the running run."""
    if token is not None and not _claim_holds(run_id, token):
        return None  # a stale child: do not even upload
    key, sha256, size = artifacts.store(Path(path))  # uploaded when SPARSITY_ARTIFACTS is shared
    with session() as s:
        if not _hold(s, run_id, token):  # re-checked under the row lock, with the insert
            s.rollback()
            return None
        row = Artifact(run_id=run_id, name=name, kind=kind, path=key, sha256=sha256, bytes=size)
        s.add(row)
        s.commit()
        return row.id


def _claim_holds(run_id: int, token: str) -> bool:
    with session() as s:
        return s.scalar(select(Run.id).where(*_owned(run_id, token))) is not None


def list_artifacts(run_id: int) -> list[Artifact]:
    with session() as s:
        return list(s.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)))


def artifact_path(run_id: int, name: str) -> Path:
    """A local, sha256-checked path of a run's artifact by name (downloaded from a shared artifact
    root when this node lacks it); KeyError if the run has none of that name, ArtifactError when
    no intact copy exists."""
    for art in list_artifacts(run_id):
        if art.name == name:
            return artifacts.local_path(art.path, art.sha256)
    raise KeyError(f"run {run_id} has no artifact {name!r}")


# ---------------------------------------------------------------- workers
def worker_heartbeat(worker_id: str, current_run_id: Optional[int] = None, *,
                     info: Optional[dict[str, Any]] = None) -> None:
    """The worker is alive (and busy with `current_run_id`); `info` replaces what it says of itself."""
    with session() as s:
        row = s.get(Worker, worker_id)
        if row is None:
            s.add(Worker(id=worker_id, current_run_id=current_run_id, info=info or {}))
        else:
            row.heartbeat_at = utcnow()
            row.current_run_id = current_run_id
            if info is not None:
                row.info = info
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
