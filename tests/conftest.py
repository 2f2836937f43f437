"""Shared fixtures: every test gets its own SPARSITY_HOME and SQLite store in a temp folder."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch, shared_cache):
    """A fresh, migrated store under tmp_path; yields SPARSITY_HOME.

    Model caches are shared across tests (SPARSITY_CACHE), so digits-mlp trains once."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SPARSITY_HOME", str(home))
    monkeypatch.setenv("SPARSITY_DB_URL", f"sqlite:///{home / 'sparsity.db'}")
    monkeypatch.setenv("SPARSITY_CACHE", str(shared_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    yield home


@pytest.fixture(autouse=True)
def one_thread():
    """Tests use tiny tensors: on one thread they skip OpenMP barrier stalls, which on a shared,
    oversubscribed 2-core CPU made small ops 4x slower (log_softmax on 12x3: 10 ms vs 3 us).
    The previous setting is restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- PostgreSQL, for real
@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One throwaway PostgreSQL server for the whole session (db/pgserver.py), removed afterwards.
    Without the binaries the tests that need it skip, unless SPARSITY_REQUIRE_PG=1 (CI): then fail."""
    import os

    from db import pgserver

    if pgserver.binaries() is None:
        reason = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        if os.environ.get("SPARSITY_REQUIRE_PG") == "1":
            pytest.fail(f"SPARSITY_REQUIRE_PG=1 but {reason}")
        pytest.skip(reason)
    server = pgserver.start(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


_databases = iter(range(1, 10**9))


@pytest.fixture
def pg_url(pg_server, store, monkeypatch):
    """A fresh, empty database on the session's server, made the store (SPARSITY_DB_URL)."""
    url = pg_server.create_database(f"test_{next(_databases)}")
    monkeypatch.setenv("SPARSITY_DB_URL", url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, store):
    """Runs the test once on SQLite (the autouse `store`) and once on a fresh PostgreSQL database."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    import os

    return os.environ["SPARSITY_DB_URL"]
