"""Partner rows: ids, records, and the argument checks shared by the ledger."""

from __future__ import annotations

import json
import re
import unicodedata

from budget.amounts import Amount
from budget.errors import InvalidAmount, InvalidArgument, UnknownPartner
from budget.records import Partner
from budget.store import Conn, Row, amount_from_row

_DATASET = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
MAX_SLUG = 32


def slugify(name: str) -> str:
    """``"IFA Insurance, Inc."`` -> ``"ifa-insurance-inc"`` (ASCII, at most 32 chars)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:MAX_SLUG].rstrip("-") or "partner"


def unique_id(conn: Conn, name: str) -> str:
    """A slug of ``name`` not yet used: ``ifa``, then ``ifa-2``, ``ifa-3``..."""
    base, n = slugify(name), 1
    candidate = base
    while conn.execute("SELECT 1 FROM partners WHERE id = ?", (candidate,)).fetchone():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def load(conn: Conn, partner_id: str) -> Partner:
    row = conn.execute("SELECT * FROM partners WHERE id = ?", (partner_id,)).fetchone()
    if row is None:
        raise UnknownPartner(partner_id)
    return to_record(row)


def to_record(row: Row) -> Partner:
    cap = amount_from_row(row, "cap_") if row["has_cap"] else None
    return Partner(id=row["id"], name=row["name"], status=row["status"], per_query_cap=cap,
                   purposes=tuple(json.loads(row["purposes"])), created_at=row["created_at"])


def check_text(value: object, what: str, *, required: bool = True, limit: int = 1000) -> str:
    """A string argument: a str, not blank when required, at most ``limit`` chars."""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        need = "a non-empty string" if required else "a string"
        raise InvalidArgument(f"{what} must be {need} of at most {limit} characters, got {value!r}")
    return value


def check_dataset(dataset: object) -> str:
    if not isinstance(dataset, str) or not _DATASET.fullmatch(dataset):
        raise InvalidArgument(
            f"dataset name {dataset!r} is not valid; use letters, digits, '_', '.', '-' "
            f"(e.g. 'purchases')")
    return dataset


def check_amount(amount: object, what: str = "amount") -> Amount:
    if not isinstance(amount, Amount):
        raise InvalidAmount(
            f"{what} must be a budget.amounts.Amount, got {type(amount).__name__} {amount!r}; "
            f"build one with Amount(epsilon=0.5)")
    return amount


def check_purposes(purposes: object) -> list[str]:
    if isinstance(purposes, str) or not all(isinstance(p, str) for p in purposes or ()):
        raise InvalidArgument(f"purposes must be a list of strings, got {purposes!r}")
    return [check_text(p, "purpose", limit=200) for p in purposes or ()]
