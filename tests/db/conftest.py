"""The store's whole test suite runs twice: on SQLite and on a real PostgreSQL server."""

import pytest


@pytest.fixture(autouse=True)
def _both_databases(db_url):
    return db_url
