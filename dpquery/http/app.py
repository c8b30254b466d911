"""create_app(): the one place the Flask app is assembled.

    app = create_app()                      # config.toml (or $DPQUERY_CONFIG)
    app = create_app(settings)              # a validated `Settings`
    app = create_app({"TESTING": True,      # tests: a dict of Flask config keys
                      "SETTINGS": settings, "LEDGER": tmp_path / "ledger.db"})

The Service (its data frames and its SQLite ledger connection) is built here,
once per process: under gunicorn each worker calls create_app after the fork.
Every error leaves as the one JSON shape `{"error": {"code", "message", ...}}`.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from budget.errors import LedgerError
from budget.ledger import Ledger
from dpquery import config as config_mod
from dpquery.errors import (DPQueryError, InternalError, InvalidRequest, NotFound,
                            PayloadTooLarge)
from dpquery.http.headers import add_security_headers
from dpquery.http.ratelimit import RateLimiter
from dpquery.http.shared_store import SharedStore
from dpquery.ledger_access import open_configured
from dpquery.ledger_errors import to_dpquery_error
from dpquery.service import Service

log = logging.getLogger("dpquery.http.app")

DEFAULT_TIME_QUANTUM = 0.05  # fresh answers leave on a multiple of this many seconds


class MethodNotAllowed(DPQueryError):
    status, code = 405, "method_not_allowed"


class State:
    """What the blueprints share within one process (one gunicorn worker)."""

    def __init__(self, service: Service, store: SharedStore, limiter: RateLimiter,
                 time_quantum: float):
        self.service = service
        self.ledger = service.ledger
        self.store = store  # shared by the workers: rate limits, sign-in failures, sessions
        self.limiter = limiter
        self.time_quantum = time_quantum


def create_app(settings_or_test_config=None) -> Flask:
    """Build the app: settings -> Service -> blueprints and error handlers."""
    app = Flask(__name__)
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS -> 405, never 200 without a key
    overrides = _overrides(settings_or_test_config)
    settings = _settings(overrides.pop("SETTINGS", None))
    ledger = _ledger(overrides.pop("LEDGER", None), settings)
    app.config.update(MAX_CONTENT_LENGTH=settings.server["max_body_bytes"],
                      SESSION_COOKIE_SECURE=settings.server["secure_cookies"],
                      SESSION_COOKIE_HTTPONLY=True)
    app.config.update(overrides)
    if not app.secret_key:
        app.secret_key = _secret_key(settings.ledger_path.parent / "secret_key")
    app.json.sort_keys = False
    rate = app.config.get("RATE_LIMIT_PER_MINUTE", settings.server["rate_limit_per_minute"])
    store = SharedStore(app.config.get("SHARED_STORE", runtime_path(settings)))
    app.extensions["dpquery"] = State(
        Service.open(settings, ledger), store, RateLimiter(store, rate),
        app.config.get("TIME_QUANTUM_SECONDS", DEFAULT_TIME_QUANTUM))
    _register(app)
    return app


def _overrides(arg) -> dict:
    if arg is None:
        return {}
    if isinstance(arg, config_mod.Settings):
        return {"SETTINGS": arg}
    if isinstance(arg, dict):
        return dict(arg)
    raise TypeError(f"create_app takes Settings or a dict of config keys, not {type(arg).__name__}")


def _settings(value) -> config_mod.Settings:
    if isinstance(value, config_mod.Settings):
        return value
    if isinstance(value, dict):
        return config_mod.from_dict(value)
    return config_mod.load(value or os.environ.get("DPQUERY_CONFIG", "config.toml"))


def _ledger(value, settings) -> Ledger:
    if isinstance(value, Ledger):
        return value
    if value is not None:  # tests: an explicit ledger file
        return Ledger(value)
    return open_configured(settings)  # an existing ledger only (dpquery/ledger_access.py)


def _ledger_error(exc: LedgerError):
    """A ledger error no view mapped (e.g. the ledger went away during auth): 503 or a bug."""
    mapped = to_dpquery_error(exc)
    return render_error(mapped) if mapped is not None else _unexpected(exc)


def runtime_path(settings) -> Path:
    """The workers' shared store (rate limits, sign-in failures, web sessions)."""
    return settings.ledger_path.parent / "runtime.db"


def _secret_key(path: Path) -> bytes:
    """The web sessions' signing key: made once, shared by every worker through a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(os.urandom(32).hex().encode())
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic: the first worker's key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()


def _register(app: Flask) -> None:
    from dpquery.http import admin_api, api
    from dpquery.web import web_bp
    app.register_blueprint(api.bp)
    app.register_blueprint(admin_api.bp)
    app.register_blueprint(web_bp)
    app.before_request(_start)
    app.after_request(_stamp)
    app.register_error_handler(DPQueryError, render_error)
    app.register_error_handler(LedgerError, _ledger_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _start() -> None:
    g.started = time.monotonic()
    g.request_id = uuid.uuid4().hex[:16]


def _stamp(response):
    response.headers["X-Request-Id"] = g.get("request_id", "-")
    response.headers.setdefault("Cache-Control", "no-store")
    return add_security_headers(response)


def render_error(exc: DPQueryError):
    """The one error shape: {"error": {"code", "message", ...details}} with its status."""
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    for name, value in getattr(exc, "headers", {}).items():
        response.headers[name] = value
    return response


def _http_error(exc: HTTPException):
    """Werkzeug's 404/405/413/400 in our shape."""
    if exc.code == 404:
        err = NotFound(f"no endpoint {request.method} {request.path}; "
                       "the endpoints are listed at /openapi.json")
    elif exc.code == 405:
        allowed = sorted(exc.valid_methods or [])
        err = MethodNotAllowed(f"{request.method} is not allowed on {request.path}; "
                               f"use {', '.join(allowed)}", allowed=allowed)
        err.headers = {"Allow": ", ".join(allowed)}
    elif exc.code == 413:
        limit = request.max_content_length
        err = PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes; "
                              "send a shorter query", limit_bytes=limit)
    elif exc.code == 400:
        err = InvalidRequest("the request is malformed; send a JSON object body")
    else:
        err = DPQueryError(exc.description or exc.name)
        err.status, err.code = exc.code or 500, exc.name.lower().replace(" ", "_")
    return render_error(err)


def _unexpected(exc: Exception):
    """A bug: log the traceback server-side; the partner sees no detail and no data."""
    request_id = g.get("request_id", "-")
    log.error("unhandled error in request %s %s %s", request_id, request.method, request.path,
              exc_info=exc)
    return render_error(InternalError(request_id=request_id))
