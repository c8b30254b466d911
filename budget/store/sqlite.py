"""SQLite storage for the ledger: WAL, synchronous=FULL, one host.

Safe with several OS processes on one file (gunicorn workers): every
check-and-write runs in one ``BEGIN IMMEDIATE`` transaction, which takes the
database's single write lock before reading, so two processes can never both
see the same remaining budget. Amounts are stored as exact TEXT fractions
(``"1/10"``); a CHECK constraint refuses anything else (``0.1``, REALs).

Connections are per thread and per process: a Store opened before ``fork``
opens a fresh connection in the child (SQLite connections must not cross a
fork). Every transaction first checks that the file at the configured path is
still the file opened (same device and inode): a ledger moved away or
replaced while the service runs makes requests fail (``LedgerUnavailable``),
never land in a file nobody reads.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from budget.errors import LedgerFileError, LedgerMissing, LedgerUnavailable
from budget.store.common import IDENTITY_VERSION, SCHEMA_VERSION, utc_now

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

_V3 = """
CREATE TABLE ledger_meta (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    ledger_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

#: MIGRATIONS[i] takes the schema from user_version i to i + 1.
MIGRATIONS: list[str] = [_V1, _V2, _V3]
assert len(MIGRATIONS) == SCHEMA_VERSION


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A ``BEGIN IMMEDIATE`` transaction on `conn`: committed on success, else rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SQLiteConnection(sqlite3.Connection):
    """A connection that speaks the ledger's few dialect hooks (see postgres.py)."""

    for_update = ""  # BEGIN IMMEDIATE already holds the only write lock

    def lock_charge(self, partner_id: str, dataset: str) -> None:
        """Nothing to do: the transaction holds the file's single write lock."""

    def lock_admin(self) -> None:
        """Nothing to do: the transaction holds the file's single write lock."""


class SQLiteStore:
    """One ledger file. Open once per process; methods are thread-safe.

    ``create=False`` opens only an existing, initialised ledger (else
    ``LedgerMissing``); ``create=True`` makes the file and its schema if absent.
    An existing ledger with an older schema is migrated at open.
    """

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False):
        self.path = Path(path)
        self.location = str(self.path)
        self._local = threading.local()
        self._stale: list[sqlite3.Connection] = []
        if not create and not self.path.is_file():
            raise LedgerMissing(self.location)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(mode=0o600)  # an empty file is an empty SQLite database
        try:
            #: schema version found at open (migrated since if older)
            self.migrated_from, _ = self._migrate(create)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise LedgerFileError(f"ledger {self.path} cannot be opened: {exc}") from exc
        except LedgerFileError:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, factory=SQLiteConnection,
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
        """This thread's connection, reopened after a fork; the file must still be ours."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            if conn is not None:
                self._stale.append(conn)  # never close a connection inherited across fork
            self._local.conn = None
            try:
                identity = _file_identity(self.path)
            except FileNotFoundError:
                raise LedgerMissing(self.location) from None
            conn = self._connect()
            self._local.conn, self._local.pid, self._local.file = conn, os.getpid(), identity
        elif _safe_identity(self.path) != self._local.file:
            raise LedgerUnavailable(
                f"ledger file {self.path} was moved, replaced or deleted while in use; "
                f"nothing was charged. Restore the file and restart the service")
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, else rolled back."""
        with _unavailable_on_error(self.path), immediate(self.connection()) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one consistent snapshot."""
        with _unavailable_on_error(self.path):
            conn = self.connection()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def _migrate(self, create: bool) -> tuple[int, int]:
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and not create:
                raise LedgerMissing(self.location, "the file exists but holds no ledger")
            if version > SCHEMA_VERSION:
                raise LedgerFileError(
                    f"ledger {self.path} has schema version {version}, newer than this "
                    f"code ({SCHEMA_VERSION}); upgrade dpquery"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[step]):
                    conn.execute(statement)
                if step + 1 == IDENTITY_VERSION:
                    conn.execute("INSERT INTO ledger_meta (singleton, ledger_id, created_at)"
                                 " VALUES (1, ?, ?)", (str(uuid.uuid4()), utc_now()))
                conn.execute(f"PRAGMA user_version = {step + 1}")
        return version, SCHEMA_VERSION

    def migrate(self) -> tuple[int, int]:
        """Apply pending migrations (done at open too): (version before, version now)."""
        return self._migrate(create=False)

    def schema_version(self) -> int:
        with self.read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    def ledger_id(self) -> str:
        with self.read() as conn:
            return conn.execute("SELECT ledger_id FROM ledger_meta").fetchone()[0]

    def integrity_check(self) -> str:
        with self.read() as conn:
            return conn.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection (if opened in this process)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None


@contextmanager
def _unavailable_on_error(path: Path) -> Iterator[None]:
    """SQLite failing to reach its file (I/O, locked past the timeout) -> LedgerUnavailable."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise LedgerUnavailable(f"ledger {path} cannot be used right now ({exc}); "
                                f"nothing was charged, retry later") from exc


def _file_identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _safe_identity(path: Path) -> tuple[int, int] | None:
    try:
        return _file_identity(path)
    except OSError:
        return None


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their BEGIN..END)."""
    out, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out
