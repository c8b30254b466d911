"""The privacy-budget ledger: the only accountant of privacy spent.

The ledger is durable (SQLite for one host, PostgreSQL for several; see
``store/``): a restarted process knows what every partner spent. A query is charged **before** noise is drawn
(:meth:`Ledger.reserve`); the charge stays once noise is drawn
(:meth:`Ledger.commit`), and only a request that failed before any noise was
drawn may give its hold back (:meth:`Ledger.release`). A HELD reservation
whose process died stays charged forever: spent = HELD + COMMITTED.

Composition is basic composition, component by component: epsilons add,
deltas add, rhos (zCDP) add. Budgets and caps are checked per component.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from budget import accounting, audit, keys, partners
from budget.amounts import Amount
from budget.errors import IdempotencyConflict, InvalidArgument, PartnerSuspended, UnknownKey
from budget.records import AuditEntry, DatasetBudget, KeyInfo, Partner, Principal, Reservation
from budget.store import amount_params, open_store, utc_now

_check_text = partners.check_text


class Ledger:
    """Partners, keys, budgets, caps, reservations and the audit, in one database.

    ``location`` is a SQLite file path or a ``postgresql://`` URL. Open one
    ``Ledger`` per process (or share one between threads); several processes
    (and, on PostgreSQL, several hosts) may open the same ledger at once.

    ``create=True`` makes the ledger if it does not exist (scripts, tests);
    the service never does: it opens with :func:`budget.identity.open_ledger`,
    which accepts only an existing ledger with the expected identity.
    """

    def __init__(self, location: str | os.PathLike[str], *, create: bool = True):
        self.store = open_store(location, create=create)

    @property
    def ledger_id(self) -> str:
        """The random id given to this ledger when it was created (never changes)."""
        return self.store.ledger_id()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- partners -------------------------------------------------------------

    def create_partner(self, name: str, budgets: dict[str, Amount] | None = None,
                       per_query_cap: Amount | None = None, purposes: list[str] = (),
                       actor: str = "", reason: str = "") -> tuple[str, str]:
        """Create an active partner with budgets per dataset and a first API key.

        Returns ``(partner_id, api_key)``; the key is shown only here.
        """
        _check_text(name, "partner name", limit=200)
        _check_text(actor, "actor", limit=200)
        budgets = {partners.check_dataset(d): partners.check_amount(a, f"budget for {d!r}")
                   for d, a in (budgets or {}).items()}
        cap = None if per_query_cap is None else partners.check_amount(per_query_cap, "cap")
        purposes = partners.check_purposes(purposes)
        with self.store.write() as conn:
            conn.lock_admin()
            partner_id = partners.unique_id(conn, name)
            conn.execute(
                "INSERT INTO partners (id, name, status, has_cap, cap_epsilon, cap_delta,"
                " cap_rho, purposes, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (partner_id, name, "active", cap is not None, *amount_params(cap or Amount()),
                 json.dumps(purposes), utc_now()))
            audit.record(conn, actor=actor, outcome="partner_created", partner_id=partner_id,
                         amount=cap, reason=reason or f"name {name!r}")
            for dataset, amount in budgets.items():
                self._write_budget(conn, partner_id, dataset, amount, actor, reason)
            issued = keys.issue(conn, "partner", partner_id, actor)
        return partner_id, issued.key

    def list_partners(self) -> list[Partner]:
        with self.store.read() as conn:
            rows = conn.execute("SELECT * FROM partners ORDER BY id").fetchall()
        return [partners.to_record(row) for row in rows]

    def get_partner(self, partner_id: str) -> Partner:
        """The partner record; raises ``UnknownPartner``."""
        with self.store.read() as conn:
            return partners.load(conn, partner_id)

    def set_budget(self, partner_id: str, dataset: str, amount: Amount,
                   actor: str, reason: str) -> DatasetBudget:
        """Set (not add to) a partner's total budget on a dataset.

        Lowering it below what is spent leaves nothing remaining; spent
        privacy is never given back.
        """
        partners.check_dataset(dataset)
        partners.check_amount(amount, "budget")
        self._check_admin_args(actor, reason)
        with self.store.write() as conn:
            conn.lock_charge(partner_id, dataset)
            partners.load(conn, partner_id)
            self._write_budget(conn, partner_id, dataset, amount, actor, reason)
        return self._dataset_budget(partner_id, dataset)

    def _write_budget(self, conn, partner_id: str, dataset: str, amount: Amount,
                      actor: str, reason: str) -> None:
        conn.execute(
            "INSERT INTO balances (partner_id, dataset, budget_epsilon, budget_delta, budget_rho)"
            " VALUES (?,?,?,?,?) ON CONFLICT (partner_id, dataset) DO UPDATE SET"
            " budget_epsilon = excluded.budget_epsilon, budget_delta = excluded.budget_delta,"
            " budget_rho = excluded.budget_rho", (partner_id, dataset, *amount_params(amount)))
        audit.record(conn, actor=actor, outcome="budget_set", partner_id=partner_id,
                     dataset=dataset, amount=amount, reason=reason)

    def set_per_query_cap(self, partner_id: str, cap: Amount | None, actor: str,
                          reason: str) -> Partner:
        """Set the most one query of this partner may cost (None: no cap)."""
        if cap is not None:
            partners.check_amount(cap, "per-query cap")
        self._check_admin_args(actor, reason)
        with self.store.write() as conn:
            partners.load(conn, partner_id)
            conn.execute("UPDATE partners SET has_cap = ?, cap_epsilon = ?, cap_delta = ?,"
                         " cap_rho = ? WHERE id = ?",
                         (cap is not None, *amount_params(cap or Amount()), partner_id))
            audit.record(conn, actor=actor, outcome="per_query_cap_set", partner_id=partner_id,
                         amount=cap, reason=reason)
            return partners.load(conn, partner_id)

    def suspend(self, partner_id: str, actor: str, reason: str) -> Partner:
        """Suspend: its keys stop authenticating and ``reserve`` refuses it."""
        return self._set_status(partner_id, "suspended", actor, reason)

    def resume(self, partner_id: str, actor: str, reason: str = "resumed") -> Partner:
        return self._set_status(partner_id, "active", actor, reason)

    def _set_status(self, partner_id: str, status: str, actor: str, reason: str) -> Partner:
        self._check_admin_args(actor, reason)
        outcome = "suspended" if status == "suspended" else "resumed"
        with self.store.write() as conn:
            partners.load(conn, partner_id)
            conn.execute("UPDATE partners SET status = ? WHERE id = ?", (status, partner_id))
            audit.record(conn, actor=actor, outcome=outcome, partner_id=partner_id, reason=reason)
            return partners.load(conn, partner_id)

    @staticmethod
    def _check_admin_args(actor: str, reason: str) -> None:
        _check_text(actor, "actor", limit=200)
        _check_text(reason, "reason")

    # -- keys -----------------------------------------------------------------

    def rotate_key(self, partner_id: str, actor: str = "admin") -> str:
        """Issue a new key for the partner; older keys stay valid until revoked.

        The new key shares the partner's budget. Returned once, never stored.
        """
        _check_text(actor, "actor", limit=200)
        with self.store.write() as conn:
            partners.load(conn, partner_id)
            return keys.issue(conn, "partner", partner_id, actor).key

    def create_admin_key(self, actor: str) -> str:
        """Issue an administrator key (role ``admin``). Returned once, never stored."""
        _check_text(actor, "actor", limit=200)
        with self.store.write() as conn:
            return keys.issue(conn, "admin", None, actor).key

    def revoke_key(self, key_id: str, actor: str = "admin", reason: str = "") -> KeyInfo:
        """Revoke a key by its public id; raises ``UnknownKey``. Idempotent."""
        _check_text(actor, "actor", limit=200)
        with self.store.write() as conn:
            return keys.revoke(conn, key_id, actor, reason)

    def get_key(self, key_id: str) -> KeyInfo | None:
        """A key's public record (never the key itself), or None if unknown."""
        try:
            with self.store.read() as conn:
                return keys.get(conn, key_id)
        except UnknownKey:
            return None

    def global_position(self, dataset: str) -> tuple[Amount | None, Amount]:
        """(the dataset's global cap or None, what all partners together spent)."""
        with self.store.read() as conn:
            return accounting.global_position(conn, dataset)

    def list_keys(self, partner_id: str) -> list[KeyInfo]:
        with self.store.read() as conn:
            partners.load(conn, partner_id)
            return keys.for_partner(conn, partner_id)

    def authenticate(self, key: str) -> Principal | None:
        """Who holds ``key``: a ``Principal`` with role ``partner`` or ``admin``.

        Returns None for a malformed, unknown or revoked key. Raises
        ``PartnerSuspended`` for a valid key of a suspended partner.
        """
        with self.store.read() as conn:
            row = keys.match(conn, key)
            if row is None:
                return None
            partner = partners.load(conn, row["partner_id"]) if row["partner_id"] else None
        if partner is not None and not partner.active:
            raise PartnerSuspended(partner.id)
        return Principal(role=row["role"], key_id=row["key_id"], partner=partner)

    # -- caps -----------------------------------------------------------------

    def set_global_cap(self, dataset: str, amount: Amount | None, actor: str,
                       reason: str) -> tuple[Amount | None, Amount]:
        """Cap what all partners together may spend on a dataset (collusion).

        None removes the cap. Returns (cap, spent by all partners so far).
        """
        partners.check_dataset(dataset)
        if amount is not None:
            partners.check_amount(amount, "global cap")
        self._check_admin_args(actor, reason)
        with self.store.write() as conn:
            spent = accounting.global_position(conn, dataset)[1]
            if amount is not None and not spent <= amount:
                raise InvalidArgument(
                    f"a global cap of {amount.describe()} on {dataset!r} is below what all "
                    f"partners already spent ({spent.describe()}); spent privacy cannot be "
                    f"given back. Set a cap of at least {spent.describe()}")
            conn.execute(
                "INSERT INTO global_caps (dataset, has_cap, cap_epsilon, cap_delta, cap_rho)"
                " VALUES (?,?,?,?,?) ON CONFLICT (dataset) DO UPDATE SET has_cap ="
                " excluded.has_cap, cap_epsilon = excluded.cap_epsilon, cap_delta ="
                " excluded.cap_delta, cap_rho = excluded.cap_rho",
                (dataset, amount is not None, *amount_params(amount or Amount())))
            audit.record(conn, actor=actor, outcome="global_cap_set", dataset=dataset,
                         amount=amount, reason=reason)
            return accounting.global_position(conn, dataset)

    # -- charging -------------------------------------------------------------

    def reserve(self, partner_id: str, dataset: str, amount: Amount, request_id: str,
                query_text: str, *, actor: str | None = None) -> Reservation:
        """Hold ``amount`` of the partner's budget on ``dataset`` before noise is drawn.

        Privacy contract: one transaction that holds the partner's and the
        dataset's locks (see ``store/``) checks that the partner is active, that ``amount`` is within the per-query cap, the
        partner's remaining budget and the dataset's remaining global cap, and
        writes a HELD row. From then on ``amount`` counts as spent, even if the
        process dies. The caller may draw noise costing at most ``amount``
        only for a reservation with ``replayed=False``.

        A ``request_id`` already seen for this partner returns the stored
        reservation with ``replayed=True`` and charges nothing (a RELEASED one
        is held again, re-checking limits); the same id with another query,
        dataset or amount raises ``IdempotencyConflict``.

        Refusals raise ``BudgetExhausted`` (``limit`` = ``per_query``,
        ``partner`` or ``global``), ``PartnerSuspended`` or ``UnknownPartner``
        and change nothing but an audit entry of the refusal.
        """
        partners.check_dataset(dataset)
        partners.check_amount(amount)
        _check_text(request_id, "request id", limit=200)
        _check_text(query_text, "query text", limit=100_000)
        actor = actor or f"partner:{partner_id}"
        with self.store.write() as conn:
            outcome = self._reserve_in(conn, partner_id, dataset, amount, request_id,
                                       query_text, actor)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _reserve_in(self, conn, partner_id, dataset, amount, request_id, query_text, actor):
        conn.lock_charge(partner_id, dataset)
        partner = partners.load(conn, partner_id)
        refused = None if partner.active else PartnerSuspended(partner_id)
        row = accounting.find(conn, partner_id, request_id)
        if row is not None:
            accounting.check_replay(row, dataset, amount, query_text)
        if refused is None and row is not None and row["status"] != "RELEASED":
            return accounting.to_record(row, replayed=True)
        refused = refused or accounting.refusal(conn, partner, dataset, amount)
        details = dict(partner_id=partner_id, dataset=dataset, request_id=request_id,
                       query_text=query_text, amount=amount)
        if refused is not None:
            audit.record(conn, actor=actor, outcome="refused", reason=str(refused), **details)
            return refused
        reservation_id = accounting.hold(conn, partner_id, dataset, amount, request_id,
                                         query_text, row["id"] if row is not None else None)
        audit.record(conn, actor=actor, outcome="reserved", **details)
        return accounting.to_record(accounting.load(conn, reservation_id))

    def commit(self, reservation_id: int, answer_json: str | None = None, *,
               actor: str = "service") -> Reservation:
        """Mark a HELD reservation COMMITTED: noise was drawn, the charge is final.

        With ``answer_json`` the answer is stored in the same transaction.
        Committing twice is a no-op; committing a RELEASED reservation raises
        ``InvalidTransition`` (its charge was given back).
        """
        with self.store.write() as conn:
            reservation = accounting.commit(conn, reservation_id, actor)
            if answer_json is not None:
                self._store_answer_in(conn, reservation_id, answer_json)
            return reservation

    def release(self, reservation_id: int, reason: str = "failed before noise", *,
                actor: str = "service") -> Reservation:
        """Give back a HELD reservation's charge.

        Privacy contract: call this ONLY when the request failed before any
        noise was drawn. Releasing a COMMITTED reservation raises
        ``InvalidTransition``; releasing twice is a no-op.
        """
        with self.store.write() as conn:
            return accounting.release(conn, reservation_id, actor, reason)

    def store_answer(self, reservation_id: int, answer_json: str) -> None:
        """Keep the answer of a request so a retry returns it at no new cost."""
        with self.store.write() as conn:
            self._store_answer_in(conn, reservation_id, answer_json)

    @staticmethod
    def _store_answer_in(conn, reservation_id: int, answer_json: str) -> None:
        _check_text(answer_json, "answer", limit=50_000_000)
        row = accounting.load(conn, reservation_id, lock=True)
        if row["answer"] is not None and row["answer"] != answer_json:
            raise IdempotencyConflict(
                f"reservation {reservation_id} already has a different answer; answers are final")
        conn.execute("UPDATE reservations SET answer = ? WHERE id = ?",
                     (answer_json, reservation_id))

    def get_answer(self, partner_id: str, request_id: str) -> str | None:
        """The stored answer of a partner's request, or None."""
        with self.store.read() as conn:
            row = accounting.find(conn, partner_id, request_id)
        return None if row is None else row["answer"]

    def find_answer(self, partner_id: str, query_text: str) -> str | None:
        """The stored answer of any COMMITTED request of the partner with this query text."""
        with self.store.read() as conn:
            row = conn.execute(
                "SELECT answer FROM reservations WHERE partner_id = ? AND query_text = ?"
                " AND status = 'COMMITTED' AND answer IS NOT NULL ORDER BY id LIMIT 1",
                (partner_id, query_text)).fetchone()
        return None if row is None else row["answer"]

    def get_reservation(self, partner_id: str, request_id: str) -> Reservation | None:
        with self.store.read() as conn:
            row = accounting.find(conn, partner_id, request_id)
        return None if row is None else accounting.to_record(row)

    # -- reading --------------------------------------------------------------

    def spent(self, partner_id: str, dataset: str) -> Amount:
        """HELD + COMMITTED charges of the partner on the dataset."""
        return self._dataset_budget(partner_id, dataset).spent

    def remaining(self, partner_id: str, dataset: str) -> Amount:
        """Budget minus spent, never below zero (the global cap is not included)."""
        return self._dataset_budget(partner_id, dataset).remaining

    def global_spent(self, dataset: str) -> Amount:
        with self.store.read() as conn:
            return accounting.global_position(conn, dataset)[1]

    def budget_summary(self, partner_id: str) -> list[DatasetBudget]:
        """Per dataset with a budget or a charge: budget, spent, remaining, global cap."""
        with self.store.read() as conn:
            partners.load(conn, partner_id)
            datasets = [r[0] for r in conn.execute(
                "SELECT dataset FROM balances WHERE partner_id = ? ORDER BY dataset",
                (partner_id,))]
        return [self._dataset_budget(partner_id, d) for d in datasets]

    def _dataset_budget(self, partner_id: str, dataset: str) -> DatasetBudget:
        with self.store.read() as conn:
            partners.load(conn, partner_id)
            budget, spent = accounting.balance(conn, partner_id, dataset)
            cap, global_spent = accounting.global_position(conn, dataset)
        return DatasetBudget(dataset=dataset, budget=budget, spent=spent,
                             remaining=budget.saturating_sub(spent), global_cap=cap,
                             global_spent=global_spent)

    def reservations(self, partner_id: str | None = None,
                     dataset: str | None = None) -> list[Reservation]:
        """Reservation rows (every status), oldest first."""
        sql, params = "SELECT * FROM reservations WHERE 1=1", []
        if partner_id is not None:
            sql, params = sql + " AND partner_id = ?", [*params, partner_id]
        if dataset is not None:
            sql, params = sql + " AND dataset = ?", [*params, dataset]
        with self.store.read() as conn:
            rows = conn.execute(sql + " ORDER BY id", params).fetchall()
        return [accounting.to_record(row) for row in rows]

    def ledger_entries(self, partner_id: str | None = None,
                       since: str | datetime | None = None) -> list[AuditEntry]:
        """The audit log, oldest first; ``since`` is a datetime or ISO text (UTC if naive)."""
        with self.store.read() as conn:
            return audit.entries(conn, partner_id, since)

    def integrity_check(self) -> str:
        """``"ok"`` when sound: SQLite's ``PRAGMA integrity_check``; on PostgreSQL, every
        partner's spent counter equals the sum of its charged reservations."""
        return self.store.integrity_check()
