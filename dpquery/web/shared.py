"""The workers' shared store, as the web console finds it.

The app factory puts it on its state (`.store`); an app assembled by hand with
only `.service` gets one next to the service's ledger, made on first use.
"""
from __future__ import annotations

from flask import current_app

from dpquery.http.shared_store import SharedStore


def shared_store() -> SharedStore:
    state = current_app.extensions["dpquery"]
    store = getattr(state, "store", None)
    if store is None:
        store = current_app.extensions.get("dpquery_web_store")
    if store is None:
        store = SharedStore(state.service.settings.ledger_path.parent / "runtime.db")
        current_app.extensions["dpquery_web_store"] = store
    return store


def server_setting(name: str):
    """A `[server]` setting of the running configuration."""
    return current_app.extensions["dpquery"].service.settings.server[name]
