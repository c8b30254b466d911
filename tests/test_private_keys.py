"""Private key selection: grouping by a column without a public domain under (ε, δ)."""
from __future__ import annotations

import dataclasses

import pytest

from budget.amounts import Amount
from budget.ledger import Ledger
from dpquery.engine import catalog, execute, plan as planner
from dpquery.errors import BudgetExhausted, InvalidQuery, PolicyViolation
from dpquery.engine.request import parse_body
from dpquery.engine.reference import total_loss
from dpquery.service import Service

SQL = "SELECT category, COUNT(*) AS n, AVG(amount) AS m FROM purchases GROUP BY category"


def without_category_domain(table, delta: float):
    ds = table.dataset
    # a customer buys in up to all 12 categories: the bound comes from config, not data
    col = dataclasses.replace(ds.columns["category"], values=None, groups_per_customer=12)
    ds = dataclasses.replace(ds, delta=delta, columns={**ds.columns, "category": col})
    return catalog.Table(ds, table.frame, table.schema, table.version)


@pytest.fixture()
def table(settings):
    return catalog.open_table(settings.datasets["purchases"])


def plan_for(table, body):
    request = parse_body(body)
    return planner.build(request, catalog.check_query(request.query, {"purchases": table}))


def test_grouping_by_a_private_column_is_refused_without_delta(table):
    with pytest.raises(PolicyViolation, match="opt the dataset into private key selection"):
        plan_for(without_category_domain(table, 0.0), {"sql": SQL, "epsilon": 1.0})


def test_private_keys_release_only_thresholded_groups_under_epsilon_delta(table):
    private = without_category_domain(table, 1e-6)
    plan = plan_for(private, {"sql": SQL, "epsilon": 2.0})  # produce clears the threshold by far
    assert plan.private_keys and plan.delta == 1e-6
    assert 0 < plan.key_release.threshold < 2000  # a count of customers, not of rows
    eps, delta = total_loss([plan.key_release.measurement, *plan.measurements], approximate=True)
    assert eps <= 2.0 and delta <= 1e-6
    rows = execute.answer_rows(plan, execute.release(plan))
    released = {r["category"] for r in rows}
    assert released <= set(table.dataset.columns["category"].values)
    assert not released & set(table.dataset.excluded_categories)
    assert "produce" in released  # large groups pass the threshold
    assert all(r["n_ci_low"] <= r["n"] <= r["n_ci_high"] for r in rows)


def test_service_charges_delta_for_private_keys(settings, table):
    ledger = Ledger(settings.ledger_path)
    svc = Service(settings, ledger, {"purchases": without_category_domain(table, 1e-6)})
    rich, _ = ledger.create_partner("Rich", budgets={"purchases": Amount(epsilon=2, delta=1e-5)},
                                    actor="t", reason="t")
    poor, _ = ledger.create_partner("Poor", budgets={"purchases": Amount(epsilon=2)},
                                    actor="t", reason="t")
    answer = svc.run(rich, {"sql": SQL, "epsilon": 0.5})
    assert (answer["cost"]["epsilon"], answer["cost"]["delta"]) == ("1/2", "1/1000000")
    assert ledger.spent(rich, "purchases") == Amount(epsilon=0.5, delta=1e-6)
    with pytest.raises(BudgetExhausted):
        svc.run(poor, {"sql": SQL, "epsilon": 0.5})
    assert ledger.spent(poor, "purchases") == Amount()
    ledger.close()


def _private_default_bound(table, float_amount: bool):
    """category without public values and the dataset's default groups bound (2)."""
    ds = table.dataset
    cols = {**ds.columns, "category": dataclasses.replace(ds.columns["category"], values=None,
                                                          groups_per_customer=None)}
    if float_amount:
        cols["amount"] = dataclasses.replace(ds.columns["amount"], resolution=None)
    ds = dataclasses.replace(ds, delta=1e-6, columns=cols)
    return dataclasses.replace(table, dataset=ds)


def test_float_average_over_private_keys_is_refused_before_any_data_is_read(table):
    """Its noise would depend on how many keys the data releases (issue 13, item 2)."""
    private = _private_default_bound(table, float_amount=True)
    with pytest.raises(InvalidQuery, match="Declare a `resolution` for amount"):
        plan_for(private, {"sql": "SELECT category, AVG(amount) AS m FROM purchases "
                                  "GROUP BY category", "epsilon": 1.0})


def test_private_keys_answer_every_time_whatever_the_data_releases(table):
    """Released keys outnumber the planned placeholders; every run still answers."""
    private = _private_default_bound(table, float_amount=False)
    sql = ("SELECT category, AVG(amount) AS m, SUM(amount) AS s, COUNT(*) AS n FROM purchases "
           "GROUP BY category")
    for _ in range(10):
        plan = plan_for(private, {"sql": sql, "epsilon": 1.0})
        rows = execute.answer_rows(plan, execute.release(plan))
        assert len(rows) > catalog.groups_bound(private.dataset, ["category"]) + 1


def test_released_keys_are_capped_at_max_groups(table):
    private = _private_default_bound(table, float_amount=False)
    private = dataclasses.replace(private, dataset=dataclasses.replace(private.dataset, max_groups=3))
    plan = plan_for(private, {"sql": "SELECT category, COUNT(*) AS n FROM purchases "
                                     "GROUP BY category", "epsilon": 1.0})
    assert len(execute.answer_rows(plan, execute.release(plan))) == 3
