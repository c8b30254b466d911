"""Fixtures for the HTTP layer: a small demo dataset, a ledger, an app, keys."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from budget import Amount, Ledger
from dpquery import config
from dpquery.http.app import create_app
from dpquery.demo import write_demo

ROOT = Path(__file__).resolve().parents[2]
SNACKS = ("SELECT region, PURCHASE_RATE(category = 'snacks') AS snack_rate "
          "FROM purchases GROUP BY region")
COUNT = "SELECT age_band, COUNT(*) AS n FROM purchases GROUP BY age_band"


@pytest.fixture(scope="session")
def data_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "purchases"
    write_demo(path, customers=2000)
    return path


def raw_config(data_path: Path, ledger_path: Path, **server) -> dict:
    """config.toml's structure with test paths (and server overrides)."""
    raw = tomllib.loads((ROOT / "config.toml").read_text())
    raw["datasets"]["purchases"]["path"] = str(data_path)
    raw["ledger"]["path"] = str(ledger_path)
    raw["server"].update(server)
    raw["demo"]["customers"] = 2000
    return raw


@pytest.fixture
def settings(data_path, tmp_path):
    return config.from_dict(raw_config(data_path, tmp_path / "ledger.db"), base=tmp_path)


@pytest.fixture
def ledger(settings):
    with Ledger(settings.ledger_path) as led:
        yield led


@pytest.fixture
def partner(ledger):
    """(partner_id, key) with epsilon 3 on purchases and two approved purposes."""
    return ledger.create_partner("IFA", budgets={"purchases": Amount(epsilon=3)},
                                 purposes=["pricing research", "actuarial review"],
                                 actor="test", reason="fixture")


@pytest.fixture
def admin_key(ledger):
    return ledger.create_admin_key(actor="test")


@pytest.fixture
def app(settings, ledger):
    """The app; every JSON response it gives is checked against /openapi.json."""
    from .contract import install
    app = create_app({"TESTING": True, "SETTINGS": settings, "LEDGER": ledger,
                      "TIME_QUANTUM_SECONDS": 0.01})
    install(app)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def epsilon_spent(ledger, partner_id: str) -> Amount:
    return ledger.spent(partner_id, "purchases")
