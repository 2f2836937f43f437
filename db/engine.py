"""Engine and sessions for the store. `SPARSITY_DB_URL` picks the database; the default is SQLite
under SPARSITY_HOME in WAL mode with a busy timeout, so the app, the worker and its job children can
all write to one file. The schema is created and upgraded by Alembic (db/migrations)."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATE_LOCK_KEY = 0x53504152534954  # "SPARSIT": the PostgreSQL advisory lock migrations take
BUSY_TIMEOUT_MS = 30_000  # writers wait for each other rather than fail with "database is locked"
_migrate_lock = threading.Lock()


def database_url() -> str:
    url = os.environ.get("SPARSITY_DB_URL")
    if url:
        return url
    from sparsity_core.paths import home

    return f"sqlite:///{home() / 'sparsity.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL and process, with the schema migrated to head."""
    return _engine(url or database_url())


@lru_cache(maxsize=16)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


def make_engine(url: str) -> Engine:
    """An engine with the store's connection settings, schema untouched (get_engine migrates)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre-ping: a server restart or an idle timeout costs one retried checkout, not a failed write;
    # recycle: connections older than 30 min are replaced before a proxy or firewall drops them;
    # connect_timeout: a wrong host fails in 10 s with one line instead of hanging the page
    return create_engine(url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=10,
                         connect_args={"connect_timeout": 10})


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, Alembic's head by default (a no-op when it is there already).

    On SQLite the upgrade is one BEGIN IMMEDIATE transaction: processes that start together (app,
    worker, job children) migrate one after another, each re-reading the revision under the lock,
    and a crash half-way leaves the old schema whole. Foreign keys are off meanwhile (the pragma only
    takes effect outside a transaction) because a table rebuild (0002) drops the old table, and
    dropping `runs` with them on would cascade into metrics and artifacts; foreign_key_check then
    proves every reference survived before the commit. On PostgreSQL the upgrade is one transaction
    too (its DDL is transactional) that first takes `pg_advisory_xact_lock`: processes starting
    together migrate one after another, and the lock ends with the transaction, even on a crash."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    target = ScriptDirectory.from_config(cfg).get_revision(revision).revision
    sqlite = engine.dialect.name == "sqlite"
    with _migrate_lock, engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == target:
            return
        conn.commit()  # end the read's implicit transaction, so the pragma below takes effect
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK_KEY})")
        try:
            if MigrationContext.configure(conn).get_current_revision() != target:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
            if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").first()):
                raise RuntimeError(f"migration to {target} broke a foreign key: {tuple(broken)}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def session(url: str | None = None) -> Session:
    return sessionmaker(get_engine(url), expire_on_commit=False)()


def table_names(url: str | None = None) -> list[str]:
    return inspect(get_engine(url)).get_table_names()
