"""The store's schema: runs, their metrics (long format) and their artifacts, plus worker liveness.

One row in `runs` is one job from submit to its end. Status is a column the worker writes, never a
guess from pid files or logs. `metrics` is long format (run, key, series, x, value) so every lab
writes the same shape and every figure reads it the same way.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # naive UTC: SQLite keeps no zone


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Run(Base):
    __tablename__ = "runs"
    # AUTOINCREMENT: SQLite would otherwise give a deleted run's id (the max rowid) to the next run,
    # and an old share link `/<lab>?run=ID` would silently show another run. PostgreSQL ignores it:
    # its sequences never hand a number out twice.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[Optional[str]] = mapped_column(String(200))
    notes: Mapped[Optional[str]] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(500), index=True)
    method: Mapped[Optional[str]] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]
    spec_version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    parent_run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[Optional[datetime]]
    finished_at: Mapped[Optional[datetime]]
    heartbeat_at: Mapped[Optional[datetime]]
    worker: Mapped[Optional[str]] = mapped_column(String(200))  # "host:pid" of the claiming worker
    child_pid: Mapped[Optional[int]]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    progress: Mapped[float] = mapped_column(default=0.0)
    message: Mapped[Optional[str]] = mapped_column(Text)
    error: Mapped[Optional[str]] = mapped_column(Text)
    traceback: Mapped[Optional[str]] = mapped_column(Text)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)  # run-level facts: eval setup, device
    # the claim that owns a running run (uuid4 hex, new at every claim): job writes and the final
    # status carry it, so a stale child of an earlier claim can never write after it was re-queued
    claim_token: Mapped[Optional[str]] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")  # claims that ran; 2: no re-queue

    # lazy="raise": rows leave their session (db/repo.py), so a relationship is loaded by the
    # function that says it is (`repo.get_run_with_artifacts`) or touching it fails loudly, at once
    metrics: Mapped[list["Metric"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )
    artifacts: Mapped[list["Artifact"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, lazy="raise",
        order_by="Artifact.id",
    )

    @property
    def duration_s(self) -> Optional[float]:
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return (end - self.started_at).total_seconds()


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_key", "run_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    series: Mapped[str] = mapped_column(String(200), default="")
    x: Mapped[Optional[float]]
    value: Mapped[float]

    run: Mapped[Run] = relationship(back_populates="metrics", lazy="raise")


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # safetensors | parquet | json | dir
    path: Mapped[str] = mapped_column(Text)  # relative to SPARSITY_HOME
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)  # a 1.7B-parameter folder is over 2**31 bytes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="artifacts", lazy="raise")


class Worker(Base):
    """One row per worker process, so the sidebar can say whether anything will pick up a run."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # "host:pid"
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    current_run_id: Mapped[Optional[int]]
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)  # executor facts: the Ray cluster's resources
