"""Helpers shared by the benchmarks."""
from __future__ import annotations

import copy
import tempfile
import tomllib
from pathlib import Path

from dpquery import config

ROOT = Path(__file__).resolve().parents[1]


def settings_for(data: Path, **dataset) -> config.Settings:
    """The shipped config.toml pointed at `data`, with a throwaway ledger."""
    raw = copy.deepcopy(tomllib.loads((ROOT / "config.toml").read_text()))
    raw["datasets"]["purchases"]["path"] = str(data)
    raw["datasets"]["purchases"].update(dataset)
    raw["ledger"]["path"] = str(Path(tempfile.mkdtemp()) / "ledger.db")
    return config.from_dict(raw, base=ROOT)
