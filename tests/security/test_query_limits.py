"""No partner input can crash a worker or get a 500: the query-size budget and its edges.

Issue 13, items 1 and 5. Every attack goes through the real HTTP parse path
in-process (Flask test client: json_body, parse_body, the SQL parser, the query
model's checks) and must get a 400 in the one error shape, naming the limit,
with nothing charged. The sizes that used to kill the process run in a child
process (limits_child.py), so a crash fails one test instead of killing pytest.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from budget import Amount, Ledger
from dpquery.engine import frames, query, sql
from dpquery.engine.query import And, Compare, InList, Not, condition_size
from dpquery.engine.request import parse_body
from dpquery.http.app import create_app

README = Path(__file__).resolve().parents[2] / "README.md"
COUNT = "SELECT COUNT(*) FROM purchases"
WHERE = COUNT + " WHERE "
JSON_COUNT = {"dataset": "purchases", "aggregates": [{"kind": "count"}]}


def _cmp(i: int) -> dict:
    return {"column": "amount", "op": "<>", "value": i}


def _nots(n: int) -> dict:
    doc = {"column": "amount", "op": ">", "value": 1}
    for _ in range(n):
        doc = {"not": doc}
    return doc


def _where(where: dict) -> dict:
    return {"query": {**JSON_COUNT, "where": where}, "epsilon": 0.5}


# (name, body: a dict sent as JSON or a str sent as is, code, fragments of the message)
ATTACKS = [
    ("sql IN 1,500 values (3 kB)", {"sql": WHERE + "year IN (" + ",".join("7" * 1500) + ")",
                                    "epsilon": 0.5},
     "invalid_query", ["1,500 values", "the limit is 200", "BETWEEN"]),
    ("json IN 1,000 values", _where({"column": "amount", "in": list(range(1000))}),
     "invalid_query", ["1,000 values", "the limit is 200"]),
    ("json OR 1,000 terms", _where({"or": [_cmp(i) for i in range(1000)]}),
     "invalid_query", ["1,000 terms", "the limit is 500"]),
    ("sql 3 IN lists of 200", {"sql": WHERE + " OR ".join(
        ["year IN (" + ",".join("7" * 200) + ")"] * 3), "epsilon": 0.5},
     "invalid_query", ["600 terms", "the limit is 500"]),
    ("sql OR chain 450 + condition", {"sql": "SELECT PURCHASE_RATE(year IN (" + ",".join("7" * 60)
                                      + ")) FROM purchases WHERE " + " OR ".join(["year=1"] * 450),
                                      "epsilon": 0.5},
     "invalid_query", ["510 terms", "the limit is 500"]),
    ("sql 300 nested NOT", {"sql": WHERE + "NOT " * 300 + "amount > 1", "epsilon": 0.5},
     "invalid_query", ["300 levels", "the limit is 24"]),
    ("sql 400 parentheses", {"sql": WHERE + "(" * 400 + "amount > 1" + ")" * 400,
                             "epsilon": 0.5},
     "invalid_query", ["400 levels", "the limit is 24"]),
    ("sql 2,000 minus signs", {"sql": WHERE + "amount > " + "- " * 2000 + "1", "epsilon": 0.5},
     "invalid_query", ["2,000 levels", "the limit is 24"]),
    ("sql 600 casts", {"sql": WHERE + "amount > 1" + "::int" * 600, "epsilon": 0.5},
     "invalid_query", ["nests too deeply"]),
    ("sql 150 nested CASE", {"sql": WHERE + "amount > " + "CASE WHEN 1=1 THEN " * 150 + "1"
                             + " END" * 150, "epsilon": 0.5},
     "invalid_query", ["nests too deeply"]),
    ("sql PURCHASE_RATE of 30 NOTs", {"sql": "SELECT PURCHASE_RATE(" + "NOT " * 30
                                      + "year = 2024) FROM purchases", "epsilon": 0.5},
     "invalid_query", ["31 levels", "the limit is 24"]),
    ("json 100 nested not", _where(_nots(100)),
     "invalid_query", ["101 levels", "the limit is 16"]),
    ("json condition 17 deep", {"query": {**JSON_COUNT, "aggregates": [
        {"kind": "purchase_rate", "condition": _nots(16)}]}, "epsilon": 0.5},
     "invalid_query", ["17 levels", "the limit is 16"]),
    ("json nested 3,000 deep", '{"query": {"aggregates": [{"kind": "count"}], "where": '
     + '{"not": ' * 3000 + '{"column": "amount", "op": ">", "value": 1}' + "}" * 3000
     + '}, "epsilon": 0.5}',
     "invalid_request", ["too deeply"]),
    ("json arrays nested 3,000 deep", '{"sql": "' + COUNT + '", "epsilon": 0.5, "purpose": '
     + "[" * 3000 + "]" * 3000 + "}", "invalid_request", ["too deeply"]),
    ("epsilon 10**400", '{"sql": "' + COUNT + '", "epsilon": 1' + "0" * 400 + "}",
     "invalid_query", ["epsilon must be positive and finite"]),
    ("epsilon 1e400 (inf)", '{"sql": "' + COUNT + '", "epsilon": 1e400}',
     "invalid_query", ["epsilon must be positive and finite, got inf"]),
    ("rho 1e400 (inf)", '{"sql": "' + COUNT + '", "rho": 1e400}',
     "invalid_query", ["rho must be positive and finite"]),
    ("epsilon true", {"sql": COUNT, "epsilon": True}, None, ["epsilon must be a number"]),
    ("epsilon null", {"sql": COUNT, "epsilon": None}, None, ["epsilon"]),
    ("confidence 'x'", {"sql": COUNT, "accuracy": {"within": 5, "confidence": "x"}},
     "invalid_query", ["'confidence' must be a number"]),
    ("confidence null", {"sql": COUNT, "accuracy": {"within": 5, "confidence": None}},
     "invalid_query", ["'confidence' must be a number"]),
    ("confidence true", {"sql": COUNT, "accuracy": {"within": 5, "confidence": True}},
     "invalid_query", ["'confidence' must be a number"]),
    ("top-level confidence 'x'", {"sql": COUNT, "epsilon": 0.5, "confidence": "x"},
     None, ["confidence must be a number"]),
    ("top-level confidence 1e400", '{"sql": "' + COUNT + '", "epsilon": 0.5, "confidence": 1e400}',
     "invalid_query", ["'confidence' must be"]),
    ("within 10**400", '{"sql": "' + COUNT + '", "accuracy": {"within": 1' + "0" * 400 + "}}",
     "invalid_query", ["'within' must be a positive number"]),
    ("within true", {"sql": COUNT, "accuracy": {"within": True}},
     "invalid_query", ["'within' must be a positive number"]),
    ("assumed_group_size 10**400", '{"sql": "SELECT AVG(amount) FROM purchases", "accuracy": '
     '{"within": 5, "assumed_group_size": 1' + "0" * 400 + "}}",
     "invalid_query", ["'assumed_group_size' must be a whole number from 1 to"]),
    ("accuracy aggregate []", {"sql": COUNT, "accuracy": {"within": 5, "aggregate": []}},
     "invalid_query", ["'aggregate' must be the name"]),
    ("json quantile true", {"query": {**JSON_COUNT, "aggregates": [
        {"kind": "quantile", "column": "amount", "quantile": True}]}, "epsilon": 0.5},
     "invalid_query", ["quantile must be a number"]),
    ("sql QUANTILE level 10**400", {"sql": "SELECT QUANTILE(amount, 1" + "0" * 400
                                    + ") FROM purchases", "epsilon": 0.5},
     "invalid_query", ["whole numbers must lie between"]),
    ("sql literal 10**400", {"sql": WHERE + "year > 1" + "0" * 400, "epsilon": 0.5},
     "invalid_query", ["whole numbers must lie between"]),
    ("json literal 10**400", '{"query": {"aggregates": [{"kind": "count"}], "where": '
     '{"column": "year", "op": ">", "value": 1' + "0" * 400 + "}}, \"epsilon\": 0.5}",
     "invalid_query", ["whole numbers must lie between"]),
    ("json literal 1e400", '{"query": {"aggregates": [{"kind": "count"}], "where": '
     '{"column": "amount", "op": ">", "value": 1e400}}, "epsilon": 0.5}',
     "invalid_query", ["numbers must be finite"]),
    ("json literal true", _where({"column": "year", "op": ">", "value": True}),
     "invalid_query", ["expected a string or number literal"]),
    ("sql LIMIT 10**400", {"sql": COUNT + " LIMIT 1" + "0" * 400, "epsilon": 0.5},
     "invalid_query", ["whole numbers must lie between"]),
    ("json limit 10**400", '{"query": {"aggregates": [{"kind": "count"}], "limit": 1'
     + "0" * 400 + '}, "epsilon": 0.5}', "invalid_query", ["LIMIT must be a whole number"]),
    ("json limit true", {"query": {**JSON_COUNT, "limit": True}, "epsilon": 0.5},
     "invalid_query", ["limit must be a whole number"]),
    ("json negated 'yes'", _where({"column": "year", "in": [2024], "negated": "yes"}),
     "invalid_query", ["negated must be true or false"]),
    ("json descending 1", {"query": {**JSON_COUNT, "order_by": [{"name": "count",
                                                                 "descending": 1}]},
                           "epsilon": 0.5},
     "invalid_query", ["descending must be true or false"]),
    ("json where list", _where([1, 2]), "invalid_query", ["must be an object"]),
]


@pytest.fixture
def ledger(settings):
    with Ledger(settings.ledger_path) as led:
        yield led


@pytest.fixture
def client(settings, ledger):
    app = create_app({"TESTING": True, "SETTINGS": settings, "LEDGER": ledger,
                      "TIME_QUANTUM_SECONDS": 0.01, "RATE_LIMIT_PER_MINUTE": 10_000})
    return app.test_client()


@pytest.fixture
def partner(ledger):
    return ledger.create_partner("IFA", budgets={"purchases": Amount(epsilon=3)},
                                 actor="test", reason="query limits")


def test_every_oversized_or_mistyped_query_gets_a_400_in_the_one_shape(client, ledger, partner):
    pid, key = partner
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    wrong = []
    for name, body, code, fragments in ATTACKS:
        data = body if isinstance(body, str) else json.dumps(body)
        response = client.post("/v1/queries", data=data, headers=headers)
        error = (response.get_json(silent=True) or {}).get("error", {})
        ok = (response.status_code == 400 and set(response.json) == {"error"}
              and error.get("code") in ({code} if code else {"invalid_query", "invalid_request"})
              and all(f in error.get("message", "") for f in fragments))
        if not ok:
            wrong.append(f"{name}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    assert not wrong, "\n".join(wrong)
    assert ledger.spent(pid, "purchases") == Amount()


def test_oversized_input_is_refused_before_any_recursion():
    """The model's own checks walk without recursion: a 100,000-deep chain is measured."""
    pred = Compare("amount", ">", 1)
    for _ in range(100_000):
        pred = Not(pred)
    assert condition_size(pred) == (1, 100_001)
    wide = And(tuple(InList("year", (2020, 2021)) for _ in range(300)))
    assert condition_size(wide) == (600, 2)


