"""Shared fixtures: a small demo dataset and settings built from a dict."""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from dpquery import config
from dpquery.demo import write_demo

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


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """About 120k rows for 2,000 customers, made once per test session."""
    out = tmp_path_factory.mktemp("demo") / "purchases"
    write_demo(out, customers=2000, seed=11)
    return out


@pytest.fixture()
def settings(tmp_path, demo_data) -> config.Settings:
    return make_settings(tmp_path, demo_data)
