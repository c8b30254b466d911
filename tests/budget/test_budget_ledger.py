"""Ledger behaviour in one process: limits, idempotency, keys, audit, schema."""

import sqlite3
from fractions import Fraction
from pathlib import Path

import pytest

from budget.store.sqlite import MIGRATIONS

from budget import (
    Amount, BudgetExhausted, IdempotencyConflict, InvalidArgument, InvalidTransition, Ledger,
    LedgerFileError, PartnerSuspended, UnknownKey, UnknownPartner,
)
from budget.store import SCHEMA_VERSION

from pg_helpers import raw_error, raw_execute

EPS = Amount(epsilon=0.5)


@pytest.fixture
def ledger(location):
    with Ledger(location) as led:
        yield led


@pytest.fixture
def partner(ledger):
    pid, _ = ledger.create_partner("IFA", {"purchases": Amount(epsilon=1)}, actor="alice",
                                   reason="pilot")
    return pid


def test_partner_ids_are_unique_slugs(ledger):
    first, _ = ledger.create_partner("IFA Insurance, Inc.", actor="a")
    second, _ = ledger.create_partner("IFA insurance inc", actor="a")
    assert (first, second) == ("ifa-insurance-inc", "ifa-insurance-inc-2")
    assert [p.id for p in ledger.list_partners()] == [first, second]


def test_a_restarted_process_knows_what_was_spent(location):
    ledger = Ledger(location)
    pid, _ = ledger.create_partner("ifa", {"purchases": Amount(epsilon=1)}, actor="a")
    ledger.commit(ledger.reserve(pid, "purchases", Amount(epsilon=0.3), "r1", "q").id)
    ledger.reserve(pid, "purchases", Amount(epsilon=0.2), "r2", "q2")  # HELD, never committed
    ledger.close()
    with Ledger(location, create=False) as reopened:
        assert reopened.spent(pid, "purchases") == Amount(epsilon=0.5)
        assert reopened.remaining(pid, "purchases") == Amount(epsilon=0.5)


def test_refusal_names_the_numbers_and_changes_only_the_audit(ledger, partner):
    ledger.reserve(partner, "purchases", Amount(epsilon=0.8), "r1", "q1")
    rows_before = ledger.reservations()
    with pytest.raises(BudgetExhausted) as info:
        ledger.reserve(partner, "purchases", EPS, "r2", "q2")
    err = info.value
    assert str(err).startswith(
        "requested ε=0.50, remaining ε=0.20 (partner budget for dataset 'purchases')")
    assert (err.limit, err.requested, err.remaining) == ("partner", EPS, Amount(epsilon=0.2))
    assert ledger.reservations() == rows_before
    assert ledger.spent(partner, "purchases") == Amount(epsilon=0.8)
    assert ledger.ledger_entries()[-1].outcome == "refused"


def test_no_budget_on_a_dataset_means_refusal(ledger, partner):
    with pytest.raises(BudgetExhausted, match="dataset 'returns'"):
        ledger.reserve(partner, "returns", Amount(epsilon=0.01), "r", "q")


def test_per_query_cap(ledger):
    pid, _ = ledger.create_partner("ifa", {"purchases": Amount(epsilon=5)},
                                   per_query_cap=Amount(epsilon=1), actor="a")
    with pytest.raises(BudgetExhausted) as info:
        ledger.reserve(pid, "purchases", Amount(epsilon=1.5), "r", "q")
    assert info.value.limit == "per_query"
    ledger.set_per_query_cap(pid, None, "a", "trusted")
    assert ledger.reserve(pid, "purchases", Amount(epsilon=1.5), "r", "q").status == "HELD"


def test_global_cap_stops_colluding_partners(ledger):
    a, _ = ledger.create_partner("a", {"purchases": Amount(epsilon=1)}, actor="t")
    b, _ = ledger.create_partner("b", {"purchases": Amount(epsilon=1)}, actor="t")
    ledger.set_global_cap("purchases", Amount(epsilon=1.5), "t", "collusion bound")
    ledger.reserve(a, "purchases", Amount(epsilon=1), "r", "q")
    with pytest.raises(BudgetExhausted) as info:
        ledger.reserve(b, "purchases", Amount(epsilon=0.6), "r", "q")
    assert info.value.limit == "global" and info.value.remaining == Amount(epsilon=0.5)
    assert ledger.reserve(b, "purchases", EPS, "r2", "q").status == "HELD"
    assert ledger.global_spent("purchases") == Amount(epsilon=1.5)


def test_suspended_partner_is_refused_and_resumed(ledger, partner):
    ledger.suspend(partner, "alice", "unpaid invoice")
    with pytest.raises(PartnerSuspended):
        ledger.reserve(partner, "purchases", EPS, "r", "q")
    assert ledger.reservations() == []
    ledger.resume(partner, "alice")
    assert ledger.reserve(partner, "purchases", EPS, "r", "q").status == "HELD"


