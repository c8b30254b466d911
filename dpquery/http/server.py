"""`dpquery serve`: the Flask app under gunicorn, several worker processes.

`preload_app=False`: each worker builds its own app after the fork, so each
has its own SQLite connection to the ledger and its own data scan. The ledger
(SQLite, WAL, BEGIN IMMEDIATE) keeps charges right across workers.

Demo data is written only when asked (`dpquery serve --demo`, as `make run`
does), only for the dataset `[demo] dataset` names and only under the ledger's
folder (`var/demo/...`): a mistyped path never receives made-up data. Any
other dataset whose data is missing stops start-up with a message naming it.
The ledger is never created silently (dpquery/ledger_access.py): a missing or
replaced one stops start-up. Only the demo's first start (`--demo`, no ledger
file and no recorded ledger id) makes one, with a demo partner and an admin
key, written to `demo-keys.txt` next to the ledger (mode 600) and printed once.

Workers run `dpquery.http.worker.Worker`: they die with their master, and
gunicorn's own refusals (oversized headers) get the JSON error shape.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from gunicorn.app.base import BaseApplication

from budget.amounts import Amount
from budget.errors import LedgerError
from dpquery.config import is_uri
from dpquery.errors import ConfigError

DEMO_PARTNER = "IFA Insurance"
DEMO_PURPOSES = ["pricing research"]
DEMO_EPSILON = 10


class _Gunicorn(BaseApplication):
    def __init__(self, settings, options: dict):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            if name in self.cfg.settings:  # older gunicorn lacks e.g. control_socket_disable
                self.cfg.set(name, value)

    def load(self):
        from dpquery.http.app import create_app
        return create_app(self.settings)  # runs in each worker, after the fork


def run_server(settings, host: str | None = None, port: int | None = None,
               workers: int | None = None, demo: bool = False) -> None:
    """Serve until SIGTERM/SIGINT (gunicorn stops workers gracefully)."""
    from dpquery.http.app import runtime_path
    from dpquery.http.shared_store import SharedStore
    server = settings.server
    host, port = host or server["host"], port or server["port"]
    check_data(settings, demo)
    prepare_demo(settings, f"http://{host}:{port}", demo)
    prepare_tables(settings)
    SharedStore(runtime_path(settings)).create()  # before the fork: workers only open it
    options = {
        "bind": f"{host}:{port}",
        "workers": workers or server["workers"],
        "worker_class": "dpquery.http.worker.Worker",  # sync, dies with the master
        "preload_app": False,
        # A backstop only: a query stops at query_timeout_seconds (504, dpquery.deadline);
        # gunicorn kills a worker silent for longer (its charge stays).
        "timeout": int(server["query_timeout_seconds"]) + 30,
        "graceful_timeout": 10,
        "accesslog": "-",
        "errorlog": "-",
        "limit_request_line": 8190,
        "proc_name": "dpquery",
        # gunicorn 24+ opens a control socket in $HOME by default; two servers would share it.
        "control_socket_disable": True,
    }
    _Gunicorn(settings, options).run()


def prepare_tables(settings) -> None:
    """Bound every dataset once per data version before any worker starts (see prepare.py).

    `dpquery prepare` in a child process: workers would otherwise prepare
    inside gunicorn's boot timeout, and the master never loads DuckDB or Spark
    before it forks. Settings built without a file (tests) skip this: workers
    then prepare on first use.
    """
    if settings.source is None:
        return
    done = subprocess.run([sys.executable, "-m", "dpquery.cli", "--config", str(settings.source),
                           "prepare"])
    if done.returncode != 0:
        raise SystemExit("dpquery serve: preparing the datasets failed (see the message above)")


def check_data(settings, demo: bool) -> None:
    """Every dataset has data, or start-up stops; `demo` writes the demo dataset's if missing."""
    for ds in settings.datasets.values():
        if is_uri(ds.path) or _has_data(ds.path):  # a URI: Spark checks when it prepares
            continue
        if not (demo and is_demo_dataset(settings, ds)):
            raise ConfigError(_missing_data(settings, ds, demo))
        print(f"no data at {ds.path}: writing demo data "
              f"({settings.demo['customers']:,} customers)", flush=True)
        _write_demo_elsewhere(ds.path, settings.demo["customers"], settings.demo["seed"])


