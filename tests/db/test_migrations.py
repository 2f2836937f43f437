"""Migrations keep what a store already holds: a store made at 0001 upgrades with every row."""

import pytest
from sqlalchemy import text

from db import repo
from db.engine import make_engine, migrate

RUN = ("INSERT INTO runs (id, kind, model, spec, spec_version, status, created_at, cancel_requested, progress, "
       "info, parent_run_id) VALUES (:id, 'prune', 'digits-mlp', '{}', 2, 'succeeded', '2025-01-01', 0, 1.0, "
       "'{}', :parent)")


def test_a_0001_store_upgrades_keeping_its_rows_then_never_reuses_ids(store, monkeypatch, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("the SQLite AUTOINCREMENT rebuild; PostgreSQL's upgrade: test_a_0001_store_upgrades_to_head")
    url = f"sqlite:///{store / 'old.db'}"
    old = make_engine(url)  # foreign keys on, as every connection of the app has them
    migrate(old, "0001")
    with old.begin() as conn:
        for run_id, parent in ((1, None), (2, 1), (3, 1)):
            conn.execute(text(RUN), {"id": run_id, "parent": parent})
        conn.execute(text("INSERT INTO metrics (run_id, key, series, value) VALUES (1, 'accuracy', '', 0.9), "
                          "(2, 'accuracy', '', 0.8), (3, 'accuracy', '', 0.7)"))
        conn.execute(text("INSERT INTO artifacts (run_id, name, kind, path, sha256, bytes, created_at) "
                          "VALUES (2, 'masks@0.5', 'safetensors', 'artifacts/run-000002/m', 'abc', 3, '2025-01-01')"))
        conn.execute(text("DELETE FROM runs WHERE id = 3"))  # deleted before the upgrade: nothing remembers it

    migrate(old)

    with old.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
        assert "AUTOINCREMENT" in conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'runs'")).scalar()
        assert conn.execute(text("SELECT id, parent_run_id FROM runs ORDER BY id")).all() == [(1, None), (2, 1)]
        assert conn.execute(text("SELECT run_id, value FROM metrics ORDER BY id")).all() == [(1, 0.9), (2, 0.8)]
        assert conn.execute(text("SELECT run_id, name FROM artifacts")).all() == [(2, "masks@0.5")]
        indexes = {row[0] for row in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' "
                                                       "AND tbl_name = 'runs'"))}
        assert {"ix_runs_kind", "ix_runs_model", "ix_runs_status"} <= indexes
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # the pooled connection got them back

    monkeypatch.setenv("SPARSITY_DB_URL", url)
    new = repo.create_run(kind="prune", model="digits-mlp", spec={}, spec_version=2)
    assert new == 3  # the largest id the store still held was 2
    repo.delete_run(new)
    assert repo.create_run(kind="prune", model="digits-mlp", spec={}, spec_version=2) == 4
    repo.delete_run(2)  # foreign keys work after the rebuild: its metrics and artifacts go with it
    assert repo.metrics_frame([2]).empty and repo.list_artifacts(2) == []


def test_migrating_at_head_is_a_no_op(store):
    engine = make_engine(f"sqlite:///{store / 'fresh.db'}")
    migrate(engine)
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"


def test_a_0001_store_upgrades_to_head(db_url):
    """On either database: 0001 with a started and a queued run -> head; the started one counts one
    attempt, the queued none, and both keep their rows; run ids come from the store, never reused."""
    engine = make_engine(db_url)
    migrate(engine, "0001")
    insert = ("INSERT INTO runs (kind, model, spec, spec_version, status, created_at, started_at, cancel_requested, "
              "progress, info) VALUES ('prune', 'digits-mlp', '{}', 2, :status, '2025-01-01', :started, false, 0.0, '{}')")
    with engine.begin() as conn:
        conn.execute(text(insert), {"status": "succeeded", "started": "2025-01-01"})
        conn.execute(text(insert), {"status": "queued", "started": None})
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
        assert conn.execute(text("SELECT id, status, attempts, claim_token FROM runs ORDER BY id")).all() == [
            (1, "succeeded", 1, None), (2, "queued", 0, None)]
    engine.dispose()
