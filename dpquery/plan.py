"""Query model + catalog + spend -> OpenDP measurement, cost and expected accuracy.

Planning touches neither data nor budget. Every noise scale is checked by
OpenDP's own privacy map: `_scale_for` makes a first guess from the map at
scale 1 (privacy loss falls as a power of the scale: ε ∝ 1/s for Laplace and
the exponential mechanism, ρ ∝ 1/s² for Gaussian under zCDP), then accepts a
scale only once `measurement.map(d_in) <= share` holds, nudging upward until
it does. The whole plan's loss is re-checked with OpenDP after composition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import opendp.prelude as dp
import polars as pl

from dpquery import frames
from dpquery import catalog
from dpquery.catalog import Table
from dpquery.errors import AccuracyUnreachable, InternalError, InvalidQuery
from dpquery.query import AccuracyTarget, Aggregate, Request, Spend

dp.enable_features("contrib")

D_IN = [dp.polars.Bound(per_group=1)]  # neighbouring datasets differ in one customer
RATIOS = ("avg", "purchase_rate")


@dataclass(frozen=True)
class Stat:
    """One noisy column: `expr(scale)` builds its OpenDP expression."""

    column: str
    aggregate: str
    role: str  # value | num | den
    shape: str  # rows | group_rows | customers
    expr: Callable[[float | None], pl.Expr]
    pre: Callable[[], pl.Expr] | None = None  # per-customer column it reads (customers shape)
    unit: float = 1.0  # the released value times `unit` is in the column's own units


@dataclass
class StatPlan:
    stat: Stat
    share: float
    scale: float = math.nan
    distribution: str = ""
    accuracy: float = math.nan        # half-width at the request's confidence
    accuracy_half: float = math.nan   # half-width at half the error rate (for ratios)


@dataclass
class Plan:
    """Everything execute needs; `cost` is what the ledger charges."""

    request: Request
    table: Table
    measure: str  # "epsilon" or "rho"
    cost: float
    measurements: list  # one OpenDP measurement per part, released in turn
    parts: list[tuple[str, list[StatPlan]]]
    keys: pl.DataFrame | None
    notes: list[str] = field(default_factory=list)

    @property
    def stats(self) -> list[StatPlan]:
        return [sp for _shape, sps in self.parts for sp in sps]


def build(request: Request, table: Table) -> Plan:
    """Plan a request: a stated spend, or the least spend meeting an accuracy target."""
    budget = request.budget
    if isinstance(budget, AccuracyTarget):
        return _plan_for_accuracy(request, table, budget)
    _check_spend(budget, table)
    return _plan(request, table, budget.value)


def _check_spend(spend: Spend, table: Table) -> None:
    ds = table.dataset
    wanted = "rho" if ds.measure == "zcdp" else "epsilon"
    given = "epsilon" if spend.epsilon is not None else "rho"
    if given != wanted:
        raise InvalidQuery(f"dataset {ds.name!r} is accounted in {wanted} ({ds.measure}); "
                           f"state \"{wanted}\" instead of \"{given}\"")
    if spend.value > ds.max_epsilon_per_query:
        raise InvalidQuery(f"{wanted}={spend.value:g} is above the per-query cap "
                           f"{ds.max_epsilon_per_query:g} of dataset {ds.name!r}; ask for less")


def _plan(request: Request, table: Table, total: float) -> Plan:
    ds = table.dataset
    stats = [s for agg in request.query.aggregates for s in _stats(agg, table)]
    shares = _shares(request.query.aggregates, stats, total)
    parts = _group_parts(stats, shares)
    keys = frames.key_frame(ds.columns, list(request.query.group_by), table.schema)
    ctx = _Context(table, request, keys)
    for _shape, sps in parts:
        for sp in sps:
            sp.scale = _scale_for(ctx, sp)
    measurements = [ctx.measurement(shape, sps) for shape, sps in parts]
    # OpenDP composes the parts' losses. The parts are released one by one:
    # collecting the OnceFrames a composed measurement returns crashes opendp 0.16.
    composed = measurements[0] if len(measurements) == 1 else \
        dp.c.make_composition(measurements)
    cost = composed.map(D_IN)
    if cost > total * (1 + 1e-12):
        raise InternalError()  # OpenDP's map disagrees with the per-statistic checks
    for (_shape, sps), meas in zip(parts, measurements):
        _annotate(meas, sps, request.confidence)
    notes = _notes(request, table)
    return Plan(request, table, "rho" if ds.measure == "zcdp" else "epsilon", total,
                measurements, parts, keys.collect() if keys is not None else None, notes)


class _Context:
    """Builds OpenDP measurements for one request (domain, metric, plans)."""

    def __init__(self, table: Table, request: Request, keys):
        self.table, self.request, self.keys = table, request, keys
        ds = table.dataset
        self.unit = ds.privacy_unit
        self.by = list(request.query.group_by)
        self.domain = _domain(table)
        self.metric = dp.frame_distance(dp.symmetric_id_distance(self.unit))
        self.output = dp.zero_concentrated_divergence() if ds.measure == "zcdp" \
            else dp.max_divergence()

    def lazyframe(self, shape: str, stats: list[Stat], scales: list[float | None]) -> pl.LazyFrame:
        ds, q = self.table.dataset, self.request.query
        frame = frames.base(self.table.schema, q.where)
        exprs = [s.expr(sc) for s, sc in zip(stats, scales)]
        if shape == "rows":
            frame = frames.truncate_rows(frame, self.unit, ds.rows_per_customer)
        elif shape == "group_rows":
            frame = frames.truncate_rows_per_group(frame, self.unit, self.by, ds.rows_per_customer)
            frame = frames.truncate_groups(frame, self.unit, self.by, ds.groups_per_customer)
        else:
            frame = frames.truncate_groups(frame, self.unit, self.by, ds.groups_per_customer)
            pre = {s.pre().meta.output_name(): s.pre() for s in stats if s.pre is not None}
            frame = frames.per_customer(frame, self.unit, self.by, list(pre.values()) or [pl.len().alias("_rows")])
        return frames.aggregate(frame, self.by, exprs, self.keys)

    def measurement(self, shape: str, sps: list[StatPlan]):
        plan = self.lazyframe(shape, [sp.stat for sp in sps], [sp.scale for sp in sps])
        return self._make(plan)

    def single(self, stat: Stat, scale: float):
        return self._make(self.lazyframe(stat.shape, [stat], [scale]))

    def _make(self, plan):
        try:
            return dp.m.make_private_lazyframe(self.domain, self.metric, self.output, plan)
        except dp.OpenDPException as exc:
            raise _map_opendp(exc) from None


def _map_opendp(exc) -> Exception:
    """OpenDP refusals at planning time are configuration or query problems, not data."""
    text = str(exc).split("\n")[-1][:300]
    return InvalidQuery(f"this query cannot be made private as written: {text}")


def _domain(table: Table):
    atoms = {pl.Int64: dp.i64, pl.Int32: dp.i32, pl.Float64: dp.f64, pl.String: dp.String,
             pl.Boolean: bool}
    series = [dp.series_domain(name, dp.atom_domain(T=atoms[dtype]))
              for name, dtype in table.schema.items()]
    domain = dp.lazyframe_domain(series)
    return dp.with_margin(domain, dp.polars.Margin(by=[], max_length=table.dataset.max_rows))


def _scale_for(ctx: _Context, sp: StatPlan) -> float:
    """The smallest scale found whose OpenDP privacy loss fits the statistic's share."""
    power = 2.0 if ctx.table.dataset.measure == "zcdp" else 1.0
    loss_at_one = ctx.single(sp.stat, 1.0).map(D_IN)
    scale = (loss_at_one / sp.share) ** (1.0 / power)
    for _ in range(60):
        if ctx.single(sp.stat, scale).map(D_IN) <= sp.share:
            return scale
        scale *= 1 + 1e-9 * 4 ** _
    raise InternalError()


