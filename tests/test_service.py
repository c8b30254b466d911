"""The pipeline: charge before noise, refusals free, repeats free, charges stay."""
from __future__ import annotations

import pytest

from budget.amounts import Amount
from dpquery.engine import execute
from dpquery.errors import BudgetExhausted, IdempotencyConflict, InvalidQuery

SQL = "SELECT region, PURCHASE_RATE(category = 'snacks') AS r FROM purchases GROUP BY region"


def add_partner(svc) -> str:
    """Partner 'IFA' with ε = 1 on purchases, for pricing."""
    pid, _key = svc.ledger.create_partner("IFA", budgets={"purchases": Amount(epsilon=1)},
                                          purposes=["pricing"], actor="test", reason="test")
    return pid


@pytest.fixture()
def partner(svc):
    return add_partner(svc)


def spent(svc, pid):
    return svc.ledger.spent(pid, "purchases").epsilon


def test_ledger_is_charged_before_noise_is_drawn(svc, partner, monkeypatch):
    seen = []
    real = execute.release

    def spy(plan):
        seen.append(spent(svc, partner))
        return real(plan)

    monkeypatch.setattr(execute, "release", spy)
    svc.run(partner, {"sql": SQL, "epsilon": 0.25})
    assert seen == [pytest.approx(0.25)]


def test_charge_stays_when_the_request_fails_after_noise(svc, partner, monkeypatch):
    def broken(plan, noisy):
        raise RuntimeError("post-processing failed")

    monkeypatch.setattr(execute, "answer_rows", broken)
    with pytest.raises(RuntimeError):
        svc.run(partner, {"sql": SQL, "epsilon": 0.25})
    assert spent(svc, partner) == Amount(epsilon=0.25).epsilon


def test_refused_queries_charge_nothing(svc, partner):
    for body in ({"sql": "SELECT * FROM purchases", "epsilon": 0.5},
                 {"sql": "SELECT COUNT(*) FROM purchases WHERE category = 'alcohol'", "epsilon": 0.5},
                 {"sql": SQL, "epsilon": 5}):
        with pytest.raises(InvalidQuery.__mro__[1]):
            svc.run(partner, body)
    assert spent(svc, partner) == 0


def test_repeat_is_free_and_identical(svc, partner):
    first = svc.run(partner, {"sql": SQL, "epsilon": 0.25})
    again = svc.run(partner, {"sql": "select region, purchase_rate(category='snacks') as r "
                                     "from purchases group by region", "epsilon": 0.25})
    assert again["repeat"] is True and again["charged"]["text"] == "ε=0"
    assert again["rows"] == first["rows"]
    assert spent(svc, partner) == Amount(epsilon=0.25).epsilon


def test_rephrased_query_is_charged(svc, partner):
    svc.run(partner, {"sql": SQL, "epsilon": 0.25})
    svc.run(partner, {"sql": SQL.replace("GROUP BY", "WHERE year >= 2016 GROUP BY"), "epsilon": 0.25})
    assert spent(svc, partner) == Amount(epsilon=0.5).epsilon


def test_budget_refusal_carries_the_numbers(svc, partner):
    svc.run(partner, {"sql": SQL, "epsilon": 0.8})
    with pytest.raises(BudgetExhausted) as err:
        svc.run(partner, {"sql": "SELECT COUNT(*) FROM purchases", "epsilon": 0.5})
    assert err.value.details["limit"] == "partner"
    assert err.value.details["remaining"]["epsilon"] == "1/5"
    assert "requested ε=0.5" in err.value.message and "remaining ε=0.2" in err.value.message


def test_idempotency_key_returns_one_answer_for_one_charge(svc, partner):
    body = {"sql": SQL, "epsilon": 0.25}
    first = svc.run(partner, body, idempotency_key="abc")
    second = svc.run(partner, body, idempotency_key="abc")
    assert second["rows"] == first["rows"] and spent(svc, partner) == Amount(epsilon=0.25).epsilon
    with pytest.raises(IdempotencyConflict):
        svc.run(partner, {"sql": "SELECT COUNT(*) FROM purchases", "epsilon": 0.25},
                idempotency_key="abc")


