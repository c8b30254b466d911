"""State the gunicorn workers of one host share: rate-limit buckets, sign-in failures, web sessions.

A small SQLite file next to the ledger (`var/runtime.db`, WAL). Each write is one
short `BEGIN IMMEDIATE` transaction, so workers never double-count. It holds no
privacy state (the ledger is a separate file) and is written with
`synchronous=OFF`: a power cut can at worst reset the limits and sign web users out.
Each process opens its own connection, after the fork.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from budget.store.sqlite import immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    key TEXT PRIMARY KEY, tokens REAL NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS login_failures (
    scope TEXT PRIMARY KEY, failures INTEGER NOT NULL, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS web_sessions (
    sid_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL, created REAL NOT NULL);
"""
BUSY_MS = 5000


class SharedStore:
    """One SQLite connection per process; `write()` is one serialised transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    def create(self) -> "SharedStore":
        """Make the file and its tables (the server does this once, before forking)."""
        with self.write():
            pass
        self.close()
        return self

    @contextmanager
    def write(self):
        """A `BEGIN IMMEDIATE` transaction: committed on success, rolled back on error."""
        with self._lock, immediate(self._connection()) as conn:
            yield conn

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share one across a fork
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=OFF")
            _retry_locked(lambda: conn.executescript(SCHEMA))
            self._conn, self._pid = conn, os.getpid()
        return self._conn


def _retry_locked(step, attempts: int = 50) -> None:
    """Switching to WAL or creating tables can meet another worker doing the same."""
    for attempt in range(attempts):
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)
