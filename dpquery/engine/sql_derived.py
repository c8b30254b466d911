"""Row-level expressions in SQL text -> derived columns (derived.py) of the query model.

Wherever sql.py expects a column (a WHERE comparison, IN or BETWEEN, an
aggregate's argument, a PURCHASE_RATE condition, a CASE condition) and finds
an expression instead, the expression becomes a derived column and the query
names it. GROUP BY expressions (sql_select.py) are named by their alias, or
`col<n>` after their place in the SELECT list; other expressions `expr1`,
`expr2`, ... in order of appearance. The same expression written twice is one
derived column, so spellings that differ only in where an expression is
repeated read the same.

The derived columns being collected belong to the statement being read:
`reading()` opens a collection for one parse (a context variable, so
concurrent parses in threads never share one), and `hoist` adds to it.
"""
from __future__ import annotations

import contextlib
import contextvars

from sqlglot import exp

from dpquery.config import iso_date
from dpquery.engine.derived import (FUNCTIONS, MAX_DERIVED, Arith, Case, Col, DatePart, Derived,
                                    Func, Lit, Truth)
from dpquery.errors import InvalidQuery

MAX_DEPTH = 64  # nested operators and functions in one expression (as deep as MAX_NODES allows)
_current: contextvars.ContextVar = contextvars.ContextVar("dpquery_sql_derived", default=None)
_ARITH = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}
_FUNCS = {exp.Least: "LEAST", exp.Greatest: "GREATEST", exp.Abs: "ABS", exp.Floor: "FLOOR",
          exp.Ceil: "CEIL", exp.Round: "ROUND", exp.Coalesce: "COALESCE"}
_CONDITIONS = (exp.And, exp.Or, exp.Not, exp.In, exp.Between, exp.EQ, exp.NEQ, exp.LT, exp.LTE,
               exp.GT, exp.GTE)
# Date parts of a date column; every day-of-week spelling reads ISO 1 = Monday .. 7 = Sunday
_DATES = {exp.Year: "YEAR", exp.Quarter: "QUARTER", exp.Month: "MONTH", exp.Day: "DAY",
          exp.DayOfMonth: "DAY", exp.DayOfWeek: "DOW", exp.DayOfWeekIso: "DOW"}
_EXTRACT = {"YEAR": "YEAR", "QUARTER": "QUARTER", "MONTH": "MONTH", "DAY": "DAY",
            "DOW": "DOW", "ISODOW": "DOW", "DAYOFWEEK": "DOW"}
DATE_FUNCTIONS = "YEAR, QUARTER, MONTH, DAY, DAYOFWEEK (1 = Monday .. 7 = Sunday), EXTRACT"
SUPPORTED = ("CASE WHEN ... THEN ... ELSE ... END, + - * /, " + ", ".join(FUNCTIONS)
             + f", comparisons as 1/0, date parts {DATE_FUNCTIONS}")


