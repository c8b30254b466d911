"""Two reads the Ledger has no public method for yet (a key by id, a dataset's cap).

Kept here, in one place, so they become one-line changes when ``budget.ledger``
grows ``get_key(key_id)`` and ``global_cap(dataset)``.
"""
from __future__ import annotations

from budget import accounting, keys
from budget.amounts import Amount
from budget.errors import UnknownKey
from budget.records import KeyInfo


def key_info(ledger, key_id: str) -> KeyInfo | None:
    try:
        with ledger.store.read() as conn:
            return keys.get(conn, key_id)
    except UnknownKey:
        return None


def global_position(ledger, dataset: str) -> tuple[Amount | None, Amount]:
    """(cap or None, spent by all partners) of a dataset."""
    with ledger.store.read() as conn:
        return accounting.global_position(conn, dataset)
