"""Shared fixtures: a small demo dataset and settings built from a dict."""
from __future__ import annotations

from pathlib import Path

import pytest

from dpquery.demo import write_demo

from dpquery import config
from settings_helpers import make_settings, open_service


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """About 120k rows for 2,000 customers, made once per test session."""
    out = tmp_path_factory.mktemp("demo") / "purchases"
    write_demo(out, customers=2000, seed=11)
    return out


@pytest.fixture()
def settings(tmp_path, demo_data) -> config.Settings:
    return make_settings(tmp_path, demo_data)


@pytest.fixture()
def svc(settings):
    """The service over `settings`, with a fresh ledger."""
    with open_service(settings) as service:
        yield service
