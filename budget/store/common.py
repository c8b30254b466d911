"""What both ledger stores share: the exact amount columns, times, rows, migrations' shape.

Amounts are stored as exact TEXT fractions (``"1/10"``) on both backends, each
column checked by the database (SQLite ``GLOB``, PostgreSQL a regular
expression): a float can never be written.

SQL in ``budget/`` is written once with ``?`` placeholders; the PostgreSQL
store translates them. Rows are read by column name (``row["id"]``) or by
position (``row[0]``) on both backends.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from budget.amounts import Amount, amount_from_text

#: Schema versions: 1 tables, 2 an index for free repeats, 3 the ledger's identity.
SCHEMA_VERSION = 3
IDENTITY_VERSION = 3
AMOUNT_FIELDS = ("epsilon", "delta", "rho")


def utc_now() -> str:
    """Current time as a UTC ISO-8601 string with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def amount_params(amount: Amount) -> tuple[str, str, str]:
    """The exact TEXT form of an amount, in column order epsilon, delta, rho."""
    return (str(amount.epsilon), str(amount.delta), str(amount.rho))


def amount_from_row(row: Any, prefix: str = "") -> Amount:
    """Read the three TEXT fraction columns ``{prefix}epsilon`` ... of a row."""
    return amount_from_text(row[f"{prefix}epsilon"], row[f"{prefix}delta"], row[f"{prefix}rho"])


class Row:
    """A result row readable by name or position (like ``sqlite3.Row``)."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: tuple, index: dict[str, int]):
        self._values, self._index = values, index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self):
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values))!r})"
