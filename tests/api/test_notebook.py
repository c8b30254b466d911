"""A notebook session with the client: preview, query, budget, batch to one DataFrame."""
from __future__ import annotations

from fractions import Fraction

import pandas as pd
from pandas.api import types

from dpquery.engine import catalog, plan as planner
from dpquery.engine.request import parse_body
from dpquery.spend import statistic_shares

from .test_client import FlaskAdapter, _client

RATES = ("SELECT region, age_band, PURCHASE_RATE(category = 'snacks') AS r "
         "FROM purchases GROUP BY region, age_band")
BATCH = ["SELECT COUNT(*) AS n FROM purchases",
         "SELECT region, AVG(amount) AS a, MEDIAN(amount) AS m FROM purchases GROUP BY region"]


def test_a_notebook_session(app, partner):
    dp = _client(FlaskAdapter(app), partner[1])
    preview = dp.preview(RATES, epsilon=0.5)
    assert preview["cost"]["epsilon"] == "1/2" and preview["aggregates"][0]["expected_halfwidth"] > 0
    df = dp.query(RATES, epsilon=0.5)
    assert len(df) == 12 * 6 and types.is_float_dtype(df["r"])
    assert df.attrs["remaining"]["epsilon"] == "5/2"
    budget = dp.budget(epsilon=0.1)["datasets"][0]
    assert budget["queries_left"]["count"] == 25 and budget["limit"] == "partner"
    plan = dp.batch(BATCH, epsilon="0.1", dry_run=True)
    assert plan.attrs["total"]["text"] == "ε=0.2" and list(plan["epsilon"]) == [0.1, 0.1]
    frame = dp.batch(BATCH, epsilon="0.1", progress=False)
    assert isinstance(frame, pd.DataFrame) and frame["query"].tolist().count(1) == 1
    for column in ("n", "a", "a_ci_low", "m", "m_ci_low"):
        assert types.is_numeric_dtype(frame[column]), column
    summary = frame.groupby("query")["a"].mean()  # numeric work needs no conversion
    assert summary.notna().tolist() == [False, True]
    assert Fraction(dp.budget()["datasets"][0]["spent"]["epsilon"]) == Fraction(7, 10)


def test_exact_shares_agree_with_the_planner(settings):
    tables = {n: catalog.open_table(ds, settings.prepared_dir, settings.engine)
              for n, ds in settings.datasets.items()}
    body = {"sql": "SELECT region, COUNT(*) AS n, AVG(amount) AS a, SUM(amount) AS s "
                   "FROM purchases GROUP BY region", "epsilon": "0.3",
            "weights": {"a": 3}, "bounding_report": True}
    request = parse_body(body)
    plan = planner.build(request, catalog.check_query(request.query, tables))
    exact = statistic_shares(plan)
    assert sum(exact.values()) == Fraction(3, 10) * Fraction(9, 10)
    for sp in plan.stats:
        assert abs(float(exact[sp.stat.column]) - sp.share) < 1e-12, sp.stat.column