def test_answer_reports_spend_split_and_remaining(svc, partner):
    answer = svc.run(partner, {"sql": "SELECT COUNT(*) AS n, AVG(amount) AS m FROM purchases",
                               "epsilon": 0.5})
    spends = {a["alias"]: a["spend"]["epsilon"] for a in answer["aggregates"]}
    assert spends == {"n": "1/4", "m": "1/4"}
    assert answer["remaining"]["epsilon"] == "1/2"
    assert answer["columns"] == ["n", "n_ci_low", "n_ci_high", "m", "m_ci_low", "m_ci_high"]


def test_history_and_stored_answers_are_per_partner(svc, partner):
    answer = svc.run(partner, {"sql": SQL, "epsilon": 0.25})
    other, _ = svc.ledger.create_partner("Other", budgets={"purchases": Amount(epsilon=1)},
                                         purposes=["x"], actor="test", reason="test")
    assert [h["query_id"] for h in svc.history(partner)] == [answer["query_id"]]
    assert svc.stored_answer(partner, answer["query_id"])["rows"] == answer["rows"]
    assert svc.history(other) == []
    with pytest.raises(Exception) as err:
        svc.stored_answer(other, answer["query_id"])
    assert getattr(err.value, "status", None) == 404


def test_repeat_is_free_whatever_the_idempotency_keys(svc, partner):
    body = {"sql": SQL, "epsilon": 0.25}
    first = svc.run(partner, body, idempotency_key="one")
    assert svc.run(partner, body)["rows"] == first["rows"]
    assert svc.run(partner, body, idempotency_key="two")["repeat"] is True
    assert spent(svc, partner) == Amount(epsilon=0.25).epsilon


def test_a_request_that_failed_after_noise_is_not_retried_for_free(svc, partner, monkeypatch):
    """The charge stays; a retry is told at once that the answer was lost."""
    from dpquery.errors import QueryInterrupted

    def broken(plan, noisy):
        raise RuntimeError("post-processing failed")

    monkeypatch.setattr(execute, "answer_rows", broken)
    with pytest.raises(RuntimeError):
        svc.run(partner, {"sql": SQL, "epsilon": 0.25})
    monkeypatch.undo()
    with pytest.raises(QueryInterrupted, match="charge stays"):
        svc.run(partner, {"sql": SQL, "epsilon": 0.25})
    answer = svc.run(partner, {"sql": SQL, "epsilon": 0.25}, idempotency_key="fresh")
    assert answer["repeat"] is False
    assert spent(svc, partner) == Amount(epsilon=0.5).epsilon


def test_an_abandoned_hold_is_reported_not_waited_for(svc, partner, monkeypatch):
    """A hold left by a killed process: the retry is refused at once, charge kept."""
    from dpquery.errors import QueryInterrupted
    from dpquery.service import identify
    text, cache_id = identify(svc.parse({"sql": SQL, "epsilon": 0.25}), svc.tables["purchases"])
    svc.ledger.reserve(partner, "purchases", Amount(epsilon=0.25), cache_id, text)
    monkeypatch.setattr(type(svc), "_abandoned", lambda self, r: True)
    with pytest.raises(QueryInterrupted):
        svc.run(partner, {"sql": SQL, "epsilon": 0.25})
    assert spent(svc, partner) == Amount(epsilon=0.25).epsilon


def test_zcdp_dataset_charges_rho_and_reports_the_implied_epsilon(tmp_path, demo_data):
    from settings_helpers import make_settings, open_service
    settings = make_settings(tmp_path, demo_data, measure="zcdp", max_epsilon_per_query=1.0)
    with open_service(settings) as svc:
        pid, _ = svc.ledger.create_partner("Z", budgets={"purchases": Amount(rho=0.5)},
                                           actor="t", reason="t")
        answer = svc.run(pid, {"sql": SQL, "rho": 0.1})
        assert answer["cost"]["rho"] == "1/10"
        assert {n["mechanism"] for n in answer["aggregates"][0]["noise"]} == {"Integer Gaussian"}
        assert answer["remaining"]["rho"] == "2/5"
        assert answer["remaining"]["implied"]["delta"] == pytest.approx(1e-6)
        with pytest.raises(InvalidQuery, match="accounted in rho"):
            svc.run(pid, {"sql": SQL, "epsilon": 0.1})
