"""A request body (from HTTP, the CLI or a batch file) -> `Request`.

Two spellings of the same query model:

    {"sql": "SELECT region, COUNT(*) FROM purchases GROUP BY region", "epsilon": 0.5}

    {"query": {"dataset": "purchases", "group_by": ["region"],
               "aggregates": [{"kind": "count"}]},
     "accuracy": {"within": 50, "confidence": 0.95}}

The spend is `epsilon` (or `rho` on zCDP datasets) as a number or exact decimal
text ("0.1"), or an `accuracy` target. `weights` ({"alias": 2}) or an aggregate's
`weight` divides the spend among aggregates (default: equally).

A malformed body (not an object, unknown fields, no spend, wrong types) is
`InvalidRequest`; a well-formed body whose query is wrong is `InvalidQuery`.
"""
from __future__ import annotations

import dataclasses
import re

from dpquery.errors import InvalidQuery, InvalidRequest
from dpquery.engine.query import (MAX_CONDITION_DEPTH, AccuracyTarget, Aggregate, And, Between,
                                  Compare, InList, Not, Or, OrderBy, Query, Request, Spend)
from dpquery.engine import names, sql_derived
from dpquery.engine.sql import parse_sql

BODY_KEYS = {"sql", "query", "epsilon", "rho", "accuracy", "confidence", "purpose", "dataset",
             "bounding_report", "weights", "bounds"}
DECIMAL_TEXT = re.compile(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]{1,3})?|\.[0-9]+([eE][+-]?[0-9]{1,3})?")


def parse_body(body, privacy_unit: str = "customer_id", max_sql_chars: int = 5000,
               datasets: dict | None = None) -> Request:
    """Validate a decoded JSON body and build the `Request` it describes.

    With `datasets` (name -> config.Dataset, public configuration only), table
    and column names are matched case-insensitively (names.py) and
    COUNT(DISTINCT ...) uses the queried dataset's privacy unit.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object, e.g. "
                           '{"sql": "SELECT region, COUNT(*) FROM purchases GROUP BY region", "epsilon": 0.5}')
    _only(body, BODY_KEYS, "request body", InvalidRequest)
    if ("sql" in body) == ("query" in body):
        raise InvalidRequest("send exactly one of 'sql' (text) or 'query' (the JSON query form)")
    if "sql" in body:
        sql = body["sql"]
        if isinstance(sql, str) and len(sql) > max_sql_chars:
            raise InvalidQuery(f"SQL is {len(sql)} characters; the limit is {max_sql_chars}")
        query = parse_sql(sql, privacy_unit, datasets)
    else:
        query = names.resolve(query_from_json(_with_dataset(body["query"], datasets)), datasets)
    query = _weighted(query, body.get("weights"))
    extras = {"purpose": body["purpose"]} if "purpose" in body else {}
    confidence = _number(body.get("confidence", 0.95), "confidence", InvalidRequest)
    report = body.get("bounding_report", False)
    if not isinstance(report, bool):
        raise InvalidRequest("'bounding_report' must be true or false")
    return Request(query, _budget(body), confidence, extras, report, _auto_bounds(body))


def _with_dataset(doc, datasets: dict | None):
    """The JSON form may leave out "dataset" when exactly one is configured."""
    if not isinstance(doc, dict) or "dataset" in doc or not datasets:
        return doc
    if len(datasets) == 1:
        return {**doc, "dataset": next(iter(datasets))}
    raise InvalidQuery(f"'query.dataset' is required: one of {', '.join(sorted(datasets))}")


def _auto_bounds(body: dict) -> bool:
    """`"bounds": "auto"` asks for the row bound to be chosen for this query (autobound.py)."""
    if "bounds" not in body:
        return False
    if body["bounds"] != "auto":
        raise InvalidRequest("'bounds' must be \"auto\" (the rows-per-customer bound chosen "
                             "for this query), or left out for the configured bounds")
    return True


def _weighted(query: Query, weights) -> Query:
    """`weights` ({"alias": 2}) set the aggregates' shares of the spend."""
    if weights is None:
        return query
    if not isinstance(weights, dict):
        raise InvalidRequest("'weights' must be an object of aggregate names and whole "
                             'numbers, e.g. {"snack_rate": 2, "n": 1}')
    aliases = [a.alias for a in query.aggregates]
    unknown = sorted(set(weights) - set(aliases))
    if unknown:
        raise InvalidQuery(f"'weights' names {unknown[0]!r}, which is not an aggregate of "
                           f"this query; its aggregates are: {', '.join(aliases)}")
    return dataclasses.replace(query, aggregates=tuple(
        dataclasses.replace(a, weight=weights.get(a.alias, a.weight)) for a in query.aggregates))


