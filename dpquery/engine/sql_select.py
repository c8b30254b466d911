"""The SELECT list, GROUP BY, HAVING and ORDER BY of a SQL query -> the query model.

sql.py reads the statement and its conditions; this module reads what the
answer shows. Group columns may be renamed (`region AS county`), constants
and arithmetic on aggregates become derived output columns, HAVING filters
and ORDER BY sorts the noisy rows. An aggregate named only inside an
expression, HAVING or ORDER BY is released too (it takes its share of the
spend); the same aggregate written twice is released once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from dpquery.engine import sql as base, sql_aggregates
from dpquery.engine.outputs import Arith, Const, Output, Ref
from dpquery.engine.query import Aggregate, And, Between, Compare, InList, Not, Or, OrderBy

_ARITH = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}
_AGGREGATE_NODES = (exp.AggFunc, exp.WithinGroup)


@dataclass
class Shape:
    """What the SELECT list, HAVING and ORDER BY ask for."""

    group_by: tuple[str, ...]
    aggregates: list[Aggregate] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    needs_select: bool = False  # outputs differ from "group columns, then aggregates"
    having: object = None
    order_by: list[OrderBy] = field(default_factory=list)


def read(tree: exp.Select, text: str, unit: str) -> Shape:
    """Read the select list, GROUP BY, HAVING and ORDER BY of `tree`."""
    items = [(_unparen(i.this), i.alias) if isinstance(i, exp.Alias) else (_unparen(i), None)
             for i in tree.expressions]
    names, grouped = _group_columns(tree, text, items)
    shape = Shape(tuple(names))
    reader = _Reader(shape, text, unit, items)
    reader.grouped = grouped
    for i, (node, alias) in enumerate(items):
        shape.outputs.append(reader.output(i, node, alias))
    having = tree.args.get("having")
    if having is not None:
        shape.having = reader.condition(having.this)
    shape.order_by = reader.order_by(tree.args.get("order"))
    return shape


def _unparen(node):
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _group_columns(tree, text: str, items) -> tuple[list[str], dict[str, str]]:
    """GROUP BY names: columns, select-list positions (GROUP BY 1), aliases, or row-level
    expressions (derived columns named by their alias, else col<position>).

    Also returns {SQL of a grouped expression: its name} for the select list."""
    group = tree.args.get("group")
    if not group:
        return [], {}
    aliases = {a.casefold(): i for i, (_n, a) in enumerate(items) if a}
    names, grouped = [], {}
    for node in group.expressions:
        pos = None
        if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
            pos = int(node.this)
            if not 1 <= pos <= len(items) or _is_aggregate(items[pos - 1][0]):
                raise base._node_error(text, node, f"GROUP BY {pos} must be the position of a "
                                       "selected column or expression (1 is the first)")
        elif isinstance(node, exp.Column) and node.name.casefold() in aliases:
            pos = aliases[node.name.casefold()] + 1
        elif not isinstance(node, exp.Column):
            same = [i for i, (n, _a) in enumerate(items) if n.sql() == _unparen(node).sql()]
            pos = same[0] + 1 if same else None
        item, alias = items[pos - 1] if pos else (_unparen(node), None)
        if isinstance(item, exp.Column):
            names.append(item.name)
            continue
        if _is_aggregate(item) or isinstance(item, (exp.Literal, exp.Boolean)):
            raise base._node_error(text, node, "GROUP BY takes columns, their aliases or "
                                   "positions, or row-level expressions (not aggregates or "
                                   "constants)")
        name = base._column(item, text) if alias is None and pos is None else \
            _derived(text).hoist(item, alias or f"col{pos}")
        grouped[item.sql()] = name
        names.append(name)
    return names, grouped


def _derived(text: str):
    from dpquery.engine import sql_derived
    collection = sql_derived.current()
    if collection is None:  # read() is only called from sql.py, which opens one
        raise base.InvalidQuery("row-level expressions need sql.parse_sql")
    return collection


class _Reader:
    def __init__(self, shape: Shape, text: str, unit: str, items):
        self.shape, self.text, self.unit, self.items = shape, text, unit, items
        self.selected: dict[str, str] = {}  # SQL of a selected expression -> output name
        self.user_aliases = {a for _node, a in items if a}
        self.grouped: dict[str, str] = {}  # SQL of a grouped row-level expression -> its name

    # -- the select list ----------------------------------------------------------

    def output(self, i: int, node, alias) -> Output:
        if isinstance(node, exp.Column):
            group = self._group_name(node)
            if alias and alias != group:
                self.shape.needs_select = True
            return self._named(node, Output(alias or group, Ref(group)))
        if _is_aggregate(node):
            agg = self._add(sql_aggregates.aggregate(node, alias, self.unit, self.text), explicit=True,
                            named=alias is not None)
            return self._named(node, Output(agg.alias, Ref(agg.alias)))
        if node.sql() in self.grouped:  # a grouped row-level expression
            group = self.grouped[node.sql()]
            if alias and alias != group:
                self.shape.needs_select = True
            return self._named(node, Output(alias or group, Ref(group)))
        self.shape.needs_select = True
        return self._named(node, Output(alias or f"col{i + 1}", self.expression(node)))

    def _named(self, node, out: Output) -> Output:
        self.selected.setdefault(node.sql(), out.name)
        return out

    def _group_name(self, node: exp.Column) -> str:
        for g in self.shape.group_by:
            if g.casefold() == node.name.casefold():
                return g
        raise base._node_error(self.text, node, f"column {node.name!r} is selected but not "
                               f"aggregated: add it to GROUP BY or wrap it in an aggregate "
                               f"({sql_aggregates.FUNCTIONS})")

    def expression(self, node):
        """Arithmetic on aggregates and constants (an output column's value)."""
        node = _unparen(node)
        for cls, op in _ARITH.items():
            if isinstance(node, cls):
                return Arith(op, self.expression(node.this), self.expression(node.expression))
        if isinstance(node, exp.Neg):
            inner = self.expression(node.this)
            return Const(-inner.value) if isinstance(inner, Const) and _numeric(inner.value) \
                else Arith("-", Const(0), inner)
        if isinstance(node, exp.Boolean):
            return Const(bool(node.this))
        if isinstance(node, exp.Literal):
            return Const(base._literal(node, self.text))
        if isinstance(node, exp.Null):
            raise base._node_error(self.text, node, "NULL is not supported as a value here")
        if _is_aggregate(node):
            return Ref(self._add(sql_aggregates.aggregate(node, None, self.unit, self.text)).alias)
        if isinstance(node, exp.Column):
            raise base._node_error(self.text, node, f"column {node.name!r} in an output "
                                   "expression: outputs compute with aggregates, constants and "
                                   "grouped columns, e.g. SUM(x) / COUNT(*). Put a row-level "
                                   "expression inside an aggregate (SUM(x * 2)) or GROUP BY it")
        return sql_aggregates.aggregate(node, None, self.unit, self.text)  # raises: unknown function

    def _add(self, agg: Aggregate, explicit: bool = False, named: bool = False) -> Aggregate:
        """Register an aggregate: a repeat of one already released reuses it.

        A default name (sum_amount) steps aside from names the query gives (AS ...)."""
        same = [a for a in self.shape.aggregates if _same(a, agg)]
        if same and not explicit:
            return same[0]
        taken = {a.alias for a in self.shape.aggregates} | set(self.shape.group_by) | \
            (set() if named else self.user_aliases)
        alias, n = agg.alias, 1
        while alias in taken:
            n += 1
            alias = f"{agg.alias}_{n}"
        agg = Aggregate(agg.kind, alias, agg.column, agg.quantile, agg.condition)
        if not explicit:
            self.shape.needs_select = True  # a hidden aggregate: released, not shown
        self.shape.aggregates.append(agg)
        return agg

    # -- HAVING and ORDER BY --------------------------------------------------------

    def name_of(self, node) -> str:
        """The output (or group) column a HAVING or ORDER BY term reads."""
        node = _unparen(node)
        if node.sql() in self.selected:
            return self.selected[node.sql()]
        if isinstance(node, exp.Column):
            known = [o.name for o in self.shape.outputs] + list(self.shape.group_by) + \
                [a.alias for a in self.shape.aggregates]
            same = [k for k in known if k.casefold() == node.name.casefold()]
            return node.name if node.name in known or not same else same[0]
        if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
            pos = int(node.this)
            if 1 <= pos <= len(self.shape.outputs):
                return self.shape.outputs[pos - 1].name
            raise base._node_error(self.text, node, f"ORDER BY {pos} is not a position in the "
                                   f"select list (1 to {len(self.shape.outputs)})")
        if _is_aggregate(node):
            return self._add(sql_aggregates.aggregate(node, None, self.unit, self.text)).alias
        raise base._node_error(self.text, node, "use an output column, its alias, its position "
                               "or an aggregate here; expressions must also be in the SELECT list")

    def condition(self, node):
        """A HAVING condition: comparisons of output columns with literals."""
        node = _unparen(node)
        if isinstance(node, (exp.And, exp.Or)):
            cls = And if isinstance(node, exp.And) else Or
            return cls(tuple(self.condition(p) for p in base._operands(node)))
        if isinstance(node, exp.Not):
            return Not(self.condition(node.this))
        if isinstance(node, exp.Between):
            return Between(self.name_of(node.this), base._literal(node.args["low"], self.text),
                           base._literal(node.args["high"], self.text))
        if isinstance(node, exp.In) and not node.args.get("query"):
            return InList(self.name_of(node.this),
                          tuple(base._literal(v, self.text) for v in node.expressions))
        for cls, op in base._COMPARE.items():
            if isinstance(node, cls):
                return self._compare(node, op)
        raise base._node_error(self.text, node, "HAVING compares output columns or aggregates "
                               "with literals (=, <>, <, <=, >, >=, IN, BETWEEN, AND, OR, NOT)")

    def _compare(self, node, op: str) -> Compare:
        left, right = node.left, node.right
        if isinstance(_unparen(left), (exp.Literal, exp.Neg)):
            flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
            left, right, op = right, left, flipped.get(op, op)
        return Compare(self.name_of(left), op, base._literal(right, self.text))

    def order_by(self, order) -> list[OrderBy]:
        if not order:
            return []
        return [OrderBy(self.name_of(o.this), bool(o.args.get("desc"))) for o in order.expressions]


def _is_aggregate(node) -> bool:
    return isinstance(node, _AGGREGATE_NODES) or \
        isinstance(node, exp.Anonymous) and node.name.upper() in sql_aggregates.ANONYMOUS_AGGREGATES


def _same(a: Aggregate, b: Aggregate) -> bool:
    return (a.kind, a.column, a.quantile, a.condition) == (b.kind, b.column, b.quantile, b.condition)


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def where_condition(node, text: str):
    """WHERE: sql.py's conditions, with TRUE terms of an AND dropped (WHERE TRUE: none)."""
    node = _unparen(node)
    if isinstance(node, exp.Boolean):
        if node.this:
            return None
        raise base._node_error(text, node, "WHERE FALSE matches no rows; remove the query")
    if isinstance(node, exp.And):
        kept = [p for p in base._operands(node)
                if not (isinstance(p, exp.Boolean) and p.this)]
        if not kept:
            return None
        if len(kept) == 1:
            return base._predicate(kept[0], text)
        return And(tuple(base._predicate(p, text) for p in kept))
    return base._predicate(node, text)
