"""Every ledger test runs on both backends: a SQLite file and a PostgreSQL database.

The PostgreSQL cluster is made once per session (``tests/pg_helpers.py``);
each test gets a new database in it, dropped afterwards.
"""
from __future__ import annotations

import pytest

from pg_helpers import Cluster

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def location(backend, tmp_path, request):
    """Where a fresh ledger lives: a file path (SQLite) or a database URL (PostgreSQL)."""
    if backend == "sqlite":
        yield str(tmp_path / "ledger.db")
        return
    cluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture(scope="module", params=BACKENDS)
def shared_ledger(request, tmp_path_factory):
    """One ledger per backend for a whole module (tests that only add partners)."""
    from budget import Ledger
    if request.param == "sqlite":
        location = str(tmp_path_factory.mktemp("shared") / "ledger.db")
    else:
        cluster = request.getfixturevalue("pg_cluster")
        location = cluster.create_database()
    with Ledger(location) as ledger:
        yield ledger
    if request.param == "postgresql":
        cluster.drop_database(location)
