"""API-key authentication, roles and the per-key rate limit.

`Authorization: Bearer <key>` -> `budget.records.Principal` through
`Ledger.authenticate` (which compares key hashes in constant time).

    401 unauthorized  no key, a malformed, unknown or revoked key
    403 forbidden     a suspended partner; a partner key on an admin endpoint;
                      an admin key on a partner endpoint
    429 rate_limited  more than `rate_limit_per_minute` requests for this key
                      (counted across all workers, see ratelimit.py)
"""
from __future__ import annotations

import functools

from flask import current_app, g, request

from budget.records import Principal
from dpquery.errors import Forbidden, RateLimited, Unauthorized
from dpquery.ledger_errors import map_ledger_errors
from dpquery.http.ratelimit import retry_after


def state():
    """The per-process State built by create_app (service, limiter, time quantum)."""
    return current_app.extensions["dpquery"]


def principal() -> Principal:
    """Who sent this request; authenticates on first use and checks the rate limit."""
    if "principal" not in g:
        g.principal = _authenticate(request.headers.get("Authorization", ""))
        _check_rate(g.principal)
    return g.principal


def _authenticate(header: str) -> Principal:
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
    with map_ledger_errors():  # a suspended partner's key -> 403 forbidden
        found = state().service.ledger.authenticate(key.strip())
    if found is None:
        raise Unauthorized("the API key is not valid (unknown, malformed or revoked); "
                           "ask a budget administrator for a key")
    return found


def _check_rate(who: Principal) -> None:
    limiter = state().limiter
    wait = limiter.take(who.key_id)
    if wait > 0:
        seconds = retry_after(wait)
        exc = RateLimited(f"more than {limiter.capacity:g} requests a minute with this key; "
                          f"retry in {seconds} s", retry_after_seconds=seconds,
                          limit_per_minute=limiter.capacity)
        exc.headers = {"Retry-After": str(seconds)}
        raise exc


def partner_required(view):
    """The view runs for a partner key; `g.principal.partner` is set."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if principal().role != "partner":
            raise Forbidden("this endpoint answers partners; administrator keys cannot run "
                            "queries or spend budget")
        return view(*args, **kwargs)
    return wrapper


def admin_required(view):
    """The view runs for an administrator key."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if principal().role != "admin":
            raise Forbidden("this endpoint needs an administrator key")
        return view(*args, **kwargs)
    return wrapper


def actor() -> str:
    """How the audit log names the caller: role and public key id, never the key."""
    who = principal()
    return f"{who.role}:{who.partner_id or who.key_id}" if who.role == "partner" \
        else f"admin:{who.key_id}"
