"""SQL text -> query model, through sqlglot and an allowlist.

The SQL is never executed as SQL: its syntax tree is read node by node and
anything outside the supported subset is refused with a message that points at
the text. Supported:

    SELECT [TOP n] <group columns [AS name]>, <aggregates, constants and
           arithmetic on them [AS name]> FROM <table> [WHERE ...]
    [GROUP BY <columns, aliases or positions>] [HAVING <condition on outputs>]
    [ORDER BY <output column, alias, position or aggregate> [ASC|DESC], ...] [LIMIT n]

Row-level expressions (CASE WHEN, + - * /, LEAST, GREATEST, ABS, ROUND, FLOOR,
CEIL, COALESCE, CLAMP, comparisons as 1/0) may stand where a column is read:
in WHERE, inside aggregates and in GROUP BY (sql_derived.py, derived.py).

Aggregates: COUNT(*), COUNT(col), COUNT(DISTINCT <privacy unit>), SUM(col),
AVG(col), MEDIAN(col), QUANTILE(col, q), PERCENTILE_CONT(q) WITHIN GROUP
(ORDER BY col), VARIANCE/VAR_SAMP/VAR_POP(col), STDDEV/STDDEV_SAMP/
STDDEV_POP/STD(col), PURCHASE_RATE(<condition>), read in sql_aggregates.py.
The select list, HAVING and ORDER BY are read in sql_select.py; names are
matched to the catalog's in names.py.
"""
from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from dpquery.errors import InvalidQuery
from dpquery.engine.query import (INT_RANGE, MAX_CONDITION_DEPTH, And, Between,
                                  Compare, InList, Not, Or, Query)

# Other dialects' spellings, refused with how to write them here (before sqlglot parses).
_DIALECT_HINTS = [
    (re.compile(r"\bSELECT\s+WITH\s+DIFFERENTIAL_PRIVACY\b", re.I),
     "BigQuery's SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS(...) is not needed here: every "
     "query is differentially private. Write a plain SELECT and state the spend in the "
     'request ("epsilon": 0.5); the privacy unit and contribution bounds come from the '
     "dataset's configuration (GET /v1/datasets)"),
]
_COMPARE = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
# Parentheses and NOTs nested in the text, counted on the tokens before sqlglot parses
# (its parser recurses about 20 Python frames per parenthesis). Room for a condition
# at MAX_CONDITION_DEPTH inside PURCHASE_RATE(...) and IN (...).
MAX_NESTING = MAX_CONDITION_DEPTH + 8
_SIGNS = (TokenType.DASH, TokenType.PLUS, TokenType.TILDE)
_OPERANDS = (TokenType.NUMBER, TokenType.STRING, TokenType.VAR, TokenType.IDENTIFIER,
             TokenType.R_PAREN, TokenType.STAR)


def parse_sql(text: str, privacy_unit: str = "customer_id", datasets: dict | None = None) -> Query:
    """Parse one SELECT statement into a `Query` (catalog checks come later).

    With `datasets` (name -> config.Dataset), names are matched to the catalog's
    case-insensitively and COUNT(DISTINCT ...) uses the queried dataset's unit.
    """
    try:
        return _query(text, privacy_unit, datasets)
    except RecursionError:  # a backstop: _check_nesting keeps sqlglot well inside the limit
        raise InvalidQuery(f"the SQL nests too deeply to read; keep parentheses, NOT, signs "
                           f"and casts under {MAX_NESTING} levels") from None


def _query(text: str, privacy_unit: str, datasets: dict | None = None) -> Query:
    from dpquery.engine import names, sql_derived, sql_select  # they read this module's helpers
    tree = _parse(text)
    _refuse_unsupported(tree, text)
    dataset = _table(tree, text)
    if datasets:
        privacy_unit = names.privacy_unit(dataset, datasets, privacy_unit)
    with sql_derived.reading(text) as derived:
        shape = sql_select.read(tree, text, privacy_unit)
        where = tree.args.get("where")
        where = sql_select.where_condition(where.this, text) if where else None
    query = Query(
        dataset=dataset,
        aggregates=tuple(shape.aggregates),
        group_by=shape.group_by,
        where=where,
        order_by=tuple(shape.order_by),
        limit=_limit(tree, text),
        select=tuple(shape.outputs) if shape.needs_select else (),
        having=shape.having,
        derived=tuple(derived.derived),
    )
    return names.resolve(query, datasets)


