"""A real `dpquery serve` (gunicorn) in a subprocess, for end-to-end and security tests.

Loopback only, a free port, its own process group; `stop()` always ends it
(and any orphaned worker, by process group). Import by name:
`from server_helpers import Server`.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, customers: int = 2000, data: Path | None = None,
                 **server) -> Path:
    """The shipped config.toml with small demo data, `[server]` overrides, optional data path."""
    text = (ROOT / "config.toml").read_text()
    assert "customers = 20000" in text and "\n[server]\n" in text
    text = text.replace("customers = 20000", f"customers = {customers}")
    for key, value in server.items():
        text = re.sub(rf"(?m)^{key}\s*=.*\n", "", text)
        text = text.replace("\n[server]\n", f"\n[server]\n{key} = {_toml(value)}\n", 1)
    if data is not None:
        text, n = re.subn(r'(?m)^path = "var/demo/purchases".*$', f"path = {_toml(str(data))}", text)
        assert n == 1
    path = tmp / "config.toml"
    path.write_text(text)
    return path


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


class Server:
    def __init__(self, tmp: Path, workers: int = 3, demo: bool = True, port: int | None = None,
                 config: Path | None = None, **server):
        self.tmp, self.port = tmp, port or free_port()
        self.config = config or write_config(tmp, **server)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{self.port}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "dpquery.cli", "--config", str(self.config), "serve",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        self.proc = subprocess.Popen(cmd + (["--demo"] if demo else []), stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)

    @property
    def var(self) -> Path:
        return self.tmp / "var"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if requests.get(self.url + "/healthz", timeout=5).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError("server did not start:\n" + self.output())

    def keys(self) -> tuple[str, str]:
        """(partner key, admin key) of the demo partner made on first start."""
        text = (self.var / "demo-keys.txt").read_text()
        keys = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.startswith("#"))
        return keys["DPQUERY_KEY"], keys["DPQUERY_ADMIN_KEY"]

    def wait_workers(self, n: int, timeout: float = 60) -> list[int]:
        """The master's worker pids once n of them run (a busy machine boots them slowly)."""
        deadline = time.monotonic() + timeout
        while len(self.workers()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.workers()

    def workers(self) -> list[int]:
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(p) for p in task.read_text().split()]
        return pids

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:  # whatever is left of its process group (orphaned workers)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


def running(tmp, **options):
    """A started server with its demo keys read (a generator for module fixtures)."""
    srv = Server(tmp, **options)
    try:
        srv.wait_ready()
        srv.partner_key, srv.admin_key = srv.keys()
        yield srv
    finally:
        srv.stop()

