"""A model-based test: random reserve / commit / release / set-budget / suspend / resume.

Run on both backends: each example gets a fresh SQLite file or PostgreSQL database.
"""

import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test,
)

from budget import Amount, BudgetExhausted, Ledger, PartnerSuspended

EPSILONS = st.sampled_from([Fraction(1, 10), Fraction(1, 4), Fraction(1, 2), Fraction(1)])
DATASET = "purchases"


class LedgerMachine(RuleBasedStateMachine):
    #: Where each example's ledger lives; set by the test below (None: a SQLite file).
    new_database = None
    drop_database = None

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-sm-"))
        self.location = (self.new_database() if self.new_database
                         else str(self.dir / "l.db"))
        self.ledger = Ledger(self.location)
        self.pid, _ = self.ledger.create_partner("p", {DATASET: Amount(epsilon=1)}, actor="t")
        self.budget, self.active = Fraction(1), True
        self.model: dict[int, tuple[str, Fraction, str]] = {}  # id -> status, eps, request id
        self.counter = 0

    def spent_in_model(self) -> Fraction:
        return sum((e for s, e, _ in self.model.values() if s != "RELEASED"), Fraction(0))

    def ids_with(self, status: str) -> list[int]:
        return sorted(i for i, (s, _, _) in self.model.items() if s == status)

    @rule(eps=EPSILONS)
    def reserve(self, eps):
        self.counter += 1
        request_id = f"r{self.counter}"
        fits = self.active and self.spent_in_model() + eps <= self.budget
        before = (self.ledger.reservations(), len(self.ledger.ledger_entries()))
        try:
            r = self.ledger.reserve(self.pid, DATASET, Amount(epsilon=eps), request_id, "q")
        except (BudgetExhausted, PartnerSuspended) as exc:
            assert not fits, exc
            assert isinstance(exc, PartnerSuspended) == (not self.active)
            assert self.ledger.reservations() == before[0]  # a refusal changes nothing...
            entries = self.ledger.ledger_entries()
            assert len(entries) == before[1] + 1 and entries[-1].outcome == "refused"  # ...but the audit
            return
        assert fits and r.status == "HELD" and not r.replayed
        self.model[r.id] = ("HELD", eps, request_id)

    @precondition(lambda self: self.model)
    @rule(index=st.integers(min_value=0))
    def replay(self, index):
        ids = sorted(self.model)
        rid = ids[index % len(ids)]
        status, eps, request_id = self.model[rid]
        if status == "RELEASED" or not self.active:
            return  # re-holding is covered in test_budget_ledger
        spent = self.ledger.spent(self.pid, DATASET)
        r = self.ledger.reserve(self.pid, DATASET, Amount(epsilon=eps), request_id, "q")
        assert (r.id, r.replayed, r.status) == (rid, True, status)
        assert self.ledger.spent(self.pid, DATASET) == spent

    @precondition(lambda self: self.ids_with("HELD"))
    @rule(index=st.integers(min_value=0))
    def commit(self, index):
        held = self.ids_with("HELD")
        rid = held[index % len(held)]
        assert self.ledger.commit(rid).status == "COMMITTED"
        self.model[rid] = ("COMMITTED", *self.model[rid][1:])

    @precondition(lambda self: self.ids_with("HELD"))
    @rule(index=st.integers(min_value=0))
    def release(self, index):
        held = self.ids_with("HELD")
        rid = held[index % len(held)]
        assert self.ledger.release(rid).status == "RELEASED"
        self.model[rid] = ("RELEASED", *self.model[rid][1:])

    @rule(eps=st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(1), Fraction(3, 2)]))
    def set_budget(self, eps):
        self.ledger.set_budget(self.pid, DATASET, Amount(epsilon=eps), "admin", "test")
        self.budget = eps

    @rule()
    def suspend(self):
        self.ledger.suspend(self.pid, "admin", "test")
        self.active = False

    @rule()
    def resume(self):
        self.ledger.resume(self.pid, "admin", "test")
        self.active = True

    @invariant()
    def books_balance(self):
        spent = self.ledger.spent(self.pid, DATASET)
        charged = [r for r in self.ledger.reservations(self.pid) if r.charged]
        assert spent == sum((r.amount for r in charged), Amount()) == Amount(
            epsilon=self.spent_in_model())
        remaining = self.ledger.remaining(self.pid, DATASET)
        assert remaining.epsilon >= 0
        assert remaining.epsilon == max(self.budget - self.spent_in_model(), Fraction(0))

    def teardown(self):
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.drop_database:
            self.drop_database(self.location)


SETTINGS = settings(max_examples=25, stateful_step_count=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def test_ledger_state_machine(backend, request):
    machine = type("Machine", (LedgerMachine,), {})
    if backend == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        machine.new_database = staticmethod(cluster.create_database)
        machine.drop_database = staticmethod(cluster.drop_database)
    run_state_machine_as_test(machine, settings=SETTINGS)
