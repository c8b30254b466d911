"""Row-level derived columns: SQL -> query model (golden pairs), proofs, and refusals.

Every new form has a golden pair written by hand below; refusals happen while
the query is checked (before data is read or budget spent) and say how to fix
the query. Cross-engine and neighbouring-dataset tests: test_derived_engines.py.
"""
from __future__ import annotations

import pytest

from dpquery.config import Column
from dpquery.engine import derived_bounds
from dpquery.engine.derived import Arith, Case, Col, Derived, Func, Lit, Truth
from dpquery.engine.query import (Aggregate, And, Between, Compare, InList, Query, Request, Spend,
                                  canonical)
from dpquery.engine.request import parse_body
from dpquery.engine.sql import parse_sql
from dpquery.errors import InvalidQuery

YOUNG = Case(((InList("age_band", ("18-24", "25-34")), Lit("young")),), Lit("older"))
BUCKET = Arith("*", Func("FLOOR", (Arith("/", Col("amount"), Lit(10)),)), Lit(10))
COUNT = Aggregate("count", "n")

PAIRS = [
    ("SELECT CASE WHEN age_band IN ('18-24', '25-34') THEN 'young' ELSE 'older' END AS stage, "
     "COUNT(*) AS n FROM purchases GROUP BY stage",
     Query("purchases", (COUNT,), ("stage",), derived=(Derived("stage", YOUNG),))),
    ("SELECT FLOOR(amount / 10) * 10 AS bucket, COUNT(*) AS n FROM purchases GROUP BY 1",
     Query("purchases", (COUNT,), ("bucket",), derived=(Derived("bucket", BUCKET),))),
    ("SELECT FLOOR(amount / 10) * 10, COUNT(*) AS n FROM purchases GROUP BY FLOOR(amount / 10) * 10",
     Query("purchases", (COUNT,), ("col1",), derived=(Derived("col1", BUCKET),))),
    ("SELECT SUM(amount * 1.06) AS s FROM purchases",
     Query("purchases", (Aggregate("sum", "s", "expr1"),),
           derived=(Derived("expr1", Arith("*", Col("amount"), Lit(1.06))),))),
    ("SELECT COUNT(*) AS n FROM purchases WHERE amount - 5 > 10",
     Query("purchases", (COUNT,), where=Compare("expr1", ">", 10),
           derived=(Derived("expr1", Arith("-", Col("amount"), Lit(5))),))),
    ("SELECT COUNT(*) AS n FROM purchases WHERE 10 < amount - 5",  # flipped: the same query
     Query("purchases", (COUNT,), where=Compare("expr1", ">", 10),
           derived=(Derived("expr1", Arith("-", Col("amount"), Lit(5))),))),
    ("SELECT COUNT(*) AS n FROM purchases WHERE ROUND(amount) BETWEEN 10 AND 20",
     Query("purchases", (COUNT,), where=Between("expr1", 10, 20),
           derived=(Derived("expr1", Func("ROUND", (Col("amount"),))),))),
    ("SELECT AVG(LEAST(amount, 50)) AS a, SUM(GREATEST(amount, 1)) AS s, "
     "SUM(ABS(amount - 25)) AS d FROM purchases",
     Query("purchases", (Aggregate("avg", "a", "expr1"), Aggregate("sum", "s", "expr2"),
                         Aggregate("sum", "d", "expr3")),
           derived=(Derived("expr1", Func("LEAST", (Col("amount"), Lit(50)))),
                    Derived("expr2", Func("GREATEST", (Col("amount"), Lit(1)))),
                    Derived("expr3", Func("ABS", (Arith("-", Col("amount"), Lit(25)),)))))),
    ("SELECT SUM(CEIL(amount)) AS c, SUM(ROUND(amount, 1)) AS r, SUM(COALESCE(amount, 0)) AS z "
     "FROM purchases",
     Query("purchases", (Aggregate("sum", "c", "expr1"), Aggregate("sum", "r", "expr2"),
                         Aggregate("sum", "z", "expr3")),
           derived=(Derived("expr1", Func("CEIL", (Col("amount"),))),
                    Derived("expr2", Func("ROUND", (Col("amount"), Lit(1)))),
                    Derived("expr3", Func("COALESCE", (Col("amount"), Lit(0))))))),
    ("SELECT SUM(CLAMP(amount * 3, 0, 150)) AS s FROM purchases",
     Query("purchases", (Aggregate("sum", "s", "expr1"),),
           derived=(Derived("expr1", Func("CLAMP", (Arith("*", Col("amount"), Lit(3)), Lit(0),
                                                     Lit(150)))),))),
    ("SELECT amount > 50 AS big, COUNT(*) AS n FROM purchases GROUP BY big",
     Query("purchases", (COUNT,), ("big",),
           derived=(Derived("big", Truth(Compare("amount", ">", 50))),))),
    ("SELECT CASE region WHEN 'Wayne' THEN 1 ELSE 0 END AS w, COUNT(*) AS n FROM purchases "
     "GROUP BY w",  # a simple CASE is a CASE WHEN column = value
     Query("purchases", (COUNT,), ("w",),
           derived=(Derived("w", Case(((Compare("region", "=", "Wayne"), Lit(1)),), Lit(0))),))),
    ("SELECT region, PURCHASE_RATE(amount * 2 > 100) AS r FROM purchases GROUP BY region",
     Query("purchases", (Aggregate("purchase_rate", "r", condition=Compare("expr1", ">", 100)),),
           ("region",), derived=(Derived("expr1", Arith("*", Col("amount"), Lit(2))),))),
    ("SELECT COUNT(*) AS n FROM purchases WHERE CASE WHEN category = 'snacks' THEN 'x' ELSE 'y' "
     "END = 'x' AND -amount < -5",
     Query("purchases", (COUNT,), where=And((
         Compare("expr1", "=", "x"), Compare("expr2", "<", -5))),
           derived=(Derived("expr1", Case(((Compare("category", "=", "snacks"), Lit("x")),),
                                          Lit("y"))),
                    Derived("expr2", Arith("-", Lit(0), Col("amount")))))),
]