def _stats(agg: Aggregate, table: Table) -> list[Stat]:
    """The noisy statistics an aggregate is computed from."""
    ds, a = table.dataset, agg.alias
    if agg.kind == "count":
        return [Stat(a, a, "value", "rows", lambda s: dp.len(scale=s, signed=True).alias(a))]
    if agg.kind == "count_customers":
        return [Stat(a, a, "value", "customers", lambda s: dp.len(scale=s, signed=True).alias(a))]
    if agg.kind == "purchase_rate":
        num, den = f"{a}.num", f"{a}.den"
        return [Stat(num, a, "num", "customers", lambda s: pl.col(num).dp.sum((0, 1), scale=s),
                     pre=lambda: frames.matched_flag(agg.condition, num)),
                Stat(den, a, "den", "customers", lambda s: dp.len(scale=s, signed=True).alias(den))]
    col = ds.columns[agg.column]
    if agg.kind == "quantile":
        cands = [float(c) for c in (col.quantile_candidates or _default_candidates(col))]
        return [Stat(a, a, "value", "group_rows",
                     lambda s: pl.col(agg.column).dp.quantile(agg.quantile, cands, scale=s).alias(a))]
    source, bounds, unit = _summable(col)
    if agg.kind == "sum":
        return [_sum_stat(agg, col, source, bounds, unit, table)]
    num, den = f"{a}.num", f"{a}.den"
    return [Stat(num, a, "num", "rows", lambda s: pl.col(source).dp.sum(bounds, scale=s).alias(num),
                 unit=unit),
            Stat(den, a, "den", "rows", lambda s: dp.len(scale=s, signed=True).alias(den))]


