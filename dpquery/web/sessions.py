"""Signed-cookie sessions for the console: who is signed in, idle expiry, CSRF.

The session holds the key id, role and partner id, never the API key. Every
request re-checks in the ledger that the key is not revoked and the partner is
not suspended, so revoking a key or suspending a partner ends its sessions.

Each sign-in also records a random session id (its SHA-256) in the workers'
shared store; a cookie whose id is not there is signed out. Signing out deletes
the id, so a copied cookie stops working everywhere at once.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from types import SimpleNamespace

from flask import (abort, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from markupsafe import Markup

from dpquery.web.blueprint import web_bp
from dpquery.web.shared import shared_store

IDLE_SECONDS = 30 * 60
MAX_SECONDS = 8 * 3600
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class User:
    role: str  # "partner" or "admin"
    key_id: str
    partner_id: str | None

    @property
    def actor(self) -> str:
        return f"web:{self.role}:{self.key_id}"


def deps():
    """The per-process Service and Ledger set by the app factory.

    The state needs ``.service``; ``.ledger`` defaults to the service's own ledger.
    """
    state = current_app.extensions["dpquery"]
    if getattr(state, "ledger", None) is None:
        return SimpleNamespace(service=state.service, ledger=state.service.ledger)
    return state


def sign_in(principal) -> None:
    """Start a fresh session (new CSRF token: no fixation) for an authenticated key."""
    session.clear()
    now = int(time.time())
    sid = secrets.token_urlsafe(32)
    with shared_store().write() as db:
        db.execute("DELETE FROM web_sessions WHERE created < ?", (now - _longest(),))
        db.execute("INSERT INTO web_sessions (sid_hash, key_id, created) VALUES (?, ?, ?)",
                   (_digest(sid), principal.key_id, now))
    session.update(role=principal.role, key_id=principal.key_id,
                   partner_id=principal.partner_id, login_at=now, seen=now, sid=sid,
                   csrf=secrets.token_urlsafe(32))


def sign_out() -> None:
    """End the session here and on the server: its cookie is worthless from now on."""
    sid = session.get("sid")
    if sid:
        with shared_store().write() as db:
            db.execute("DELETE FROM web_sessions WHERE sid_hash = ?", (_digest(sid),))
    session.clear()


def _live(sid) -> bool:
    if not isinstance(sid, str):
        return False
    with shared_store().write() as db:
        row = db.execute("SELECT 1 FROM web_sessions WHERE sid_hash = ?",
                         (_digest(sid),)).fetchone()
    return row is not None


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _longest() -> int:
    return current_app.config.get("WEB_SESSION_MAX_SECONDS", MAX_SECONDS)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@web_bp.app_template_global()
def csrf_field():
    return Markup(f'<input type="hidden" name="csrf_token" value="{csrf_token()}">')


@web_bp.before_request
def check_csrf_and_expiry():
    """Refuse a state-changing request without this session's token; expire idle sessions."""
    if request.method in UNSAFE_METHODS:
        sent, expected = request.form.get("csrf_token", ""), session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            return render_template("error.html", title="Form expired",
                                   message="This form was not sent from a page of this site, or "
                                           "your session ended. Reload the page and try again."), 400
    g.user = _current_user()
    return None


def _current_user() -> User | None:
    if "key_id" not in session:
        return None
    now = int(time.time())
    idle = current_app.config.get("WEB_SESSION_IDLE_SECONDS", IDLE_SECONDS)
    if not _live(session.get("sid")):
        session.clear()
        flash("Your session ended. Sign in again.", "info")
        return None
    if now - session.get("seen", 0) > idle or now - session.get("login_at", 0) > _longest():
        sign_out()
        flash("Your session expired. Sign in again.", "info")
        return None
    user = User(session["role"], session["key_id"], session.get("partner_id"))
    if not _still_valid(user):
        sign_out()
        flash("Your key was revoked or your access suspended. Sign in with a valid key.", "error")
        return None
    session["seen"] = now
    return user


def _still_valid(user: User) -> bool:
    ledger = deps().ledger
    info = ledger.get_key(user.key_id)
    if info is None or info.revoked_at is not None or info.role != user.role or info.partner_id != user.partner_id:
        return False
    return user.role == "admin" or ledger.get_partner(user.partner_id).active


def require(role: str):
    """View decorator: a signed-in user of `role`, else the login page (or 403)."""
    def wrap(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            user = g.get("user")
            if user is None:
                return redirect(url_for("web.login"))
            if user.role != role:
                abort(403)
            return view(*args, **kwargs)
        return checked
    return wrap


@web_bp.app_template_global()
def signed_in():
    return g.get("user")


@web_bp.record_once
def _cookie_defaults(state) -> None:
    """Session cookies are not sent on cross-site POSTs (a second CSRF guard)."""
    if state.app.config.get("SESSION_COOKIE_SAMESITE") is None:
        state.app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
