"""No dpquery plan can take the paths of two open OpenDP privacy bugs (issue 13, item 8).

opendp/opendp#2949: a column redefined after a truncation keeps the truncation's
bounds. The repro truncates per (id, g) and to 100 groups of g, then sets
`g = 0` with `with_columns` and groups by g: OpenDP still believes each id
touches one row in each of at most 100 groups of g. Only plans that redefine a
column (with_columns, a projection, a rename, an aggregate named like a key)
between a truncation and the release can take it. dpquery's plans are a
truncation filter, the WHERE filter, at most one per-customer group_by, and the
release (a group truncation runs before the measurement and is stated as a bound
on its input, so the check covers the whole plan from its input); every plan
handed to OpenDP while planning is captured and checked.

opendp/opendp#2945: a group_by release reads a group's change as
`min(truncation bound, margin.max_length)` (make_private_lazyframe/group_by,
`li = option_min(bound.per_group, margin.max_length)`), but a group of at most
k rows can change by 2k under symmetric distance. dpquery declares one margin,
by=[] with max_length = max_rows, which every grouping inherits, and every
plan's per-group bound comes from a truncation at most rows_per_customer. So
max_length is never the smaller unless max_rows < rows_per_customer: config
refuses that, and the tests show the loss does not move with max_rows down to
that floor (and that it does move below it, the bug's path). Float sums read
max_length as a group's size for their rounding term, a correct use (it only
adds noise as max_rows grows); the shipped config sums integer cents.
"""
from __future__ import annotations

import dataclasses
import json
import warnings

import polars as pl
import pytest

import opendp.prelude as dp
from dpquery import config
from dpquery.engine import catalog, frames, plan as planner
from dpquery.engine.request import parse_body

UNIT = "customer_id"
WHERE = " WHERE year >= 2020 AND (category IN ('snacks', 'dairy') OR amount < 20)"
SHAPES = {  # every aggregate, with and without WHERE and GROUP BY
    "count": "SELECT COUNT(*) FROM purchases",
    "count by 2": "SELECT region, age_band, COUNT(*) FROM purchases{w} GROUP BY region, age_band",
    "distinct": "SELECT region, COUNT(DISTINCT customer_id) FROM purchases{w} GROUP BY region",
    "sum rows": "SELECT SUM(amount) FROM purchases{w}",
    "sum totals": "SELECT region, SUM(amount) AS amount FROM purchases{w} GROUP BY region",
    "avg": "SELECT region, AVG(amount) FROM purchases{w} GROUP BY region",
    "quantile": "SELECT region, MEDIAN(amount) FROM purchases{w} GROUP BY region",
    "rate": "SELECT region, PURCHASE_RATE(category = 'snacks') AS r FROM purchases{w} "
            "GROUP BY region",
    "mixed": "SELECT age_band, COUNT(*), AVG(amount), PURCHASE_RATE(year = 2024) FROM "
             "purchases{w} GROUP BY age_band",
}
QUERIES = [(f"{name}{' where' if w else ''}", sql.format(w=w))
           for name, sql in SHAPES.items() for w in ("", WHERE)]


@pytest.fixture(scope="module")
def table(tmp_path_factory, demo_data):
    from settings_helpers import make_settings
    settings = make_settings(tmp_path_factory.mktemp("guards"), demo_data)
    ds = settings.datasets["purchases"]
    return catalog.open_table(ds, settings.prepared_dir, settings.engine)


def private_keys(table):
    """`category` without public values, under private key selection (δ > 0)."""
    ds = table.dataset
    col = dataclasses.replace(ds.columns["category"], values=None, groups_per_customer=2)
    ds = dataclasses.replace(ds, delta=1e-7, columns={**ds.columns, "category": col})
    return dataclasses.replace(table, dataset=ds)


def plans_handed_to_opendp(monkeypatch, table, sql: str, **body) -> list[pl.LazyFrame]:
    """Plan the query; return every LazyFrame given to make_private_lazyframe."""
    seen = []
    make = dp.m.make_private_lazyframe

    def spy(domain, metric, output, plan, *args, **kwargs):
        seen.append(plan)
        return make(domain, metric, output, plan, *args, **kwargs)

    monkeypatch.setattr(dp.m, "make_private_lazyframe", spy)
    request = parse_body({"sql": sql, "epsilon": 1.0, **body})
    planner.build(request, catalog.check_query(request.query, {"purchases": table}))
    monkeypatch.undo()
    assert seen
    return seen


# -- opendp#2949: nothing redefined after a truncation ----------------------------------

def _dsl(plan: pl.LazyFrame) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # polars deprecates the JSON format; it is read here only
        return json.loads(plan.serialize(format="json"))


def _chain(node: dict) -> list[tuple[str, dict]]:
    """The data branch from the scan up: [(node kind, node)], following the side with a Filter."""
    out = []
    while node:
        (kind, body), = node.items()
        out.append((kind, body))
        if kind == "Join":
            left, right = body["input_left"], body["input_right"]
            node = left if '"Filter"' in json.dumps(left) else right
        else:
            node = body.get("input")
    return out[::-1]


def _names(exprs) -> set[str]:
    """Output names of aggregation expressions: their alias, else their column."""
    names = set()
    for e in exprs:
        text = json.dumps(e)
        alias = e.get("Alias") if isinstance(e, dict) else None
        if alias:
            names.add(alias[1])
        elif isinstance(e, dict) and "Column" in e:
            names.add(e["Column"])
        elif '"Alias"' not in text:
            names.add(text)
    return names


def _over(predicate, unit: str) -> bool:
    """A truncation: a comparison of a window computed over the privacy unit."""
    text = json.dumps(predicate)
    return '"Over"' in text and json.dumps({"Column": unit}) in text.split('"partition_by"', 1)[-1]


