"""Fixtures for the web console tests: a small demo dataset, a ledger and a Flask app."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask

from budget.amounts import Amount
from dpquery import demo
from settings_helpers import open_service
from web_helpers import make_app, make_settings

CUSTOMERS = 2000


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("web-data") / "data"
    demo.write_demo(out, customers=CUSTOMERS)
    return out


@pytest.fixture
def stack(tmp_path, demo_data):
    """Service + ledger with one partner (ε=1 on purchases) and an admin key."""
    with open_service(make_settings(tmp_path, demo_data)) as service:
        ledger = service.ledger
        partner_id, partner_key = ledger.create_partner(
            "IFA Insurance", {"purchases": Amount(epsilon=1)},
            purposes=["pricing research on healthy eating"], actor="test", reason="fixture")
        admin_key = ledger.create_admin_key("test")
        yield SimpleNamespace(service=service, ledger=ledger, partner_id=partner_id,
                              partner_key=partner_key, admin_key=admin_key)


@pytest.fixture
def app(stack) -> Flask:
    return make_app(stack)


@pytest.fixture
def client(app):
    return app.test_client()


