"""The append-only audit log: every charge, refusal and admin action.

Rows are only ever inserted; triggers in the database (``store/sqlite.py``,
``store/postgres.py``) abort any UPDATE or DELETE (and, on PostgreSQL,
TRUNCATE) of the ``audit`` table.
"""

from __future__ import annotations

from datetime import datetime, timezone

from budget.amounts import Amount
from budget.errors import InvalidArgument
from budget.records import AuditEntry
from budget.store import Conn, Row, amount_from_row, amount_params, utc_now

OUTCOMES = frozenset({
    "partner_created", "key_issued", "key_revoked", "admin_key_issued",
    "budget_set", "per_query_cap_set", "global_cap_set", "suspended", "resumed",
    "reserved", "committed", "released", "refused",
})


def record(conn: Conn, *, actor: str, outcome: str,
           partner_id: str | None = None, dataset: str | None = None,
           request_id: str | None = None, query_text: str | None = None,
           amount: Amount | None = None, reason: str = "") -> None:
    """Append one audit row inside the caller's transaction."""
    assert outcome in OUTCOMES, outcome
    conn.execute(
        "INSERT INTO audit (at, actor, partner_id, dataset, request_id, query_text,"
        " epsilon, delta, rho, outcome, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (utc_now(), actor, partner_id, dataset, request_id, query_text,
         *amount_params(amount or Amount()), outcome, reason),
    )


def entries(conn: Conn, partner_id: str | None = None,
            since: str | datetime | None = None) -> list[AuditEntry]:
    """Audit rows in order, optionally for one partner and from a UTC time on."""
    sql, params = "SELECT * FROM audit WHERE 1=1", []
    if partner_id is not None:
        sql, params = sql + " AND partner_id = ?", [*params, partner_id]
    if since is not None:
        sql, params = sql + " AND at >= ?", [*params, normalise_time(since)]
    rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
    return [_entry(row) for row in rows]


def normalise_time(value: str | datetime) -> str:
    """A datetime or ISO text (naive means UTC) as the audit's UTC ISO form."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidArgument(
                f"time {value!r} is not ISO-8601; use e.g. 2025-01-31 or 2025-01-31T12:00:00Z"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _entry(row: Row) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"], at=row["at"], actor=row["actor"], partner_id=row["partner_id"],
        dataset=row["dataset"], request_id=row["request_id"], query_text=row["query_text"],
        amount=amount_from_row(row), outcome=row["outcome"], reason=row["reason"],
    )