def is_demo_dataset(settings, ds) -> bool:
    """The dataset `[demo] dataset` names, with its path under the ledger's demo/ folder."""
    demo_dir = (settings.ledger_path.parent / "demo").resolve()
    return ds.name == settings.demo["dataset"] and ds.path.resolve().is_relative_to(demo_dir)


def _missing_data(settings, ds, demo: bool) -> str:
    where = f"datasets.{ds.name}.path"
    hint = (f"demo data is written only for the dataset [demo] dataset names "
            f"({settings.demo['dataset']!r}), under {settings.ledger_path.parent / 'demo'}"
            if demo else "`dpquery serve --demo` writes demo data for the demo dataset")
    return (f"{where}: no data at {ds.path} (expected a Parquet file, a folder of *.parquet "
            f"files or a CSV file); fix the path in the config, or put the data there. {hint}")


def prepare_demo(settings, url: str, demo: bool = False) -> None:
    """Open the existing ledger, or on the demo's first start make one with a demo partner.

    Never a silent new ledger (dpquery/ledger_access.py): a missing or replaced
    one stops start-up; only `--demo` on a first start (no SQLite file, no
    recorded ledger id) creates one, with a demo partner and an admin key.
    """
    from dpquery.ledger_access import init_configured, is_first_start, open_configured
    try:
        if not (demo and is_first_start(settings)):
            open_configured(settings).close()  # checked before gunicorn forks
            return
        ledger, _ = init_configured(settings)
    except LedgerError as exc:
        raise SystemExit(f"dpquery serve: {exc}") from None
    with ledger:  # closed before gunicorn forks
        budgets = {name: Amount(epsilon=DEMO_EPSILON) for name in settings.datasets}
        pid, partner_key = ledger.create_partner(
            DEMO_PARTNER, budgets, None, DEMO_PURPOSES, actor="dpquery serve",
            reason="demo partner made on first start")
        admin_key = ledger.create_admin_key(actor="dpquery serve")
    path = write_keys(settings.ledger_path.parent / "demo-keys.txt", pid, partner_key, admin_key)
    print(demo_banner(pid, partner_key, admin_key, path, url, _first_query(settings)), flush=True)


def _first_query(settings) -> str:
    """The first dataset's configured example_sql, or a count over it."""
    ds = next(iter(settings.datasets.values()), None)
    if ds is None:
        return "SELECT COUNT(*) AS n FROM <dataset>"
    return ds.example_sql or f"SELECT COUNT(*) AS n FROM {ds.name}"


def _write_demo_elsewhere(path: Path, customers: int, seed: int) -> None:
    """write_demo in a spawned process: the gunicorn master must never load polars.

    Workers are forked from the master, also later when gunicorn replaces a dead
    one; a fork of a process whose polars thread pool has run can deadlock.
    """
    done = subprocess.run([sys.executable, "-m", "dpquery.cli", "demo-data", "--customers",
                           str(customers), "--seed", str(seed), "--out", str(path)])
    if done.returncode != 0:
        raise SystemExit(f"writing the demo data to {path} failed (exit {done.returncode})")


def _has_data(path: Path) -> bool:
    if path.is_dir():
        return any(path.glob("*.parquet"))
    return path.exists()


def write_keys(path: Path, partner_id: str, partner_key: str, admin_key: str) -> Path:
    """Write the demo keys, readable by the owner only (shell-sourceable)."""
    text = (f"# dpquery demo keys, made on first start; partner {partner_id}\n"
            f"DPQUERY_KEY={partner_key}\nDPQUERY_ADMIN_KEY={admin_key}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def demo_banner(partner_id: str, partner_key: str, admin_key: str, path: Path, url: str,
                sql: str) -> str:
    body = json.dumps({"sql": sql, "epsilon": 0.5})
    curl = (f"curl -s {url}/v1/queries -H {shlex.quote('Authorization: Bearer ' + partner_key)}"
            f" -H 'Content-Type: application/json' -d {shlex.quote(body)}")
    return "\n".join([
        "", "=" * 72,
        f"First start: demo partner {partner_id!r} (epsilon {DEMO_EPSILON} per dataset) "
        "and an admin key.",
        f"Shown once; also saved (mode 600) to {path}", "",
        f"  partner key: {partner_key}", f"  admin key:   {admin_key}", "",
        "Try it:", f"  {curl}", "=" * 72, ""])
