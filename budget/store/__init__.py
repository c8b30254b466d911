"""Ledger storage behind one interface: SQLite (one host) or PostgreSQL (several hosts).

``open_store(location, create=...)`` picks the backend from the location: a
``postgresql://`` (or ``postgres://``) URL, else a SQLite file path. Both
stores offer the same methods:

* ``write()`` / ``read()``: a transaction yielding a connection whose
  ``execute(sql, params)`` takes the ledger's ``?`` SQL and returns rows
  readable by name or position; its ``lock_charge(partner_id, dataset)``
  and ``lock_admin()`` make checks and writes atomic across processes and
  hosts, and ``for_update`` is the suffix that locks a row being changed;
* ``migrate()``, ``schema_version()``, ``ledger_id()``, ``integrity_check()``,
  ``close()``; ``backend`` and ``location`` (no password) name it.

``create=False`` (what the service uses) opens only an existing, initialised
ledger and raises ``LedgerMissing`` otherwise.
"""

from __future__ import annotations

import os

from typing import Any

from budget.store.common import (
    SCHEMA_VERSION, Row, amount_from_row, amount_params, utc_now,
)

#: A store transaction's connection (sqlite.SQLiteConnection or postgres.PostgresConnection).
Conn = Any

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith(POSTGRES_SCHEMES)


def open_store(location: str | os.PathLike[str], *, create: bool = False):
    """The store for a SQLite path or a PostgreSQL URL."""
    if is_postgres(location):
        from budget.store.postgres import PostgresStore  # psycopg only when configured
        return PostgresStore(str(location), create=create)
    from budget.store.sqlite import SQLiteStore
    return SQLiteStore(location, create=create)


def describe(location: str | os.PathLike[str]) -> str:
    """A location fit for messages: a path, or a URL without its password."""
    if is_postgres(location):
        from budget.store.postgres import redact
        return redact(str(location))
    return str(location)


__all__ = ["SCHEMA_VERSION", "Conn", "Row", "amount_from_row", "amount_params", "describe",
           "is_postgres", "open_store", "utc_now"]