@pytest.mark.parametrize("body", [
    {"sql": WHERE + "year IN (" + ",".join(["2024"] * query.MAX_IN_VALUES) + ")"},
    {"sql": WHERE + "year IN (" + ",".join(["2024"] * query.MAX_IN_VALUES) + ") AND "
     + " AND ".join(["year IN (" + ",".join(["2024"] * 100) + ")"] * 3)},  # 500 terms
    {"sql": WHERE + "NOT (" * (sql.MAX_NESTING // 2) + "amount > 1" + ")" * (sql.MAX_NESTING // 2)},
    {"query": {**JSON_COUNT, "where": _nots(query.MAX_CONDITION_DEPTH - 1)}},
    {"query": {**JSON_COUNT, "where": {"and": [_cmp(i) for i in range(query.MAX_CONDITION_TERMS)]}}},
], ids=["IN at limit", "terms at limit", "SQL nesting at limit", "JSON depth at limit",
        "JSON terms at limit"])
def test_queries_at_the_limits_are_accepted(body):
    parse_body({**body, "epsilon": 0.5})


def test_a_long_or_chain_in_sql_is_one_flat_or():
    q = parse_body({"sql": WHERE + " OR ".join(f"year = {2016 + i % 10}" for i in range(300)),
                    "epsilon": 0.5}).query
    assert len(q.where.items) == 300 and condition_size(q.where) == (300, 2)


def _nesting(expr: pl.Expr) -> int:
    """How deeply the serialised expression nests (brackets outside strings)."""
    text, depth, deepest, in_string, escaped = expr.meta.serialize(format="json"), 0, 0, False, False
    for ch in text:
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), in_string and (escaped or ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


@pytest.mark.parametrize("make", [lambda n: InList("year", tuple(range(n))),
                                  lambda n: And(tuple(Compare("year", "<>", i) for i in range(n)))],
                         ids=["IN", "AND"])
def test_predicate_expr_builds_balanced_trees(make):
    """n terms nest about log2(n) levels: 128 terms only 6 levels deeper than 2."""
    per_level = _nesting(frames.predicate_expr(make(4))) - _nesting(frames.predicate_expr(make(2)))
    assert per_level > 0
    extra = _nesting(frames.predicate_expr(make(128))) - _nesting(frames.predicate_expr(make(2)))
    assert extra <= 6 * per_level


def test_sizes_that_killed_a_worker_now_run_in_a_real_process(demo_data, tmp_path):
    """IN and OR of 3,000 terms (left-deep chains of ~1,600 segfault); the largest allowed
    AND and nesting run too. A crash here is a child's SIGSEGV, not pytest's."""
    child = Path(__file__).with_name("limits_child.py")
    done = subprocess.run([sys.executable, str(child), str(demo_data), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    printed = re.findall(r"^ok (\w+)$", done.stdout, flags=re.M)
    assert done.returncode == 0, (f"child exited with {done.returncode} after {printed}: "
                                  f"{done.stderr[-2000:]}")
    assert printed == ["in_3000", "or_3000", "and_at_term_limit", "nested_at_depth_limit"]


def test_the_limits_are_documented_in_the_readme():
    section = README.read_text().split("### The SQL subset", 1)[1].split("\n### ", 1)[0]
    for name in ("MAX_IN_VALUES", "MAX_CONDITION_TERMS", "MAX_CONDITION_DEPTH"):
        assert f"{getattr(query, name):,}" in section and name in section, name
    assert "MAX_NESTING" in section and str(sql.MAX_NESTING) in section