def _budget(body: dict):
    stated = [k for k in ("epsilon", "rho", "accuracy") if k in body]
    if len(stated) != 1:
        raise InvalidRequest("state exactly one of 'epsilon', 'rho' or 'accuracy' "
                           '(e.g. "epsilon": 0.5 or "accuracy": {"within": 0.02})')
    if stated[0] == "accuracy":
        target = body["accuracy"]
        if not isinstance(target, dict):
            raise InvalidRequest("'accuracy' must be an object, e.g. {\"within\": 0.02, \"confidence\": 0.95}")
        _only(target, {"within", "confidence", "aggregate", "assumed_group_size", "at_most"},
              "accuracy", InvalidRequest)
        if "within" not in target:
            raise InvalidRequest("'accuracy' needs 'within': the largest acceptable half-width")
        return AccuracyTarget(**target)
    return Spend(**{stated[0]: _spend_value(body[stated[0]], stated[0])})


def _spend_value(value, name: str):
    """A JSON number, or exact decimal text such as "0.1" (as budget amounts accept)."""
    if isinstance(value, str):
        if not DECIMAL_TEXT.fullmatch(value):
            raise InvalidRequest(f"{name} must be a number such as 0.5, or decimal text "
                                 'such as "0.5"')
        return float(value)  # the shortest repr of float("0.1") is 0.1: charged as exactly 1/10
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name} must be a number such as 0.5, or decimal text such as "
                             '"0.5"')
    return value


def query_from_json(doc) -> Query:
    """The JSON query form -> `Query`."""
    if not isinstance(doc, dict):
        raise InvalidQuery("'query' must be an object with dataset, group_by, aggregates")
    _only(doc, {"dataset", "group_by", "aggregates", "where", "order_by", "limit", "derived"},
          "query")
    aggs = _list(doc.get("aggregates"), "query.aggregates")
    return Query(
        dataset=_text(doc.get("dataset", "purchases"), "query.dataset"),
        aggregates=tuple(_aggregate(a, i) for i, a in enumerate(aggs)),
        group_by=tuple(_text(g, "query.group_by") for g in _list(doc.get("group_by", []), "query.group_by")),
        where=_predicate(doc["where"], "query.where") if doc.get("where") is not None else None,
        order_by=tuple(_order(o) for o in _list(doc.get("order_by", []), "query.order_by")),
        limit=_limit(doc.get("limit")),
        derived=sql_derived.from_json(doc["derived"]) if "derived" in doc else (),
    )


def _aggregate(doc, i: int) -> Aggregate:
    where = f"query.aggregates[{i}]"
    if not isinstance(doc, dict):
        raise InvalidQuery(f"{where} must be an object, e.g. {{\"kind\": \"count\"}}")
    _only(doc, {"kind", "alias", "column", "quantile", "condition", "weight"}, where)
    kind = _text(doc.get("kind"), f"{where}.kind")
    column = doc.get("column")
    default = {"count": "count", "count_customers": "customers", "purchase_rate": "purchase_rate"}
    alias = doc.get("alias") or default.get(kind) or f"{kind}_{column}"
    condition = doc.get("condition")
    return Aggregate(kind, _text(alias, f"{where}.alias"),
                     column=_text(column, f"{where}.column") if column is not None else None,
                     quantile=_number(doc["quantile"], f"{where}.quantile") if "quantile" in doc else None,
                     condition=_predicate(condition, f"{where}.condition") if condition is not None else None,
                     weight=doc.get("weight", 1))