class Collection:
    """The derived columns of one statement, in order of appearance."""

    def __init__(self, text: str):
        self.text = text
        self.derived: list[Derived] = []
        self.unnamed = 0  # expressions named expr1, expr2, ... so far

    def hoist(self, node, name: str | None = None) -> str:
        """The name of the derived column computing `node` (added when new)."""
        expr = self.read(node)
        for d in self.derived:
            if d.expr == expr and (name is None or d.name == name):
                return d.name
        taken = {d.name.casefold() for d in self.derived}
        if name is not None and name.casefold() in taken:
            raise _error(self.text, node, f"two different expressions are named {name!r}; "
                         "give each its own alias")
        while name is None or name.casefold() in taken:
            self.unnamed += 1
            name = f"expr{self.unnamed}"
        if len(self.derived) >= MAX_DERIVED:
            raise _error(self.text, node, f"a query may compute at most {MAX_DERIVED} row-level "
                         "expressions")
        self.derived.append(Derived(name, expr))
        return name

    def read(self, node, depth: int = 0):
        """A sqlglot expression -> derived.py nodes (refusing what is not supported)."""
        from dpquery.engine import sql as base
        if depth > MAX_DEPTH:
            raise _error(self.text, node, f"an expression nests more than {MAX_DEPTH} levels; "
                         "simplify it")
        node = base._unparen(node)
        sub = lambda n: self.read(n, depth + 1)  # noqa: E731
        if isinstance(node, exp.Column):
            return Col(node.name)
        if isinstance(node, (exp.Literal, exp.Neg)) and _is_number(node):
            return Lit(base._literal(node, self.text))
        if isinstance(node, exp.Literal):
            return Lit(node.this)
        if isinstance(node, exp.Neg):
            return Arith("-", Lit(0), sub(node.this))
        if isinstance(node, exp.Boolean):
            return Lit(1 if node.this else 0)
        for cls, op in _ARITH.items():
            if isinstance(node, cls):
                return Arith(op, sub(node.this), sub(node.expression))
        if isinstance(node, _CONDITIONS):
            return Truth(base._predicate(node, self.text))
        if isinstance(node, exp.Case):
            return self._case(node, sub)
        return self._function(node, sub)

    def _case(self, node: exp.Case, sub) -> Case:
        from dpquery.engine import sql as base
        if node.args.get("default") is None:
            raise _error(self.text, node, "CASE needs an ELSE: rows matching no WHEN would be "
                         "NULL. Add ELSE <value>, e.g. ELSE 'other' or ELSE 0")
        subject = node.this
        whens = []
        for branch in node.args.get("ifs") or []:
            cond = branch.this if subject is None else exp.EQ(this=subject.copy(),
                                                              expression=branch.this.copy())
            whens.append((base._predicate(cond, self.text), sub(branch.args["true"])))
        return Case(tuple(whens), sub(node.args["default"]))

    def _function(self, node, sub):
        if isinstance(node, exp.Round) and node.args.get("decimals") is not None:
            return Func("ROUND", (sub(node.this), sub(node.args["decimals"])))
        for cls, name in _FUNCS.items():
            if isinstance(node, cls):
                args = [node.this, *(node.expressions or [])]
                return Func(name, tuple(sub(a) for a in args))
        if isinstance(node, exp.Anonymous) and node.name.upper() == "CLAMP":
            return Func("CLAMP", tuple(sub(a) for a in node.expressions))
        if isinstance(node, (*_DATES, exp.Extract)):
            return self._date_part(node, sub)
        if isinstance(node, exp.Null):
            raise _error(self.text, node, "NULL is not supported in expressions; use a value")
        if isinstance(node, (exp.AggFunc, exp.WithinGroup)):
            raise _error(self.text, node, "an aggregate cannot appear inside a row-level "
                         "expression; put the expression inside the aggregate, e.g. "
                         "SUM(amount * 2)")
        name = node.name.upper() if isinstance(node, exp.Anonymous) else node.key.upper()
        raise _error(self.text, node, f"{name} is not supported in a row-level expression; "
                     f"supported: {SUPPORTED}")


    def _date_part(self, node, sub) -> DatePart:
        """YEAR(d), EXTRACT(MONTH FROM d), ...: the argument is checked to be a date column
        where its type is known (derived_bounds.date_part)."""
        if isinstance(node, exp.Extract):
            part = _EXTRACT.get(node.name.upper())
            if part is None:
                raise _error(self.text, node, f"EXTRACT({node.name.upper()} FROM ...) is not "
                             "supported; date parts: YEAR, QUARTER, MONTH, DAY, DOW (ISO: "
                             "1 = Monday .. 7 = Sunday)")
            return DatePart(part, sub(node.expression))
        return DatePart(next(p for cls, p in _DATES.items() if type(node) is cls), sub(node.this))


def date_literal(node, text: str) -> str | None:
    """DATE 'YYYY-MM-DD' (or CAST('...' AS DATE), '...'::date) as its ISO text; None when
    `node` is not a date literal. Any other written date is refused with the form to use."""
    if not (isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DATE)
            and isinstance(node.this, exp.Literal) and node.this.is_string):
        return None
    if iso_date(node.this.this) is None:
        raise _error(text, node.this, f"{node.this.this!r} is not a date written YYYY-MM-DD; "
                     "write e.g. DATE '2024-01-01'")
    return node.this.this


def _is_number(node) -> bool:
    while isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and not node.is_string


def _error(text: str, node, message: str) -> InvalidQuery:
    from dpquery.engine import sql as base
    return base._node_error(text, node, message)


def from_json(doc) -> tuple:
    """The JSON query form's `"derived": {"name": "<SQL expression>", ...}`, read as in SQL.

    WHERE, aggregates and group_by of the JSON query then name them; a later
    expression's conditions may name an earlier one."""
    from dpquery.engine import sql as base
    if not isinstance(doc, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                            for k, v in doc.items()):
        raise InvalidQuery('query.derived must be an object of names and SQL expressions, e.g. '
                           '{"stage": "CASE WHEN age_band = \'65+\' THEN \'senior\' ELSE '
                           '\'other\' END"}')
    with reading("") as collection:
        for name, text in doc.items():
            collection.text = text
            collection.hoist(_expression(text, base), name)
    return tuple(collection.derived)


def _expression(text: str, base) -> exp.Expression:
    """One SQL expression (no statement around it), under sql.py's nesting and node checks."""
    tree = base._parse(f"SELECT {text}")
    base._refuse_unsupported(tree, text)
    if len(tree.expressions) != 1 or isinstance(tree.expressions[0], exp.Alias) or \
            any(v for k, v in tree.args.items() if k != "expressions"):
        raise InvalidQuery(f"query.derived: {text!r} must be one expression, e.g. "
                           "FLOOR(amount / 10) * 10")
    return tree.expressions[0]


@contextlib.contextmanager
def reading(text: str):
    """Collect the derived columns of the statement `text` while it is read."""
    collection = Collection(text)
    token = _current.set(collection)
    try:
        yield collection
    finally:
        _current.reset(token)


def current() -> Collection | None:
    return _current.get()