@pytest.mark.parametrize("sql,model", PAIRS, ids=[p[0][:50] for p in PAIRS])
def test_sql_gives_the_golden_model(sql, model):
    assert parse_sql(sql) == model


def test_an_expression_written_twice_is_one_derived_column():
    query = parse_sql("SELECT SUM(amount * 2) AS s, AVG(amount * 2) AS a FROM purchases "
                      "WHERE amount * 2 > 10")
    assert [d.name for d in query.derived] == ["expr1"]
    assert {a.column for a in query.aggregates} == {"expr1"}


def test_names_are_matched_to_the_catalog_inside_expressions(settings):
    query = parse_body({"sql": "SELECT CASE WHEN AGE_BAND = '65+' THEN 'old' ELSE 'other' END "
                               "AS Stage, SUM(Amount * 2) FROM Purchases GROUP BY stage",
                        "epsilon": 0.5}, datasets=settings.datasets).query
    assert query.group_by == ("Stage",)
    assert query.derived[0].expr.whens[0][0] == Compare("age_band", "=", "65+")
    assert query.derived[1].expr == Arith("*", Col("amount"), Lit(2))


def test_canonical_text_carries_the_expressions():
    def text(sql):
        return canonical(Request(parse_sql(sql), Spend(epsilon=0.5)))
    a = text("SELECT FLOOR(amount / 10) * 10 AS b, COUNT(*) AS n FROM purchases GROUP BY b")
    b = text("SELECT FLOOR(amount / 10) * 10 AS b, COUNT(*) AS n FROM purchases GROUP BY 1")
    c = text("SELECT FLOOR(amount / 20) * 20 AS b, COUNT(*) AS n FROM purchases GROUP BY b")
    assert a == b != c
    assert "derived" not in text("SELECT COUNT(*) AS n FROM purchases")  # older texts unchanged


# -- what configuration proves ------------------------------------------------------

def cols(**columns):
    return {name: Column(name, **spec) for name, spec in columns.items()}


AMOUNT = {"type": "float", "lower": 0.0, "upper": 100.0}
YEAR = {"type": "int", "values": tuple(range(2016, 2026))}


