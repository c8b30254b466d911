"""Settings for tests: the shipped config.toml pointed at test data (import by name)."""
from __future__ import annotations

import copy
import tomllib
from contextlib import contextmanager
from pathlib import Path

from dpquery import config

ROOT = Path(__file__).resolve().parent.parent


def shipped_config() -> dict:
    return tomllib.loads((ROOT / "config.toml").read_text())


def make_settings(tmp: Path, data: Path, **dataset_overrides) -> config.Settings:
    """The shipped config pointed at `data`, with a ledger in `tmp`."""
    raw = copy.deepcopy(shipped_config())
    raw["ledger"]["path"] = str(tmp / "ledger.db")
    ds = raw["datasets"]["purchases"]
    ds["path"] = str(data)
    for key, value in dataset_overrides.items():
        section, _, name = key.rpartition("__")
        (ds[section] if section else ds)[name] = value
    return config.from_dict(raw, base=tmp)


@contextmanager
def open_service(settings: config.Settings):
    """The service over `settings` and its SQLite ledger, closed afterwards."""
    from budget.ledger import Ledger
    from dpquery.service import Service
    ledger = Ledger(settings.ledger_path)
    try:
        yield Service.open(settings, ledger)
    finally:
        ledger.close()