def test_unknown_partner(ledger):
    with pytest.raises(UnknownPartner, match="'nobody'"):
        ledger.reserve("nobody", "purchases", EPS, "r", "q")


def test_same_request_id_never_charges_twice(ledger, partner):
    first = ledger.reserve(partner, "purchases", EPS, "req-1", "SELECT COUNT(*)")
    ledger.commit(first.id, answer_json='{"count": 17}')
    again = ledger.reserve(partner, "purchases", EPS, "req-1", "SELECT COUNT(*)")
    assert again.replayed and again.id == first.id and again.status == "COMMITTED"
    assert ledger.spent(partner, "purchases") == EPS
    assert ledger.get_answer(partner, "req-1") == '{"count": 17}'
    assert ledger.get_answer(partner, "other") is None


def test_same_request_id_with_another_query_conflicts(ledger, partner):
    ledger.reserve(partner, "purchases", EPS, "req-1", "SELECT COUNT(*)")
    with pytest.raises(IdempotencyConflict):
        ledger.reserve(partner, "purchases", EPS, "req-1", "SELECT SUM(amount)")
    with pytest.raises(IdempotencyConflict):
        ledger.reserve(partner, "purchases", Amount(epsilon=0.1), "req-1", "SELECT COUNT(*)")


def test_released_request_may_be_held_again(ledger, partner):
    r = ledger.reserve(partner, "purchases", EPS, "req-1", "q")
    assert ledger.release(r.id).status == "RELEASED"
    assert ledger.spent(partner, "purchases") == Amount()
    again = ledger.reserve(partner, "purchases", EPS, "req-1", "q")
    assert (again.id, again.status, again.replayed) == (r.id, "HELD", False)
    assert ledger.spent(partner, "purchases") == EPS


def test_commit_and_release_transitions(ledger, partner):
    r = ledger.reserve(partner, "purchases", EPS, "a", "q")
    ledger.commit(r.id)
    assert ledger.commit(r.id).status == "COMMITTED"  # idempotent
    with pytest.raises(InvalidTransition):
        ledger.release(r.id)
    s = ledger.reserve(partner, "purchases", Amount(epsilon=0.1), "b", "q")
    ledger.release(s.id)
    with pytest.raises(InvalidTransition):
        ledger.commit(s.id)


def test_answers_are_final(ledger, partner):
    r = ledger.reserve(partner, "purchases", EPS, "a", "q")
    ledger.store_answer(r.id, '{"x": 1}')
    ledger.store_answer(r.id, '{"x": 1}')
    with pytest.raises(IdempotencyConflict):
        ledger.store_answer(r.id, '{"x": 2}')


def test_zcdp_rho_adds(ledger):
    pid, _ = ledger.create_partner("z", {"purchases": Amount(rho=Fraction(1, 2))}, actor="t")
    for i in range(5):
        ledger.reserve(pid, "purchases", Amount(rho=0.1), f"r{i}", "q")
    assert ledger.remaining(pid, "purchases") == Amount()
    with pytest.raises(BudgetExhausted, match="ρ"):
        ledger.reserve(pid, "purchases", Amount(rho=0.01), "r9", "q")
    with pytest.raises(BudgetExhausted, match="ε"):  # no epsilon budget on a zCDP dataset
        ledger.reserve(pid, "purchases", Amount(epsilon=0.01), "r8", "q")


def test_keys_rotate_revoke_authenticate(ledger):
    pid, first = ledger.create_partner("ifa", {"purchases": Amount(epsilon=1)}, actor="t")
    assert first.startswith("dpq_") and len(first) > 50
    second = ledger.rotate_key(pid, "t")
    for key in (first, second):
        principal = ledger.authenticate(key)
        assert (principal.role, principal.partner_id) == ("partner", pid)
    first_id = ledger.authenticate(first).key_id
    ledger.revoke_key(first_id, "t", "leaked")
    assert ledger.authenticate(first) is None
    assert ledger.authenticate(second) is not None
    assert [k.revoked_at is not None for k in ledger.list_keys(pid)] == [True, False]
    with pytest.raises(UnknownKey):
        ledger.revoke_key("000000000000", "t")


def test_keys_are_stored_only_as_hashes(ledger, location):
    _, key = ledger.create_partner("ifa", actor="t")
    stored = repr(raw_execute(location, "SELECT * FROM api_keys"))
    assert "key_id" not in stored and len(stored) > 64
    assert key not in stored and key.split("_", 2)[2] not in stored
    if not location.startswith("postgresql://"):
        raw = Path(location).read_bytes() + Path(location + "-wal").read_bytes()
        assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw


@pytest.mark.parametrize("key", ["", "dpq_", "nonsense", None, 42, "dpq_000000000000_" + "A" * 43])
def test_bad_keys_do_not_authenticate(ledger, key):
    ledger.create_partner("ifa", actor="t")
    assert ledger.authenticate(key) is None


def test_admin_key_and_suspended_partner_key(ledger, partner):
    admin = ledger.create_admin_key("root")
    assert admin.startswith("dpqa_")
    principal = ledger.authenticate(admin)
    assert (principal.role, principal.partner) == ("admin", None)
    key = ledger.rotate_key(partner, "t")
    ledger.suspend(partner, "t", "audit")
    with pytest.raises(PartnerSuspended):
        ledger.authenticate(key)
    forged = "dpq_" + admin[len("dpqa_"):]  # an admin secret with a partner prefix
    assert ledger.authenticate(forged) is None


@pytest.mark.parametrize("statement", ["UPDATE audit SET reason = 'nothing happened'",
                                       "DELETE FROM audit"])
def test_audit_is_append_only(ledger, partner, location, statement):
    before = ledger.ledger_entries()
    with pytest.raises(raw_error(location), match="append-only"):
        raw_execute(location, statement)
    assert ledger.ledger_entries() == before


def test_audit_cannot_be_truncated_on_postgresql(ledger, partner, location):
    if not location.startswith("postgresql://"):
        pytest.skip("SQLite has no TRUNCATE (DELETE is refused above)")
    with pytest.raises(raw_error(location), match="append-only: rows cannot be truncated"):
        raw_execute(location, "TRUNCATE audit")
    assert len(ledger.ledger_entries()) > 0


def test_audit_records_who_what_and_why(ledger, partner):
    ledger.set_budget(partner, "purchases", Amount(epsilon=2), "bob", "renewal")
    entry = ledger.ledger_entries(partner)[-1]
    assert (entry.actor, entry.outcome, entry.reason, entry.amount) == (
        "bob", "budget_set", "renewal", Amount(epsilon=2))
    assert entry.at.endswith("+00:00")
    assert ledger.ledger_entries(since="2999-01-01") == []
    with pytest.raises(InvalidArgument):
        ledger.ledger_entries(since="yesterday")


def test_admin_actions_need_a_reason(ledger, partner):
    with pytest.raises(InvalidArgument, match="reason"):
        ledger.set_budget(partner, "purchases", EPS, "bob", "")
    with pytest.raises(InvalidArgument, match="dataset"):
        ledger.set_budget(partner, "bad name!", EPS, "bob", "why")


def test_amounts_are_stored_as_exact_text(ledger, partner, location):
    ledger.reserve(partner, "purchases", Amount(epsilon=0.1), "r", "q")
    assert raw_execute(location, "SELECT epsilon FROM reservations") == [("1/10",)]
    with pytest.raises(raw_error(location), match="(?i)check"):
        raw_execute(location, "UPDATE reservations SET epsilon = '0.1'")
    with pytest.raises(raw_error(location)):
        raw_execute(location, "UPDATE reservations SET epsilon = 0.1")
    assert ledger.spent(partner, "purchases") == Amount(epsilon=0.1)


def test_a_version_1_ledger_is_migrated_at_open(tmp_path):
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    ledger = Ledger(tmp_path / "old.db", create=False)
    assert ledger.store.schema_version() == len(MIGRATIONS)
    indexes = {r[0] for r in ledger.store.connection().execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "reservations_by_query" in indexes
    assert len(ledger.ledger_id) == 36  # version 3 gave the old ledger an identity
    ledger.close()


def test_schema_version_and_newer_ledger_refused(location):
    ledger = Ledger(location)
    assert ledger.store.schema_version() == SCHEMA_VERSION
    ledger.close()
    if location.startswith("postgresql://"):
        raw_execute(location, "UPDATE ledger_schema SET version = 99")
    else:
        assert raw_execute(location, "PRAGMA journal_mode") == [("wal",)]
        raw_execute(location, "PRAGMA user_version = 99")
    with pytest.raises(LedgerFileError, match="newer"):
        Ledger(location)


def test_budget_summary(ledger, partner):
    ledger.set_global_cap("purchases", Amount(epsilon=10), "t", "cap")
    ledger.reserve(partner, "purchases", Amount(epsilon=0.25), "r", "q")
    [row] = ledger.budget_summary(partner)
    assert (row.dataset, row.budget, row.spent, row.remaining) == (
        "purchases", Amount(epsilon=1), Amount(epsilon=0.25), Amount(epsilon=0.75))
    assert (row.global_cap, row.global_spent) == (Amount(epsilon=10), Amount(epsilon=0.25))
