"""SQLite storage for the ledger: WAL, synchronous=FULL, migrations at open.

Safe with several OS processes on one file (gunicorn workers): every
check-and-write runs in one ``BEGIN IMMEDIATE`` transaction, which takes the
database's single write lock before reading, so two processes can never both
see the same remaining budget. Amounts are stored as exact TEXT fractions
(``"1/10"``); a CHECK constraint refuses anything else (``0.1``, REALs).

Connections are per thread and per process: a Store opened before ``fork``
opens a fresh connection in the child (SQLite connections must not cross a
fork).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from budget.amounts import Amount, amount_from_text
from budget.errors import LedgerFileError

BUSY_TIMEOUT_MS = 60_000


def _amount_columns(prefix: str = "") -> str:
    return ", ".join(
        f"{prefix}{c} TEXT NOT NULL DEFAULT '0' CHECK ({prefix}{c} GLOB '[0-9]*'"
        f" AND {prefix}{c} NOT GLOB '*[^0-9/]*')"
        for c in ("epsilon", "delta", "rho")
    )


_V1 = f"""
CREATE TABLE partners (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    has_cap INTEGER NOT NULL DEFAULT 0,
    {_amount_columns("cap_")},
    purposes TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL
);
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('partner', 'admin')),
    partner_id TEXT REFERENCES partners(id),
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE balances (
    partner_id TEXT NOT NULL REFERENCES partners(id),
    dataset TEXT NOT NULL,
    {_amount_columns("budget_")},
    {_amount_columns("spent_")},
    PRIMARY KEY (partner_id, dataset)
);
CREATE TABLE global_caps (
    dataset TEXT PRIMARY KEY,
    has_cap INTEGER NOT NULL DEFAULT 0,
    {_amount_columns("cap_")},
    {_amount_columns("spent_")}
);
CREATE TABLE reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id TEXT NOT NULL REFERENCES partners(id),
    dataset TEXT NOT NULL,
    request_id TEXT NOT NULL,
    query_text TEXT NOT NULL,
    {_amount_columns()},
    status TEXT NOT NULL CHECK (status IN ('HELD', 'COMMITTED', 'RELEASED')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    answer TEXT,
    UNIQUE (partner_id, request_id)
);
CREATE INDEX reservations_by_dataset ON reservations (partner_id, dataset, status);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    partner_id TEXT,
    dataset TEXT,
    request_id TEXT,
    query_text TEXT,
    {_amount_columns()},
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_partner ON audit (partner_id, at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only: rows cannot be updated'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only: rows cannot be deleted'); END;
"""

_V2 = """
CREATE INDEX reservations_by_query ON reservations (partner_id, query_text);
"""

#: MIGRATIONS[i] takes the schema from user_version i to i + 1.
MIGRATIONS: list[str] = [_V1, _V2]
SCHEMA_VERSION = len(MIGRATIONS)


def utc_now() -> str:
    """Current time as a UTC ISO-8601 string with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def amount_params(amount: Amount) -> tuple[str, str, str]:
    """The exact TEXT form of an amount, in column order epsilon, delta, rho."""
    return (str(amount.epsilon), str(amount.delta), str(amount.rho))


def amount_from_row(row: sqlite3.Row, prefix: str = "") -> Amount:
    """Read the three TEXT fraction columns ``{prefix}epsilon`` ... of a row."""
    return amount_from_text(row[f"{prefix}epsilon"], row[f"{prefix}delta"], row[f"{prefix}rho"])


class Store:
    """One ledger file. Open once per process; methods are thread-safe."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._local = threading.local()
        self._stale: list[sqlite3.Connection] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise LedgerFileError(f"ledger {self.path} cannot be opened: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=True)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise LedgerFileError(f"ledger {self.path} could not switch to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, reopened after a fork."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            if conn is not None:
                self._stale.append(conn)  # never close a connection inherited across fork
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, else rolled back."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one consistent snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerFileError(
                    f"ledger {self.path} has schema version {version}, newer than this "
                    f"code ({SCHEMA_VERSION}); upgrade dpquery"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[step]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step + 1}")

    def schema_version(self) -> int:
        return self.connection().execute("PRAGMA user_version").fetchone()[0]

    def integrity_check(self) -> str:
        return self.connection().execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection (if opened in this process)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their BEGIN..END)."""
    out, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out