def redefinitions_after_truncation(plan: pl.LazyFrame, unit: str) -> list[str]:
    """What in `plan` redefines a column between its input and the release.

    From the input, not the first truncation: a group truncation done before the
    measurement is stated to OpenDP as a bound on the input (reference.py)."""
    chain = _chain(_dsl(plan))
    starts = [i for i, (kind, body) in enumerate(chain)  # OpenDP's three truncation forms
              if kind == "Filter" and _over(body["predicate"], unit)
              or kind == "GroupBy" and {"Column": unit} in body["keys"] and i < len(chain) - 1]
    if not starts:
        return ["no truncation found"]  # every dpquery plan bounds contributions first
    while chain[-1][0] in ("Join", "HStack"):  # OpenDP's own key join on the released output
        chain.pop()
    found = []
    for kind, body in chain[1:-1]:  # chain[0] is the input
        if kind == "Filter":
            continue
        if kind == "GroupBy":
            keys = {k.get("Column") for k in body["keys"]}
            if unit in keys and None not in keys and not keys & _names(body["aggs"]):
                continue  # one row per customer and group: new columns only
        found.append(kind)
    release = chain[-1]
    if release[0] == "GroupBy" and any("Column" not in k for k in release[1]["keys"]):
        found.append("GroupBy on an expression")
    return found


@pytest.mark.parametrize("name,sql", QUERIES, ids=[q[0] for q in QUERIES])
def test_no_plan_redefines_a_column_after_truncation(monkeypatch, table, name, sql):
    for plan in plans_handed_to_opendp(monkeypatch, table, sql):
        assert redefinitions_after_truncation(plan, UNIT) == []


def test_private_keys_and_the_bounding_report_redefine_nothing(monkeypatch, table):
    sql = "SELECT category, COUNT(*), AVG(amount) FROM purchases GROUP BY category"
    plans = plans_handed_to_opendp(monkeypatch, private_keys(table), sql)
    plans += plans_handed_to_opendp(monkeypatch, table, SHAPES["rate"].format(w=WHERE),
                                    bounding_report=True)
    assert all(redefinitions_after_truncation(p, UNIT) == [] for p in plans)


def test_the_check_finds_the_bug_shape():
    """opendp#2949's repro, and a dpquery plan with a key overwritten after truncation."""
    repro = (pl.LazyFrame(schema={"id": pl.Int64, "g": pl.Int64})
             .filter(pl.int_range(pl.len()).over("id", "g") < 1)
             .filter(pl.struct("g").rank("dense").over("id") < 101)
             .with_columns(g=pl.lit(0, dtype=pl.Int64))
             .group_by("g").agg(dp.len(scale=1.0, signed=True)))
    assert redefinitions_after_truncation(repro, "id") == ["HStack"]
    frame = frames.truncate_groups(pl.LazyFrame(schema={UNIT: pl.Int64, "region": pl.String}),
                                   UNIT, ["region"], 2)
    planted = frame.with_columns(region=pl.lit("Wayne")).group_by("region").agg(dp.len(scale=1.0, signed=True))
    assert redefinitions_after_truncation(planted, UNIT) == ["HStack"]
    renamed = frame.group_by(UNIT, "region").agg(pl.len().alias("region"))
    assert redefinitions_after_truncation(renamed.group_by("region").agg(dp.len(signed=True)), UNIT) \
        == ["GroupBy"]


def test_an_alias_cannot_overwrite_the_privacy_unit(table):
    request = parse_body({"sql": "SELECT region, SUM(amount) AS customer_id FROM purchases "
                                 "GROUP BY region", "epsilon": 1.0})
    with pytest.raises(Exception) as err:
        planner.build(request, catalog.check_query(request.query, {"purchases": table}))
    assert getattr(err.value, "status", None) == 400


# -- opendp#2945: a group's change never comes from max_length ---------------------------

def test_the_only_margin_is_by_nothing_with_max_rows(table):
    domain = planner._domain(table)
    assert "margins=[{}]" in str(domain)
    assert domain.get_margin([]).max_length == table.dataset.max_rows
    assert domain.get_margin(["region"]).max_length == table.dataset.max_rows  # inherited


def _params(table, sql: str, max_rows: int) -> list[float]:
    t = dataclasses.replace(table, dataset=dataclasses.replace(table.dataset, max_rows=max_rows))
    request = parse_body({"sql": sql, "epsilon": 1.0})
    plan = planner.build(request, catalog.check_query(request.query, {"purchases": t}))
    return [sp.param for sp in plan.stats]


@pytest.mark.parametrize("name,sql", QUERIES[::2], ids=[q[0] for q in QUERIES[::2]])
def test_no_noise_scale_moves_with_max_rows_above_the_row_bound(table, name, sql):
    """From max_rows = rows_per_customer (the least config allows) to 2**31: same scales."""
    k = table.dataset.rows_per_customer
    assert _params(table, sql, k) == _params(table, sql, 2 ** 31 - 1)


def test_below_the_row_bound_opendp_reads_max_length_and_config_refuses_it(table, tmp_path,
                                                                           demo_data):
    """The bug's path: with max_rows under the row bound the quantile's scale shrinks with
    max_rows (OpenDP takes the group's change from it). Such a config stops start-up."""
    sql, k = SHAPES["quantile"].format(w=""), table.dataset.rows_per_customer
    assert _params(table, sql, k // 4)[0] < _params(table, sql, k)[0]
    from settings_helpers import make_settings
    with pytest.raises(config.ConfigError, match="opendp/opendp#2945"):
        make_settings(tmp_path, demo_data, max_rows=k - 1)