def _summable(col):
    """The column sums read, its clamp bounds there, and the value of one unit.

    With a `resolution`, sums run over the hidden integer column (e.g. cents):
    integer sums are exact, so OpenDP adds no float-rounding margin to the noise.
    """
    if col.resolution:
        res = col.resolution
        return (catalog.units_column(col.name),
                (math.floor(col.lower / res), math.ceil(col.upper / res)), res)
    return col.name, (float(col.lower), float(col.upper)), 1.0


def _sum_stat(agg: Aggregate, col, source: str, bounds, unit: float, table: Table) -> Stat:
    """SUM over bounded rows, or over clamped customer totals where that is less noisy."""
    a = agg.alias
    rows = Stat(a, a, "value", "rows", lambda s: pl.col(source).dp.sum(bounds, scale=s).alias(a),
                unit=unit)
    if col.customer_total_upper is None or col.lower < 0:
        return rows
    top = col.customer_total_upper / unit
    total = (0, math.ceil(top)) if col.resolution else (0.0, float(top))
    totals = Stat(a, a, "value", "customers", lambda s: pl.col(a).dp.sum(total, scale=s).alias(a),
                  pre=lambda: frames.customer_total(source, bounds[0], bounds[1], a), unit=unit)
    ds = table.dataset
    return totals if ds.groups_per_customer * total[1] < ds.rows_per_customer * bounds[1] else rows


def _default_candidates(col) -> list[float]:
    step = (col.upper - col.lower) / 20
    return [col.lower + i * step for i in range(21)]


def _shares(aggregates, stats: list[Stat], total: float) -> dict[str, float]:
    """Equal split across aggregates; a ratio splits its share between num and den."""
    per_agg = total / len(aggregates)
    count = {a.alias: sum(1 for s in stats if s.aggregate == a.alias) for a in aggregates}
    return {s.column: per_agg / count[s.aggregate] for s in stats}


def _group_parts(stats: list[Stat], shares: dict) -> list[tuple[str, list[StatPlan]]]:
    """Statistics sharing a shape run in one OpenDP plan (one pass over the data)."""
    parts: dict[str, list[StatPlan]] = {}
    for s in stats:
        parts.setdefault(s.shape, []).append(StatPlan(s, shares[s.column]))
    return list(parts.items())


def _annotate(meas, sps: list[StatPlan], confidence: float) -> None:
    """Read distribution, scale and accuracy of each statistic from OpenDP."""
    alpha = 1 - confidence
    full = dp.summarize_polars_measurement(meas, alpha).rows(named=True)
    half = dp.summarize_polars_measurement(meas, alpha / 2).rows(named=True)
    for sp, row, row_half in zip(sps, full, half):
        unit = sp.stat.unit
        sp.distribution = row["distribution"]
        sp.scale = row["scale"] * unit
        acc, acc_half = row.get("accuracy"), row_half.get("accuracy")
        sp.accuracy = acc * unit if acc is not None else math.nan
        sp.accuracy_half = acc_half * unit if acc_half is not None else math.nan


