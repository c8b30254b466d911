"""SQL text -> query model, through sqlglot and an allowlist.

The SQL is never executed as SQL: its syntax tree is read node by node and
anything outside the supported subset is refused with a message that points at
the text. Supported:

    SELECT <group columns>, <aggregates> FROM <table> [WHERE ...]
    [GROUP BY <columns>] [ORDER BY <output column> [ASC|DESC], ...] [LIMIT n]

Aggregates: COUNT(*), COUNT(DISTINCT <privacy unit>), SUM(col), AVG(col),
MEDIAN(col), QUANTILE(col, q), PURCHASE_RATE(<condition>).
"""
from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from dpquery.errors import InvalidQuery
from dpquery.engine.query import (INT_RANGE, MAX_CONDITION_DEPTH, Aggregate, And, Between,
                                  Compare, InList, Not, Or, OrderBy, Query)

FUNCTIONS = "COUNT(*), COUNT(DISTINCT customer_id), SUM, AVG, MEDIAN, QUANTILE, PURCHASE_RATE"
_COMPARE = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
# Parentheses and NOTs nested in the text, counted on the tokens before sqlglot parses
# (its parser recurses about 20 Python frames per parenthesis). Room for a condition
# at MAX_CONDITION_DEPTH inside PURCHASE_RATE(...) and IN (...).
MAX_NESTING = MAX_CONDITION_DEPTH + 8
_SIGNS = (TokenType.DASH, TokenType.PLUS, TokenType.TILDE)
_OPERANDS = (TokenType.NUMBER, TokenType.STRING, TokenType.VAR, TokenType.IDENTIFIER,
             TokenType.R_PAREN, TokenType.STAR)


def parse_sql(text: str, privacy_unit: str = "customer_id") -> Query:
    """Parse one SELECT statement into a `Query` (catalog checks come later)."""
    try:
        return _query(text, privacy_unit)
    except RecursionError:  # a backstop: _check_nesting keeps sqlglot well inside the limit
        raise InvalidQuery(f"the SQL nests too deeply to read; keep parentheses, NOT, signs "
                           f"and casts under {MAX_NESTING} levels") from None


def _query(text: str, privacy_unit: str) -> Query:
    tree = _parse(text)
    _refuse_unsupported(tree, text)
    group_by = tuple(_group_columns(tree, text))
    aggregates = []
    for item in tree.expressions:
        node, alias = (item.this, item.alias) if isinstance(item, exp.Alias) else (item, None)
        if isinstance(node, exp.Column):
            _check_grouped(node.name, group_by, text, node)
            continue
        aggregates.append(_aggregate(node, alias, privacy_unit, text))
    where = tree.args.get("where")
    return Query(
        dataset=_table(tree, text),
        aggregates=tuple(_unique_aliases(aggregates)),
        group_by=group_by,
        where=_predicate(where.this, text) if where else None,
        order_by=tuple(_order_by(tree, text)),
        limit=_limit(tree, text),
    )


def _parse(text: str) -> exp.Select:
    if not isinstance(text, str) or not text.strip():
        raise InvalidQuery("'sql' must be a non-empty SQL SELECT statement")
    try:
        _check_nesting(text)
        statements = sqlglot.parse(text, dialect="postgres")
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
        (exp.Join, "JOINs are not supported: query one table"),
        (exp.Subquery, "subqueries are not supported: send one flat SELECT"),
        (exp.Window, "window functions (OVER ...) are not supported"),
        (exp.Union, "UNION is not supported"),
        (exp.Having, "HAVING is not supported: filter the noisy output yourself"),
        (exp.With, "WITH (common table expressions) is not supported"),
        (exp.Star, None),
    ]
    for kind, message in checks:
        for node in tree.find_all(kind):
            if kind is exp.Star:
                if not isinstance(node.parent, exp.Count):
                    raise _node_error(text, node, "SELECT * is not allowed: name group "
                                      "columns and aggregates, e.g. SELECT region, COUNT(*)")
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
    return table.name


def _group_columns(tree: exp.Select, text: str) -> list[str]:
    group = tree.args.get("group")
    if not group:
        return []
    names = []
    for node in group.expressions:
        if not isinstance(node, exp.Column):
            raise _node_error(text, node, "GROUP BY takes column names only (no positions or expressions)")
        names.append(node.name)
    return names


