"""API keys: random, prefixed, stored only as a SHA-256 hash.

A key looks like ``dpq_<key id>_<secret>`` (partner) or ``dpqa_<key id>_<secret>``
(administrator). The secret is ``secrets.token_urlsafe(32)`` (256 bits). The
key id is public (it appears in listings and the audit); the key itself is
returned once, at issue, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from budget import audit
from budget.errors import UnknownKey
from budget.records import IssuedKey, KeyInfo
from budget.store import Conn, Row, utc_now

PREFIXES = {"partner": "dpq_", "admin": "dpqa_"}
_KEY = re.compile(r"(dpqa?)_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _new_key(role: str) -> tuple[str, str]:
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIXES[role]}{key_id}_{secrets.token_urlsafe(32)}"


def issue(conn: Conn, role: str, partner_id: str | None, actor: str) -> IssuedKey:
    """Create a key inside the caller's transaction; the only time it is seen."""
    key_id, key = _new_key(role)
    conn.execute(
        "INSERT INTO api_keys (key_id, role, partner_id, key_hash, created_at, created_by)"
        " VALUES (?,?,?,?,?,?)",
        (key_id, role, partner_id, hash_key(key), utc_now(), actor),
    )
    outcome = "admin_key_issued" if role == "admin" else "key_issued"
    audit.record(conn, actor=actor, outcome=outcome, partner_id=partner_id,
                 reason=f"key id {key_id}")
    return IssuedKey(key_id=key_id, key=key)


def revoke(conn: Conn, key_id: str, actor: str, reason: str) -> KeyInfo:
    """Mark a key revoked (idempotent: a second revoke keeps the first time)."""
    info = get(conn, key_id, lock=True)
    if info.revoked_at is None:
        conn.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (utc_now(), key_id))
        audit.record(conn, actor=actor, outcome="key_revoked", partner_id=info.partner_id,
                     reason=reason or f"key id {key_id}")
    return get(conn, key_id)


def get(conn: Conn, key_id: str, lock: bool = False) -> KeyInfo:
    row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?" + (conn.for_update if lock else ""),
                       (key_id,)).fetchone()
    if row is None:
        raise UnknownKey(f"unknown key id {key_id!r}; see key ids with `partner show`")
    return _info(row)


def for_partner(conn: Conn, partner_id: str) -> list[KeyInfo]:
    rows = conn.execute("SELECT * FROM api_keys WHERE partner_id = ? ORDER BY created_at",
                        (partner_id,)).fetchall()
    return [_info(row) for row in rows]


def match(conn: Conn, key: object) -> Row | None:
    """The stored row of a valid, unrevoked key, else None.

    The hash comparison uses ``hmac.compare_digest``; an unknown key id is
    compared against a dummy hash so both paths do the same work.
    """
    parsed = _KEY.fullmatch(key) if isinstance(key, str) else None
    row = None
    if parsed:
        row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?",
                           (parsed.group(2),)).fetchone()
    stored = row["key_hash"] if row is not None else _DUMMY_HASH
    given = hash_key(key) if isinstance(key, str) else ""
    if not hmac.compare_digest(stored, given) or row is None:
        return None
    if row["revoked_at"] is not None or PREFIXES[row["role"]] != parsed.group(1) + "_":
        return None
    return row


def _info(row: Row) -> KeyInfo:
    return KeyInfo(key_id=row["key_id"], role=row["role"], partner_id=row["partner_id"],
                   created_at=row["created_at"], created_by=row["created_by"],
                   revoked_at=row["revoked_at"])
