"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a free loopback port.

Debian's ``postgresql`` package (``scripts/install_test_deps.sh``) puts the
server binaries in ``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses
to run as root, so under root (CI) the cluster belongs to the ``postgres``
system user (made if absent) and its commands run through ``runuser``.

Without the binaries, tests needing PostgreSQL fail with a clear message
when ``CI`` is set (a CI machine must test both ledgers) and skip elsewhere.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

USER = "postgres"


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def require_binaries() -> Path:
    found = bin_dir()
    if found is None:
        message = ("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; "
                   "install them with `bash scripts/install_test_deps.sh` (Debian package "
                   "`postgresql`)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner() -> list[str]:
    """Command prefix running as the cluster owner (``postgres`` when we are root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True)
    return ["runuser", "-u", USER, "--"]


class Cluster:
    """One PostgreSQL server in a temporary directory; ``stop()`` removes it."""

    def __init__(self, fsync: bool = False):
        self.bin = require_binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="dpq-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.prefix = _as_owner()
        if self.prefix:
            shutil.chown(self.dir, USER, USER)
        os.chmod(self.dir, 0o755)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--no-instructions", *([] if fsync else ["--no-sync"]))
        conf = [f"port = {self.port}", "listen_addresses = '127.0.0.1'",
                f"unix_socket_directories = '{self.dir}'", "max_connections = 60",
                "shared_buffers = 32MB"]
        if not fsync:
            conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        (self.data / "postgresql.auto.conf").write_text("\n".join(conf) + "\n")
        if self.prefix:
            shutil.chown(self.data / "postgresql.auto.conf", USER, USER)
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.prefix, str(self.bin / tool), *args],
                              capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                  "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-m", "fast", "-w", "-t", "60", "restart")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); returns its URL."""
        import psycopg
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'
                         + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_execute(location: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run SQL on the ledger's database directly (bypassing the ledger); committed."""
    if location.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(location, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    conn = sqlite3.connect(location, isolation_level=None)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def raw_error(location: str) -> type[Exception]:
    """The driver's base error class for ``location``."""
    if location.startswith("postgresql://"):
        import psycopg
        return psycopg.Error
    return sqlite3.DatabaseError