@pytest.mark.parametrize("expr,bounds,domain", [
    (BUCKET, (0, 100), tuple(range(0, 101, 10))),
    (Arith("-", Col("year"), Lit(2016)), (0, 9), tuple(range(10))),
    (Arith("/", Col("amount"), Arith("-", Col("year"), Lit(2010))), (0.0, 100 / 6), None),
    (Func("ABS", (Arith("-", Col("amount"), Lit(25)),)), (0.0, 75.0), None),
    (Func("LEAST", (Col("amount"), Lit(50))), (0.0, 50.0), None),
    (Func("CLAMP", (Arith("*", Col("amount"), Lit(3)), Lit(10), Lit(150))), (10, 150), None),
    (Func("ROUND", (Arith("/", Col("amount"), Lit(40)),)), (0, 3), (0, 1, 2, 3)),
    (Truth(Compare("amount", ">", 5)), (0, 1), (0, 1)),
    (Case(((Compare("year", ">", 2020), Col("amount")),), Lit(-1)), (-1.0, 100.0), None),
])
def test_bounds_and_values_come_from_configuration(expr, bounds, domain):
    columns = cols(amount=AMOUNT, year=YEAR)
    info = derived_bounds.analyse(expr, lambda n: derived_bounds.column_info(columns[n]))
    assert info.bounds == pytest.approx(bounds) and info.domain == domain


@pytest.mark.parametrize("expr,column", [
    (Case(((Compare("year", ">", 2020), Col("amount")),), Lit(0)), "amount"),
    (Func("COALESCE", (Col("amount"), Lit(0))), "amount"),
    (Case(((Compare("year", ">", 2020), Col("amount")),), Lit(1)), None),  # 1 is not a 0
    (Case(((Compare("year", ">", 2020), Col("amount")),), Col("year")), None),  # two columns
    (Arith("*", Col("amount"), Lit(2)), None),
])
def test_a_selection_of_one_column_is_recognised(expr, column):
    assert derived_bounds.selected(expr) == column


def test_round_halves_away_from_zero_as_the_engines_do():
    assert [derived_bounds.round_half_away(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5)] == \
        [1, 2, 3, -1, -3]


@pytest.mark.parametrize("expr,fragment", [
    (Arith("*", Col("visits"), Lit(2)), "wrap that column in CLAMP(column, low, high)"),
    (Arith("/", Col("amount"), Arith("-", Col("year"), Lit(2020))), "which contains 0; divide"),
    (Arith("*", Col("amount"), Lit(2 ** 50)), "beyond ±2^53"),
    (Case(((Compare("year", ">", 2020), Lit("x")),), Lit(1)), "mixes text and numbers"),
])
def test_unprovable_expressions_are_refused_with_the_fix(expr, fragment):
    columns = cols(amount=AMOUNT, year=YEAR, visits={"type": "int"})
    with pytest.raises(InvalidQuery) as err:
        derived_bounds.analyse(expr, lambda n: derived_bounds.column_info(columns[n]))
    assert fragment in err.value.message


def test_clamp_bounds_a_column_without_configured_bounds():
    columns = cols(visits={"type": "int"})
    info = derived_bounds.analyse(Func("CLAMP", (Col("visits"), Lit(0), Lit(30))),
                                  lambda n: derived_bounds.column_info(columns[n]))
    assert info.bounds == (0, 30) and info.domain == tuple(range(31))


# -- refusals, before any data is read ----------------------------------------------