def _check_grouped(name: str, group_by: tuple, text: str, node) -> None:
    if name not in group_by:
        raise _node_error(text, node, f"column {name!r} is selected but not aggregated: "
                          f"add it to GROUP BY or wrap it in an aggregate ({FUNCTIONS})")


def _aggregate(node, alias, unit: str, text: str) -> Aggregate:
    if isinstance(node, exp.Count):
        return _count(node, alias, unit, text)
    simple = {exp.Sum: "sum", exp.Avg: "avg"}
    for cls, kind in simple.items():
        if isinstance(node, cls):
            return Aggregate(kind, alias or f"{kind}_{_column(node.this, text)}",
                             column=_column(node.this, text))
    if isinstance(node, exp.Median):
        column = _column(node.this, text)
        return Aggregate("quantile", alias or f"median_{column}", column=column, quantile=0.5)
    if isinstance(node, exp.Quantile):
        column = _column(node.this, text)
        q = _number(node.args.get("quantile"), text)
        return Aggregate("quantile", alias or f"q{q:g}_{column}", column=column, quantile=float(q))
    if isinstance(node, exp.Anonymous) and node.name.upper() == "PURCHASE_RATE":
        if len(node.expressions) != 1:
            raise _node_error(text, node, "PURCHASE_RATE takes one condition, e.g. "
                              "PURCHASE_RATE(category = 'snacks')")
        return Aggregate("purchase_rate", alias or "purchase_rate",
                         condition=_predicate(node.expressions[0], text))
    if isinstance(node, (exp.Anonymous, exp.Func)):
        name = node.name.upper() if isinstance(node, exp.Anonymous) else node.key.upper()
        raise _node_error(text, node, f"unknown function {name}; supported: {FUNCTIONS}")
    raise _node_error(text, node, f"select group columns and aggregates only ({FUNCTIONS})")


def _count(node: exp.Count, alias, unit: str, text: str) -> Aggregate:
    inner = node.this
    if isinstance(inner, exp.Star):
        return Aggregate("count", alias or "count")
    if isinstance(inner, exp.Distinct) and len(inner.expressions) == 1:
        column = _column(inner.expressions[0], text)
        if column == unit:
            return Aggregate("count_customers", alias or "customers")
    raise _node_error(text, node, f"COUNT supports COUNT(*) and COUNT(DISTINCT {unit}) only")


def _column(node, text: str) -> str:
    if not isinstance(node, exp.Column):
        raise _node_error(text, node, "expected a column name here")
    return node.name


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
    if isinstance(node, exp.Literal) and node.is_string:
        return node.this
    if isinstance(node, exp.Boolean):
        raise _node_error(text, node, "TRUE/FALSE literals are not supported here")
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
    left, right = node.left, node.right
    if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
        flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
        left, right, op = right, left, flipped.get(op, op)
    return Compare(_column(left, text), op, _literal(right, text))


def _in(node: exp.In, text: str, negated: bool = False) -> InList:
    if node.args.get("query"):
        raise _node_error(text, node, "subqueries are not supported: list the values")
    values = tuple(_literal(v, text) for v in node.expressions)
    return InList(_column(node.this, text), values, negated)


def _between(node: exp.Between, text: str, negated: bool = False) -> Between:
    return Between(_column(node.this, text), _literal(node.args["low"], text),
                   _literal(node.args["high"], text), negated)


def _order_by(tree: exp.Select, text: str) -> list[OrderBy]:
    order = tree.args.get("order")
    if not order:
        return []
    items = []
    for ordered in order.expressions:
        node = ordered.this
        if not isinstance(node, exp.Column):
            raise _node_error(text, node, "ORDER BY takes output column names or aliases")
        items.append(OrderBy(node.name, bool(ordered.args.get("desc"))))
    return items


def _limit(tree: exp.Select, text: str) -> int | None:
    limit = tree.args.get("limit")
    if limit is None:
        return None
    value = _number(limit.expression, text)
    if not isinstance(value, int):
        raise _node_error(text, limit, "LIMIT takes a whole number")
    return value


def _unique_aliases(aggregates: list[Aggregate]) -> list[Aggregate]:
    seen: dict[str, int] = {}
    out = []
    for agg in aggregates:
        n = seen.get(agg.alias, 0)
        seen[agg.alias] = n + 1
        if n:
            agg = Aggregate(agg.kind, f"{agg.alias}_{n + 1}", agg.column, agg.quantile, agg.condition)
        out.append(agg)
    return out
