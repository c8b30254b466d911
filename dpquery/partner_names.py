"""One partner per name: `partner create` refuses a name already in use.

A retried script must not create `ifa-2` with a second budget and key: the
admin API answers 409 `partner_exists` and the CLI exits with status 3.
"""
from __future__ import annotations

from budget.partners import slugify


def existing_partner(ledger, name: str) -> str | None:
    """The id of a partner with this name (case-insensitive), or whose id it would take."""
    wanted = name.strip().casefold()
    for p in ledger.list_partners():
        if p.name.strip().casefold() == wanted or p.id == slugify(name):
            return p.id
    return None