def _parse(text: str) -> exp.Select:
    if not isinstance(text, str) or not text.strip():
        raise InvalidQuery("'sql' must be a non-empty SQL SELECT statement")
    for pattern, hint in _DIALECT_HINTS:
        if pattern.search(text):
            raise InvalidQuery(hint)
    try:
        _check_nesting(text)
        statements = sqlglot.parse(text, dialect="tsql" if _has_top(text) else "postgres")
    except ParseError as err:
        first = err.errors[0] if err.errors else {}
        raise _at(text, first.get("line", 1), first.get("col", 1),
                  f"syntax error: {first.get('description', 'could not parse')}") from None
    except TokenError as err:
        raise InvalidQuery(f"syntax error: {err}") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise InvalidQuery("send exactly one SELECT statement (no ';'-separated batches)")
    tree = statements[0]
    if not isinstance(tree, exp.Select):
        raise InvalidQuery(f"only SELECT queries are supported, not {tree.key.upper()}")
    return tree


def _has_top(text: str) -> bool:
    """SELECT TOP n (T-SQL) is read as LIMIT n: parsed with sqlglot's T-SQL dialect."""
    tokens = sqlglot.Dialect.get_or_raise("postgres").tokenize(text)
    return any(a.token_type == TokenType.SELECT and b.text.upper() == "TOP"
               for a, b in zip(tokens, tokens[1:]))


def _check_nesting(text: str) -> None:
    """Refuse SQL whose parentheses and prefix operators nest past MAX_NESTING, unparsed.

    A level opens at '(' and closes at its ')'; a NOT (or a sign: - - - 1) adds
    one until the next AND, OR or ',' at its own parenthesis level.
    """
    level, deepest, opened, previous = 0, 0, [], None
    for token in sqlglot.Dialect.get_or_raise("postgres").tokenize(text):
        kind = token.token_type
        if kind == TokenType.L_PAREN:
            opened.append(level)
            level += 1
        elif kind == TokenType.R_PAREN:
            level = opened.pop() if opened else 0
        elif kind == TokenType.NOT or (kind in _SIGNS and previous not in _OPERANDS):
            level += 1
        elif kind in (TokenType.AND, TokenType.OR, TokenType.COMMA):
            level = opened[-1] + 1 if opened else 0
        deepest, previous = max(deepest, level), kind
    if deepest > MAX_NESTING:
        raise InvalidQuery(f"the SQL nests parentheses, NOT and signs {deepest:,} levels deep; "
                           f"the limit is {MAX_NESTING}. Remove redundant parentheses, double "
                           "NOTs and repeated signs")


def _at(text: str, line: int, col: int, message: str) -> InvalidQuery:
    """An error that quotes the offending line with a caret under the column."""
    lines = text.splitlines() or [""]
    line = max(1, min(line, len(lines)))
    src = lines[line - 1]
    caret = " " * max(col - 1, 0) + "^"
    return InvalidQuery(f"line {line}, col {col}: {message}\n  {src}\n  {caret}",
                        line=line, col=col)


def _node_error(text: str, node: exp.Expression, message: str) -> InvalidQuery:
    """An error pointing at where `node`'s text starts in the query."""
    fragment = node.sql(dialect="postgres")
    pos = _find(text, fragment) if fragment else -1
    if pos < 0:
        return InvalidQuery(f"{message} (at: {fragment})" if fragment else message)
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return _at(text, line, col, message)


def _find(text: str, fragment: str) -> int:
    """Where the fragment (or its first word) starts, ignoring case."""
    upper = text.upper()
    pos = upper.find(fragment.upper())
    if pos < 0:
        words = fragment.replace("(", " ").split()
        pos = upper.find(words[0].upper()) if words else -1
    return pos


def _refuse_unsupported(tree: exp.Select, text: str) -> None:
    checks = [
        (exp.Join, "JOINs are not supported: each dataset is one private table, joined "
                   "before it was published here. Query one table, with the conditions in WHERE"),
        (exp.Subquery, "subqueries are not supported: a query over rows would see single "
                       "customers. Send one flat SELECT; put row conditions in WHERE and "
                       "conditions on results in HAVING"),
        (exp.Window, "window functions (OVER ...) are not supported: aggregate per group "
                     "with GROUP BY, then order the noisy rows with ORDER BY ... LIMIT n"),
        (exp.Union, "UNION is not supported: send each SELECT as its own query"),
        (exp.With, "WITH (common table expressions) is not supported: send one flat SELECT"),
        (exp.Star, None),
    ]
    for kind, message in checks:
        for node in tree.find_all(kind):
            if kind is exp.Star:
                if not isinstance(node.parent, exp.Count):
                    raise _node_error(text, node, "SELECT * is not allowed: rows never leave "
                                  "the data owner. Name group columns and aggregates, e.g. "
                                  "SELECT <column>, COUNT(*) FROM <table> GROUP BY <column>")
                continue
            raise _node_error(text, node, message)
    if tree.args.get("distinct"):
        raise InvalidQuery("SELECT DISTINCT is not supported: use GROUP BY")
    for sub in tree.find_all(exp.Select):
        if sub is not tree:
            raise _node_error(text, sub, "subqueries are not supported: send one flat SELECT")


