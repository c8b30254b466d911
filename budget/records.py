"""Frozen records the ledger returns. Plain data: no behaviour, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from budget.amounts import Amount

HELD, COMMITTED, RELEASED = "HELD", "COMMITTED", "RELEASED"


@dataclass(frozen=True)
class Partner:
    id: str
    name: str
    status: str  # "active" or "suspended"
    per_query_cap: Amount | None
    purposes: tuple[str, ...]
    created_at: str

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class Reservation:
    """A hold on privacy budget.

    ``replayed`` is True when ``reserve`` found this request id already on
    record and returned the stored reservation without charging. The caller
    must then NOT draw noise again: it returns the stored answer
    (:meth:`budget.ledger.Ledger.get_answer`) or, if there is none yet,
    tells the client the request is in progress or failed.
    """

    id: int
    partner_id: str
    dataset: str
    request_id: str
    query_text: str
    amount: Amount
    status: str  # HELD, COMMITTED or RELEASED
    created_at: str
    updated_at: str
    replayed: bool = False

    @property
    def charged(self) -> bool:
        """HELD and COMMITTED both count as spent; only RELEASED does not."""
        return self.status in (HELD, COMMITTED)


@dataclass(frozen=True)
class Principal:
    """Who an API key belongs to: a partner or an administrator."""

    role: str  # "partner" or "admin"
    key_id: str
    partner: Partner | None  # set when role == "partner"

    @property
    def partner_id(self) -> str | None:
        return self.partner.id if self.partner else None


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    role: str
    partner_id: str | None
    created_at: str
    created_by: str
    revoked_at: str | None


@dataclass(frozen=True)
class IssuedKey:
    """A newly issued API key. ``key`` is shown once and never stored."""

    key_id: str
    key: str


@dataclass(frozen=True)
class DatasetBudget:
    """One partner's position on one dataset (plus the dataset's global cap)."""

    dataset: str
    budget: Amount
    spent: Amount
    remaining: Amount
    global_cap: Amount | None
    global_spent: Amount


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    partner_id: str | None
    dataset: str | None
    request_id: str | None
    query_text: str | None
    amount: Amount
    outcome: str
    reason: str

    def to_json(self) -> dict[str, object]:
        out = {k: getattr(self, k) for k in (
            "seq", "at", "actor", "partner_id", "dataset", "request_id",
            "query_text", "outcome", "reason")}
        out["amount"] = self.amount.to_json()
        return out
