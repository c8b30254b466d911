"""Copy a whole ledger between backends (SQLite -> PostgreSQL, or back), checked by totals.

Every row is copied with its ids (reservation ids are the query ids partners
see; audit sequence numbers stay in order) and the ledger keeps its identity,
so an installation's recorded ledger id matches the copy. The target must be
new or empty. The copy is one transaction on the target: the totals of the
source and of the copy are compared before it commits; any difference rolls
it back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from budget.amounts import Amount
from budget.errors import LedgerFileError
from budget.ledger import Ledger
from budget.store import amount_from_row

#: Tables in foreign-key order, with the column that orders their rows.
TABLES = [("partners", "id"), ("api_keys", "key_id"), ("balances", "partner_id, dataset"),
          ("global_caps", "dataset"), ("reservations", "id"), ("audit", "seq")]
_BOOLEAN_COLUMNS = {"has_cap"}


@dataclass(frozen=True)
class Totals:
    """What must be equal in a ledger and its copy."""

    rows: dict[str, int]
    spent: dict[tuple[str, str], Amount]  # (partner, dataset) -> spent counter
    budgets: dict[tuple[str, str], Amount]
    charged: Amount  # sum of HELD + COMMITTED reservations
    global_spent: dict[str, Amount]
    ledger_id: str


def totals(conn) -> Totals:
    rows = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t, _ in TABLES}
    balances = conn.execute("SELECT * FROM balances").fetchall()
    charged = sum((amount_from_row(r) for r in conn.execute(
        "SELECT * FROM reservations WHERE status <> 'RELEASED'")), Amount())
    return Totals(
        rows=rows,
        spent={(r["partner_id"], r["dataset"]): amount_from_row(r, "spent_") for r in balances},
        budgets={(r["partner_id"], r["dataset"]): amount_from_row(r, "budget_") for r in balances},
        charged=charged,
        global_spent={r["dataset"]: amount_from_row(r, "spent_") for r in conn.execute(
            "SELECT * FROM global_caps") if amount_from_row(r, "spent_") != Amount()},
        ledger_id=conn.execute("SELECT ledger_id FROM ledger_meta").fetchone()[0])


def copy_ledger(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Totals:
    """Copy the ledger at ``source`` into a new or empty ledger at ``target``; its totals."""
    with Ledger(source, create=False) as src, Ledger(target, create=True) as dst:
        with src.store.read() as s, dst.store.write() as d:
            if any(totals(d).rows.values()):
                raise LedgerFileError(f"the target ledger {dst.store.location} is not empty; "
                                      f"copy only into a new database")
            for table, order in TABLES:
                _copy_table(s, d, table, order)
            meta = s.execute("SELECT ledger_id, created_at FROM ledger_meta").fetchone()
            d.execute("UPDATE ledger_meta SET ledger_id = ?, created_at = ?", tuple(meta))
            if dst.store.backend == "postgresql":
                _advance_identities(d)
            expected, copied = totals(s), totals(d)
            if copied != expected:
                raise LedgerFileError(f"the copy's totals differ from the source's "
                                      f"({copied} != {expected}); nothing was copied")
    return expected


def _copy_table(s, d, table: str, order: str) -> None:
    rows = s.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    if not rows:
        return
    columns = rows[0].keys()
    booleans = [i for i, c in enumerate(columns) if c in _BOOLEAN_COLUMNS]
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
           f"({', '.join('?' for _ in columns)})")
    for row in rows:
        values = list(row)
        for i in booleans:
            values[i] = bool(values[i])
        d.execute(sql, values)


def _advance_identities(d) -> None:
    """PostgreSQL identity columns continue after the copied ids."""
    for table, column in (("reservations", "id"), ("audit", "seq")):
        d.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                  f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")
