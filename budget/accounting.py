"""Reserve, commit and release: the checks and writes behind every charge.

Every function here runs inside the caller's write transaction
(``Store.write``): ``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL the rows a
charge depends on are locked first (``conn.lock_charge``), so a check and the
write that depends on it are atomic across processes and hosts. Spent = HELD + COMMITTED; the per-(partner, dataset) and
per-dataset global counters in ``balances`` and ``global_caps`` always equal
the sum of the charged reservation rows.
"""

from __future__ import annotations


from budget import audit
from budget.amounts import Amount
from budget.errors import BudgetExhausted, IdempotencyConflict, InvalidTransition, UnknownReservation
from budget.records import COMMITTED, HELD, RELEASED, Partner, Reservation
from budget.store import Conn, Row, amount_from_row, amount_params, utc_now

_LIMIT_TEXT = {
    "per_query": "per-query cap",
    "partner": "partner budget",
    "global": "global cap across all partners",
}
_FIX = {
    "per_query": "ask for less per query, or ask an administrator to raise the cap",
    "partner": "ask a budget administrator to raise the budget",
    "global": "the dataset's total budget is spent; ask a budget administrator",
}


def find(conn: Conn, partner_id: str, request_id: str) -> Row | None:
    return conn.execute("SELECT * FROM reservations WHERE partner_id = ? AND request_id = ?",
                        (partner_id, request_id)).fetchone()


def load(conn: Conn, reservation_id: int, lock: bool = False) -> Row:
    """The reservation row; ``lock`` also locks it until the transaction ends."""
    row = conn.execute("SELECT * FROM reservations WHERE id = ?" + (conn.for_update if lock else ""),
                       (reservation_id,)).fetchone()
    if row is None:
        raise UnknownReservation(f"unknown reservation id {reservation_id!r}")
    return row


def to_record(row: Row, replayed: bool = False) -> Reservation:
    return Reservation(
        id=row["id"], partner_id=row["partner_id"], dataset=row["dataset"],
        request_id=row["request_id"], query_text=row["query_text"],
        amount=amount_from_row(row), status=row["status"], created_at=row["created_at"],
        updated_at=row["updated_at"], replayed=replayed,
    )


def check_replay(row: Row, dataset: str, amount: Amount, query_text: str) -> None:
    """Refuse a request id reused for another query, dataset or cost."""
    if (row["query_text"], row["dataset"]) != (query_text, dataset) or amount_from_row(row) != amount:
        raise IdempotencyConflict(
            f"request id {row['request_id']!r} was already used for a different query; "
            f"use a new request id for a new query"
        )


def balance(conn: Conn, partner_id: str, dataset: str) -> tuple[Amount, Amount]:
    """(budget, spent) of a partner on a dataset; zero when never set."""
    row = conn.execute("SELECT * FROM balances WHERE partner_id = ? AND dataset = ?",
                       (partner_id, dataset)).fetchone()
    if row is None:
        return Amount(), Amount()
    return amount_from_row(row, "budget_"), amount_from_row(row, "spent_")


def global_position(conn: Conn, dataset: str) -> tuple[Amount | None, Amount]:
    """(cap or None, spent by all partners) of a dataset."""
    row = conn.execute("SELECT * FROM global_caps WHERE dataset = ?", (dataset,)).fetchone()
    if row is None:
        return None, Amount()
    cap = amount_from_row(row, "cap_") if row["has_cap"] else None
    return cap, amount_from_row(row, "spent_")


def refusal(conn: Conn, partner: Partner, dataset: str,
            amount: Amount) -> BudgetExhausted | None:
    """The first limit ``amount`` would break: per-query cap, partner budget, global cap."""
    if partner.per_query_cap is not None and not amount <= partner.per_query_cap:
        return _exhausted("per_query", partner, dataset, amount, partner.per_query_cap)
    budget, spent = balance(conn, partner.id, dataset)
    if not amount <= budget.saturating_sub(spent):
        return _exhausted("partner", partner, dataset, amount, budget.saturating_sub(spent))
    cap, global_spent = global_position(conn, dataset)
    if cap is not None and not amount <= cap.saturating_sub(global_spent):
        return _exhausted("global", partner, dataset, amount, cap.saturating_sub(global_spent))
    return None