def _table(tree: exp.Select, text: str) -> str:
    source = tree.args.get("from_") or tree.args.get("from")
    if source is None:
        raise InvalidQuery("the query needs FROM <table>, e.g. FROM purchases")
    table = source.this
    if not isinstance(table, exp.Table):
        raise _node_error(text, table, "FROM must name one table")
    return table.name  # a schema or catalog prefix (shop.purchases) is matched in names.py






def _column(node, text: str) -> str:
    """A column's name; a row-level expression becomes a derived column (sql_derived.py)."""
    from dpquery.engine import sql_derived
    node = _unparen(node)
    if isinstance(node, exp.Column):
        return node.name
    collection = sql_derived.current()
    if collection is None or isinstance(node, (exp.Literal, exp.Star)):
        raise _node_error(text, node, "expected a column name here")
    return collection.hoist(node)


def _number(node, text: str) -> float:
    if isinstance(node, exp.Neg):
        return -_number(node.this, text)
    if not isinstance(node, exp.Literal) or node.is_string:
        raise _node_error(text, node, "expected a number here")
    if any(c in node.this for c in ".eE"):
        return float(node.this)  # beyond float range: inf, refused where it is used
    value = int(node.this)
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise _node_error(text, node, "whole numbers must lie between -2^63 and 2^63-1")
    return value


def _literal(node, text: str):
    from dpquery.engine.sql_derived import date_literal  # DATE '2024-01-01': its ISO text
    if isinstance(node, exp.Literal) and node.is_string:
        return node.this
    if date_literal(node, text) is not None:
        return node.this.this
    if isinstance(node, exp.Boolean):
        raise _node_error(text, node, "columns hold text or numbers: compare them with a "
                          "quoted string or a number, not TRUE/FALSE")
    return _number(node, text)


def _predicate(node, text: str):
    """A WHERE (or PURCHASE_RATE) condition: comparisons, IN, BETWEEN, AND, OR, NOT."""
    node = _unparen(node)
    if isinstance(node, (exp.And, exp.Or)):
        cls = And if isinstance(node, exp.And) else Or
        return cls(tuple(_predicate(p, text) for p in _operands(node)))
    if isinstance(node, exp.Not):
        inner = node.this
        if isinstance(inner, exp.In):
            return _in(inner, text, negated=True)
        if isinstance(inner, exp.Between):
            return _between(inner, text, negated=True)
        return Not(_predicate(inner, text))
    if isinstance(node, exp.In):
        return _in(node, text)
    if isinstance(node, exp.Between):
        return _between(node, text)
    for cls, op in _COMPARE.items():
        if isinstance(node, cls):
            return _compare(node, op, text)
    if isinstance(node, (exp.Like, exp.ILike)):
        raise _node_error(text, node, "LIKE is not supported: the values of grouping columns "
                          "are public (GET /v1/datasets lists them); name the ones you want "
                          "with IN ('a', 'b')")
    raise _node_error(text, node, "conditions support =, <>, <, <=, >, >=, IN, BETWEEN, "
                      "AND, OR and NOT on columns and literals")


def _unparen(node):
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _operands(node) -> list:
    """`a OR b OR c` (a left-deep chain in sqlglot, parenthesised or not) as [a, b, c].

    Iterative: a chain of a thousand ORs is a thousand deep.
    """
    out, stack = [], [node]
    while stack:
        item = _unparen(stack.pop())
        if type(item) is type(node):
            stack += [item.right, item.left]
        else:
            out.append(item)
    return out


def _compare(node, op: str, text: str) -> Compare:
    left, right = _unparen(node.left), _unparen(node.right)
    if _is_literal(left) and not _is_literal(right):
        flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
        left, right, op = right, left, flipped.get(op, op)
    if not _is_literal(right):
        raise _node_error(text, right, "a comparison takes a column or row-level expression on "
                          "one side and a number or quoted string on the other; to compare two "
                          "columns, compare their difference with 0, e.g. a - b > 0")
    return Compare(_column(left, text), op, _literal(right, text))


def _is_literal(node) -> bool:
    while isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, (exp.Literal, exp.Boolean, exp.Null)) or \
        isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.to.is_type("date")


def _in(node: exp.In, text: str, negated: bool = False) -> InList:
    if node.args.get("query"):
        raise _node_error(text, node, "subqueries are not supported: list the values")
    values = tuple(_literal(v, text) for v in node.expressions)
    return InList(_column(node.this, text), values, negated)


def _between(node: exp.Between, text: str, negated: bool = False) -> Between:
    return Between(_column(node.this, text), _literal(node.args["low"], text),
                   _literal(node.args["high"], text), negated)




def _limit(tree: exp.Select, text: str) -> int | None:
    limit = tree.args.get("limit")
    if limit is None:
        return None
    value = _number(limit.expression, text)
    if not isinstance(value, int):
        raise _node_error(text, limit, "LIMIT takes a whole number")
    return value