REFUSED = [
    ("SELECT SUM(amount / (year - 2020)) FROM purchases", "contains 0; divide by something"),
    ("SELECT FLOOR(amount * 100) AS c, COUNT(*) FROM purchases GROUP BY c",
     "makes 10,001 groups; the limit is 1,000. Use wider buckets"),
    ("SELECT amount / 3 AS c, COUNT(*) FROM purchases GROUP BY c", "group by whole numbers"),
    ("SELECT CASE WHEN amount > 5 THEN 1 END AS c, COUNT(*) FROM purchases GROUP BY c",
     "CASE needs an ELSE"),
    ("SELECT YEAR(region) AS y, COUNT(*) FROM purchases GROUP BY y", "needs a date column"),
    ("SELECT EXTRACT(WEEK FROM purchased_on) AS w, COUNT(*) FROM purchases GROUP BY w",
     "EXTRACT(WEEK FROM ...) is not supported"),
    ("SELECT SUM(customer_id * 2) FROM purchases", "excluded by policy"),
    ("SELECT SUM(opted_in + 1) FROM purchases", "excluded by policy"),
    ("SELECT SUM(CASE WHEN category = 'pharmacy' THEN amount ELSE 0 END) FROM purchases",
     "excluded by policy"),
    ("SELECT SUM(CASE WHEN region = 'Detroit' THEN amount ELSE 0 END) FROM purchases",
     "is not a value of column 'region'"),
    ("SELECT SUM(region * 2) FROM purchases", "computes with numbers"),
    ("SELECT SUM(amount % 2) FROM purchases", "MOD is not supported in a row-level expression"),
    ("SELECT COUNT(*) FROM purchases WHERE amount * 2 > year", "compare their difference with 0"),
    ("SELECT CASE WHEN region = 'Wayne' THEN 'w' ELSE 'o' END AS region, COUNT(*) FROM purchases "
     "GROUP BY region", "give it another alias"),
    ("SELECT SUM(SUM(amount) * 2) FROM purchases", "aggregate cannot appear inside"),
    ("SELECT SUM(CASE WHEN region = 'Wayne' THEN 'w' ELSE 'o' END) FROM purchases",
     "needs a numeric column with declared bounds"),
    ("SELECT SUM(" + " + ".join(["amount"] * 40) + ") FROM purchases", "the limit is 64"),
    ("SELECT FLOOR(amount) AS f, region, year, COUNT(*) FROM purchases GROUP BY f, region, year",
     "the limit is 1000"),
    ("SELECT SUM(" + "+".join(["amount"] * 600) + ") FROM purchases", "nests more than 64 levels"),
    ("SELECT COUNT(*) FROM purchases WHERE " + " AND ".join(
        f"amount * {i} > 1" for i in range(1, 18)), "at most 16 row-level expressions"),
]


@pytest.mark.parametrize("sql,fragment", REFUSED, ids=[r[0][:50] for r in REFUSED])
def test_refused_before_any_data_is_read(sql, fragment, settings):
    from test_sql import assert_refused_unread
    assert_refused_unread(sql, fragment, settings)


# -- the JSON query form: the same model ----------------------------------------------

JSON_PAIRS = [
    ("SELECT CASE WHEN age_band IN ('18-24', '25-34') THEN 'young' ELSE 'older' END AS stage, "
     "COUNT(*) AS n, SUM(amount * 2) AS s FROM purchases GROUP BY stage",
     {"group_by": ["stage"],
      "derived": {"stage": "CASE WHEN age_band IN ('18-24', '25-34') THEN 'young' ELSE 'older' END",
                  "expr1": "amount * 2"},
      "aggregates": [{"kind": "count", "alias": "n"}, {"kind": "sum", "alias": "s", "column": "expr1"}]}),
    ("SELECT COUNT(*) AS n FROM purchases WHERE FLOOR(amount / 10) * 10 BETWEEN 20 AND 40",
     {"derived": {"expr1": "FLOOR(amount / 10) * 10"}, "where": {"column": "expr1", "between": [20, 40]},
      "aggregates": [{"kind": "count", "alias": "n"}]}),
]


@pytest.mark.parametrize("sql,doc", JSON_PAIRS, ids=[p[0][:40] for p in JSON_PAIRS])
def test_the_json_form_states_the_same_expressions(sql, doc):
    from dpquery.engine.request import query_from_json
    assert query_from_json({"dataset": "purchases", **doc}) == parse_sql(sql)


@pytest.mark.parametrize("derived,fragment", [
    ({"a": "amount FROM purchases"}, "must be one expression"),
    ({"a": "(SELECT 1)"}, "subqueries are not supported"),
    ({"a": 2}, "an object of names and SQL expressions"),
    ({"a": "amount / (year - 2020)"}, None),  # parsed; refused when checked (test below)
])
def test_json_expressions_are_read_as_sql(derived, fragment):
    from dpquery.engine.request import query_from_json
    doc = {"aggregates": [{"kind": "sum", "column": "a"}], "derived": derived}
    if fragment is None:
        assert query_from_json(doc).derived[0].name == "a"
        return
    with pytest.raises(InvalidQuery) as err:
        query_from_json(doc)
    assert fragment in err.value.message