def _exhausted(limit: str, partner: Partner, dataset: str, requested: Amount,
               remaining: Amount) -> BudgetExhausted:
    names = requested.exceeding(remaining)
    word = "allowed per query" if limit == "per_query" else "remaining"
    message = (f"requested {requested.describe(names)}, {word} {remaining.describe(names)} "
               f"({_LIMIT_TEXT[limit]} for dataset {dataset!r}); {_FIX[limit]}")
    return BudgetExhausted(message, requested=requested, remaining=remaining, limit=limit,
                           partner_id=partner.id, dataset=dataset)


def hold(conn: Conn, partner_id: str, dataset: str, amount: Amount,
         request_id: str, query_text: str, released_id: int | None) -> int:
    """Write the HELD row (or re-hold a RELEASED one) and add to both counters."""
    now = utc_now()
    if released_id is None:
        reservation_id = conn.execute(
            "INSERT INTO reservations (partner_id, dataset, request_id, query_text, epsilon,"
            " delta, rho, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " RETURNING id",
            (partner_id, dataset, request_id, query_text, *amount_params(amount), HELD, now,
             now)).fetchall()[0][0]
    else:
        conn.execute("UPDATE reservations SET status = ?, updated_at = ? WHERE id = ?",
                     (HELD, now, released_id))
        reservation_id = released_id
    _add_spent(conn, partner_id, dataset, amount, sign=1)
    return reservation_id


def commit(conn: Conn, reservation_id: int, actor: str) -> Reservation:
    """HELD -> COMMITTED (idempotent). Committing a RELEASED hold is a bug: refused."""
    row = load(conn, reservation_id, lock=True)
    if row["status"] == RELEASED:
        raise InvalidTransition(
            f"reservation {reservation_id} was released; noise must not be drawn for it "
            f"(reserve again with the same request id)")
    if row["status"] == HELD:
        _set_status(conn, row, COMMITTED, actor, "committed")
    return to_record(load(conn, reservation_id))


def release(conn: Conn, reservation_id: int, actor: str, reason: str) -> Reservation:
    """HELD -> RELEASED and the hold returned (idempotent). COMMITTED stays charged."""
    row = load(conn, reservation_id)
    conn.lock_charge(row["partner_id"], row["dataset"])  # same lock order as reserve
    row = load(conn, reservation_id, lock=True)
    if row["status"] == COMMITTED:
        raise InvalidTransition(
            f"reservation {reservation_id} is committed: noise was drawn, the charge stays")
    if row["status"] == HELD:
        _add_spent(conn, row["partner_id"], row["dataset"], amount_from_row(row), sign=-1)
        _set_status(conn, row, RELEASED, actor, "released", reason)
    return to_record(load(conn, reservation_id))


def _set_status(conn: Conn, row: Row, status: str, actor: str,
                outcome: str, reason: str = "") -> None:
    conn.execute("UPDATE reservations SET status = ?, updated_at = ? WHERE id = ?",
                 (status, utc_now(), row["id"]))
    audit.record(conn, actor=actor, outcome=outcome, partner_id=row["partner_id"],
                 dataset=row["dataset"], request_id=row["request_id"],
                 query_text=row["query_text"], amount=amount_from_row(row), reason=reason)


def _add_spent(conn: Conn, partner_id: str, dataset: str, amount: Amount,
               sign: int) -> None:
    budget, spent = balance(conn, partner_id, dataset)
    new_spent = spent + amount if sign > 0 else spent.saturating_sub(amount)
    conn.execute(
        "INSERT INTO balances (partner_id, dataset, spent_epsilon, spent_delta, spent_rho)"
        " VALUES (?,?,?,?,?) ON CONFLICT (partner_id, dataset) DO UPDATE SET"
        " spent_epsilon = excluded.spent_epsilon, spent_delta = excluded.spent_delta,"
        " spent_rho = excluded.spent_rho", (partner_id, dataset, *amount_params(new_spent)))
    _, global_spent = global_position(conn, dataset)
    new_global = global_spent + amount if sign > 0 else global_spent.saturating_sub(amount)
    conn.execute(
        "INSERT INTO global_caps (dataset, spent_epsilon, spent_delta, spent_rho)"
        " VALUES (?,?,?,?) ON CONFLICT (dataset) DO UPDATE SET"
        " spent_epsilon = excluded.spent_epsilon, spent_delta = excluded.spent_delta,"
        " spent_rho = excluded.spent_rho", (dataset, *amount_params(new_global)))
