"""Web console (analysts, administrators) and the public transparency page.

Server-rendered Jinja pages with a little plain JavaScript; no front-end build.
The app factory registers ``web_bp`` and puts an object with ``.service`` and
``.ledger`` in ``app.extensions["dpquery"]``; the app must have a ``secret_key``
that is the same in every worker process (sessions are signed cookies).

Optional app config: ``WEB_SESSION_IDLE_SECONDS`` (default 1800) and
``WEB_SESSION_MAX_SECONDS`` (default 8 hours).
"""
from __future__ import annotations

from dpquery.web.blueprint import web_bp
from dpquery.web import admin, console, public, sessions, views  # noqa: F401  (registers the views)

__all__ = ["web_bp"]