def _predicate(doc, where: str, level: int = 1):
    if level > MAX_CONDITION_DEPTH:  # before recursing further: JSON may nest thousands deep
        raise InvalidQuery(f"{where} nests and, or and not {_depth(doc) + level - 1:,} levels "
                           f"deep; the limit is {MAX_CONDITION_DEPTH}. Flatten it "
                           '({"not": {"not": x}} is x; nested "and"s are one "and")')
    if not isinstance(doc, dict):
        raise InvalidQuery(f"{where} must be an object such as "
                           '{"column": "year", "op": "=", "value": 2024}')
    if "and" in doc or "or" in doc:
        key = "and" if "and" in doc else "or"
        _only(doc, {key}, where)
        items = _list(doc[key], f"{where}.{key}")
        if not items:
            raise InvalidQuery(f"{where}.{key} needs at least one condition")
        return (And if key == "and" else Or)(
            tuple(_predicate(p, f"{where}.{key}", level + 1) for p in items))
    if "not" in doc:
        _only(doc, {"not"}, where)
        return Not(_predicate(doc["not"], f"{where}.not", level + 1))
    return _leaf(doc, where)


def _depth(doc) -> int:
    """How deep and/or/not objects nest in a JSON condition (without recursion)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if not isinstance(node, dict):
            continue
        for key in ("and", "or"):
            if isinstance(node.get(key), list):
                stack += [(item, level + 1) for item in node[key]]
        if "not" in node:
            stack.append((node["not"], level + 1))
    return deepest


def _leaf(doc: dict, where: str):
    column = _text(doc.get("column"), f"{where}.column")
    if "in" in doc:
        _only(doc, {"column", "in", "negated"}, where)
        return InList(column, tuple(_list(doc["in"], f"{where}.in")), _negated(doc, where))
    if "between" in doc:
        _only(doc, {"column", "between", "negated"}, where)
        bounds = _list(doc["between"], f"{where}.between")
        if len(bounds) != 2:
            raise InvalidQuery(f"{where}.between takes [low, high]")
        return Between(column, bounds[0], bounds[1], _negated(doc, where))
    _only(doc, {"column", "op", "value"}, where)
    if "value" not in doc:
        raise InvalidQuery(f"{where} needs 'op' and 'value', 'in' or 'between'")
    return Compare(column, _text(doc.get("op", "="), f"{where}.op"), doc["value"])


def _negated(doc: dict, where: str) -> bool:
    return _flag(doc.get("negated", False), f"{where}.negated")


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidQuery(f"{where} must be true or false")
    return value


def _order(doc) -> OrderBy:
    if isinstance(doc, str):
        return OrderBy(doc.lstrip("-"), doc.startswith("-"))
    if isinstance(doc, dict):
        _only(doc, {"name", "descending"}, "query.order_by")
        return OrderBy(_text(doc.get("name"), "query.order_by.name"),
                       _flag(doc.get("descending", False), "query.order_by.descending"))
    raise InvalidQuery("query.order_by items are names ('-name' for descending) or objects")


def _limit(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQuery("query.limit must be a whole number")
    return value


def _only(doc: dict, allowed: set, where: str, error=InvalidQuery) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise error(f"{where}: unknown field {unknown[0]!r}; expected one of: "
                           f"{', '.join(sorted(allowed))}")


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise InvalidQuery(f"{where} must be a list")
    return value


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidQuery(f"{where} must be a non-empty string")
    return value


def _number(value, where: str, error=InvalidQuery) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{where} must be a number")
    return value