def _notes(request: Request, table: Table) -> list[str]:
    ds = table.dataset
    notes = [f"Each customer contributes at most {ds.rows_per_customer} rows and "
             f"{ds.groups_per_customer} groups per query; intervals cover the "
             "contribution-bounded value and the noise, not sampling error."]
    if any(a.kind == "quantile" for a in request.query.aggregates):
        notes.append("Quantiles are chosen among configured candidates by the exponential "
                     "mechanism; they have no interval.")
    return notes


DEFAULT_GROUP_SIZE = {"purchase_rate": 1000, "avg": 10000}


def group_size(kind: str, assumed: int | None) -> int | None:
    """The denominator size a ratio's promised accuracy assumes (None: not a ratio)."""
    if kind not in RATIOS:
        return None
    return assumed if assumed is not None else DEFAULT_GROUP_SIZE[kind]


def expected_halfwidth(plan: Plan, alias: str, assumed: int | None = None) -> float:
    """The promised half-width of one aggregate (ratios: for groups of the assumed size)."""
    sps = {sp.stat.role: sp for sp in plan.stats if sp.stat.aggregate == alias}
    agg = next(a for a in plan.request.query.aggregates if a.alias == alias)
    size = group_size(agg.kind, assumed)
    if agg.kind not in RATIOS:
        return sps["value"].accuracy
    num, den = sps["num"].accuracy_half, sps["den"].accuracy_half
    if size <= den:
        return math.inf
    magnitude = 1.0 if agg.kind == "purchase_rate" else _max_abs(plan.table, agg.column)
    return (num + magnitude * den) / (size - den)


def _max_abs(table: Table, column: str) -> float:
    col = table.column(column)
    return max(abs(col.lower), abs(col.upper))


def _plan_for_accuracy(request: Request, table: Table, target: AccuracyTarget) -> Plan:
    """The least spend (3 significant digits, rounded up) meeting the accuracy target."""
    ds = table.dataset
    aliases = [a.alias for a in request.query.aggregates]
    alias = target.aggregate or aliases[0]
    if alias not in aliases:
        raise InvalidQuery(f"accuracy target names {alias!r}; the query's aggregates are "
                           f"{', '.join(aliases)}")
    if next(a for a in request.query.aggregates if a.alias == alias).kind == "quantile":
        raise InvalidQuery("an accuracy target cannot be set on a quantile; state epsilon instead")
    request = Request(request.query, request.budget, target.confidence, request.extras)
    cap = ds.max_epsilon_per_query

    def width(spend: float) -> float:
        return expected_halfwidth(_plan(request, table, spend), alias, target.assumed_group_size)

    best = width(cap)
    if best > target.within:
        kind = next(a.kind for a in request.query.aggregates if a.alias == alias)
        size = group_size(kind, target.assumed_group_size)
        assumed = (f" for groups of {size:,} {'customers' if kind == 'purchase_rate' else 'purchases'}"
                   " (set assumed_group_size)" if size else "")
        shown = f"±{best:.4g}" if math.isfinite(best) else "no useful bound"
        raise AccuracyUnreachable(
            f"even the per-query cap {cap:g} gives {shown} for {alias!r} at "
            f"{target.confidence:.0%}{assumed}; the target ±{target.within:g} cannot be met. "
            "Loosen the target, group by fewer columns, or filter to larger groups")
    return _plan(request, table, _least_spend(width, target.within, cap))


def _least_spend(width, within: float, cap: float) -> float:
    """Bisect for the least spend whose half-width meets `within` (width falls as spend grows)."""
    hi = min(cap, _round_up(cap * width(cap) / within))
    while hi < cap and width(hi) > within:
        hi = min(cap, hi * 1.25)
    lo = hi / 1.25 if hi < cap else 0.0
    for _ in range(10):
        mid = (lo + hi) / 2
        if width(mid) <= within:
            hi = mid
        else:
            lo = mid
    return min(_round_up(hi), cap)


def _round_up(x: float) -> float:
    """Round up to three significant digits, so charges read as 0.0523, not 0.05228..."""
    digits = 2 - math.floor(math.log10(x))
    return math.ceil(x * 10 ** digits) / 10 ** digits
