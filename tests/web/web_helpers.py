"""Helpers for the web tests: settings, a hand-built Flask app, signing in, CSRF forms.

The app is built by hand (not by dpquery.http.app.create_app) so these tests depend
only on the web blueprint: the app factory's contract is just
``app.extensions["dpquery"]`` with ``.service`` and ``.ledger``.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

from flask import Flask

from dpquery import config
from dpquery.web import web_bp

CONFIG = Path(__file__).resolve().parents[2] / "config.toml"


def make_settings(tmp_path: Path, data: Path):
    with CONFIG.open("rb") as f:
        raw = tomllib.load(f)
    raw["datasets"]["purchases"]["path"] = str(data)
    raw["ledger"]["path"] = str(tmp_path / "ledger.db")
    return config.from_dict(raw, base=tmp_path)


def make_app(stack) -> Flask:
    app = Flask(__name__)
    app.secret_key = "test-secret-not-for-production"
    app.config["TESTING"] = True
    app.extensions["dpquery"] = SimpleNamespace(service=stack.service, ledger=stack.ledger)
    app.register_blueprint(web_bp)
    return app


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def login(client, key: str):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"api_key": key, "csrf_token": token})


def post(client, url: str, page: str, data: dict, **kwargs):
    """POST a form with the CSRF token read from `page` (as a browser would)."""
    token = csrf_of(client.get(page).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token}, **kwargs)
