"""Query model + catalog + spend -> OpenDP measurement, cost and expected accuracy.

Planning touches neither data nor budget. Every noise scale is checked by
OpenDP's own privacy map: `_scale_for` makes a first guess from the map at
scale 1 (privacy loss falls as a power of the scale: ε ∝ 1/s for Laplace and
the exponential mechanism, ρ ∝ 1/s² for Gaussian under zCDP), then accepts a
scale only once `measurement.map(d_in) <= share` holds, nudging upward until
it does. The whole plan's loss is re-checked with OpenDP after composition.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from dataclasses import dataclass, field

import opendp.prelude as dp
import polars as pl

from dpquery.engine import bounded as bounded_mod, catalog, frames, mechanisms, vector_plan
from dpquery.engine.reference import GroupTruncation, Reference, total_loss
from dpquery.engine.catalog import Table
from dpquery.errors import InternalError, InvalidQuery
from dpquery.engine.mechanisms import Stat
from dpquery.engine import derived_table, postprocess
from dpquery.engine.query import SPREADS, AccuracyTarget, Request, Spend

dp.enable_features("contrib")

RATIOS = ("avg", "purchase_rate")
KEYS_SHARE = 0.2  # of the spend, for the thresholded count that releases private keys
REPORT_SHARE = 0.1  # of the spend, for the bounding report when asked for
SLACK = 1e-9  # spend left unused so OpenDP's total never exceeds the charge by rounding
NO_THRESHOLD = 2 ** 32 - 1  # while sizing scales, keep thresholding out of the way


@dataclass
class StatPlan:
    stat: Stat
    share: float
    param: float = math.nan           # the scale handed to OpenDP (in the statistic's units)
    scale: float = math.nan           # the noise scale OpenDP reports, in the column's units
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
    keys: pl.DataFrame | None  # the public keys; None without GROUP BY or with private keys
    notes: list[str] = field(default_factory=list)
    delta: float = 0.0  # charged with private key selection (the dataset's configured δ)
    key_release: "KeyRelease | None" = None
    context: "_Context | None" = None
    bounding: "tuple | None" = None  # (measurement, [truncated, customers], Part) when asked for
    bounded: list = field(default_factory=list)  # per part: the engine's Part, or None
    auto: "object | None" = None  # "bounds": "auto": stage 1 (autobound.Stage1), drawn first

    @property
    def private_keys(self) -> bool:
        return self.key_release is not None

    @property
    def stats(self) -> list[StatPlan]:
        return [sp for _shape, sps in self.parts for sp in sps]

    def measurements_for(self, keys: pl.DataFrame) -> list:
        """Private keys: the parts rebuilt over the keys actually released.

        The plan was sized over placeholder keys that make OpenDP's map as large
        as it can be; each rebuilt part is checked to cost no more.
        """
        ctx = self.context.with_keys(keys.lazy())
        rebuilt = [ctx.measurement(shape, sps) for shape, sps in self.parts]
        for new, planned in zip(rebuilt, self.measurements):
            if new.map()[0] > planned.map()[0] * (1 + 1e-12):
                raise InternalError()
        return rebuilt


@dataclass
class KeyRelease:
    """Private key selection: a thresholded count of customers per group (ε, δ)."""

    measurement: object
    stat: StatPlan
    threshold: int


def build(request: Request, table: Table) -> Plan:
    """Plan a request: a stated spend, or the least spend meeting an accuracy target."""
    budget = request.budget
    if request.auto_bounds:  # stage 1 chooses the row bound, stage 2 is plan_with_spend at that bound
        from dpquery.engine import autobound  # it imports this module
        return autobound.build(request, table)
    if isinstance(budget, AccuracyTarget):
        from dpquery.engine import accuracy_plan  # it plans through this module
        return accuracy_plan.plan_for_accuracy(request, table, budget)
    check_spend(budget, table)
    return plan_with_spend(request, table, budget.value)


def check_spend(spend: Spend, table: Table) -> None:
    ds = table.dataset
    wanted = "rho" if ds.measure == "zcdp" else "epsilon"
    given = "epsilon" if spend.epsilon is not None else "rho"
    if given != wanted:
        raise InvalidQuery(f"dataset {ds.name!r} is accounted in {wanted} ({ds.measure}); "
                           f"state \"{wanted}\" instead of \"{given}\"")
    if spend.value > ds.max_epsilon_per_query:
        raise InvalidQuery(f"{wanted}={spend.value:g} is above the per-query cap "
                           f"{ds.max_epsilon_per_query:g} of dataset {ds.name!r}; ask for less")


def plan_with_spend(request: Request, table: Table, total: float) -> Plan:
    ds = table.dataset
    by = list(request.query.group_by)
    private = any(not ds.columns[c].is_public_key for c in by)
    chosen = total * ds.auto_share if request.auto_bounds else 0.0  # autobound's stage 1
    reported = total * REPORT_SHARE if request.bounding_report else 0.0
    share = (total - chosen - reported) * (1 - KEYS_SHARE) if private else \
        total - chosen - reported
    keys = _placeholder_keys(table, by) if private else \
        frames.key_frame(ds.columns, by, table.schema)
    ctx = _Context(table, request, keys, approximate=private)
    stats = [s for agg in request.query.aggregates
             for s in mechanisms.stats_for(agg, table, ctx.groups)]
    parts = _group_parts(stats, _shares(request.query.aggregates, stats, share))
    for _shape, sps in parts:
        for sp in sps:
            sp.param = _scale_for(ctx, sp)
    measurements = [ctx.measurement(shape, sps) for shape, sps in parts]
    if private:
        _check_key_growth(ctx, parts, measurements)
    bounded = [ctx.bounded_part(shape, sps) for shape, sps in parts]
    catalog.check_engine_reach(table, private or None in bounded)
    key_release = _key_release(table, request, (total - reported) * KEYS_SHARE) \
        if private else None
    bounding = _bounding(table, request, reported, private) if reported else None
    on_engine, on_reference = _split(table, parts, measurements, bounded, bounding)
    measure = "rho" if ds.measure == "zcdp" else "epsilon"
    engine_loss = vector_plan.size(on_engine, measure, request.confidence)
    _check_loss(on_reference, key_release, total - chosen - engine_loss,
                ds.delta if private else 0.0)
    for (_shape, sps), meas, part in zip(parts, measurements, bounded):
        if part is None or table.engine == "polars":
            _annotate(meas, sps, request.confidence)
    vector_plan.check(on_engine, measure)
    return Plan(request, table, "rho" if ds.measure == "zcdp" else "epsilon", total,
                measurements, parts, None if private else (keys.collect() if keys is not None else None),
                _notes(request, table, key_release), ds.delta if private else 0.0,
                key_release, ctx, bounding, bounded)


def _bounding(table: Table, request: Request, share: float, approximate: bool) -> tuple:
    """How many customers the row bound cuts, over the whole WHERE-filtered table."""
    whole = Request(dataclasses.replace(request.query, group_by=()), request.budget,
                    request.confidence)
    ctx = _Context(table, whole, None, approximate=approximate)
    sps = [StatPlan(s, share / 2) for s in mechanisms.truncation_stats(table.dataset.rows_per_customer)]
    for sp in sps:
        sp.param = _scale_for(ctx, sp)
    meas = ctx.measurement("customers", sps)
    _annotate(meas, sps, request.confidence)
    return meas, sps, ctx.bounded_part("customers", sps)


def _check_key_growth(ctx: "_Context", parts, measurements: list) -> None:
    """Private keys: the plan must cost as much with as many keys as may be released.

    OpenDP's map of counts and integer sums stops growing past `groups` keys,
    but a float sum's rounding margin grows with every group. Checked here, with
    `max_groups` placeholder keys (the most a release keeps), so no query is
    refused after its keys were drawn.
    """
    most = ctx.with_keys(_placeholder_keys(ctx.table, ctx.by, ctx.table.dataset.max_groups))
    for (shape, sps), planned in zip(parts, measurements):
        if most.measurement(shape, sps).map()[0] > planned.map()[0] * (1 + 1e-12):
            floats = [c for c, col in ctx.table.dataset.columns.items()
                      if col.type == "float" and not col.resolution]
            raise InvalidQuery(
                "with groups that have no public list of values, a sum or average of a column "
                "without a `resolution` gets noisier with every group released, so it cannot be "
                f"planned in advance. Declare a `resolution` for {', '.join(floats) or 'it'} in "
                "config.toml, or group by columns with public values")


def _placeholder_keys(table: Table, by: list[str], n: int | None = None) -> pl.LazyFrame:
    """n made-up keys (default groups_per_customer + 1: OpenDP's map is then as large as
    a release of any number of keys makes it, for counts and integer sums)."""
    n = n if n is not None else catalog.groups_bound(table.dataset, by) + 1
    cols = {c: [f"__k{i}" if table.schema[c] == pl.String else i for i in range(n)] for c in by}
    return pl.LazyFrame(cols, schema={c: table.schema[c] for c in by})


def _key_release(table: Table, request: Request, share: float) -> KeyRelease:
    """Release the groups that exist, by a count of customers thresholded under δ."""
    ctx = _Context(table, request, None, approximate=True)
    sp = StatPlan(mechanisms.keys_stat("customers"), share)
    sp.param = _scale_for(ctx, sp)
    threshold = _threshold(ctx, "customers", [sp], table.dataset.delta)
    meas = ctx.measurement("customers", [sp], threshold)
    _annotate(meas, [sp], request.confidence)
    return KeyRelease(meas, sp, threshold)


def _check_loss(measurements: list, key_release, total: float, delta: float) -> None:
    """OpenDP composes the parts' losses; the whole must fit what is charged.

    The parts are released one by one (collecting the OnceFrames a composed
    measurement returns crashes opendp 0.16), each over its own input
    (reference.py), so their OpenDP maps are added exactly, as make_composition would.
    """
    if key_release is not None:
        measurements = [key_release.measurement, *measurements]
    if not measurements:
        return
    loss = total_loss(measurements, approximate=key_release is not None)
    eps, dlt = loss if key_release is not None else (loss, 0)
    if eps > Fraction(total) or dlt > Fraction(delta):
        raise InternalError()  # OpenDP's map disagrees with the per-statistic checks


def _split(table: Table, parts, measurements: list, bounded: list, bounding) -> tuple:
    """([(Part, stats)] an engine releases, [measurements] OpenDP's polars releases)."""
    on_engine, on_reference = [], []
    pieces = [(part, sps, meas) for part, (_s, sps), meas in zip(bounded, parts, measurements)]
    if bounding is not None:
        pieces.append((bounding[2], bounding[1], bounding[0]))
    for part, sps, meas in pieces:
        if part is not None and table.engine != "polars":
            on_engine.append((part, sps))
        else:
            on_reference.append(meas)
    return on_engine, on_reference


def _threshold(ctx, shape: str, sps: list[StatPlan], delta: float) -> int:
    """The least threshold whose δ (from OpenDP's map) fits `delta`."""
    def fits(t: int) -> bool:
        try:
            return ctx.measurement(shape, sps, t).map()[1] <= delta
        except dp.OpenDPException:  # e.g. "threshold must be greater than" the sensitivity
            return False
    found = dp.binary_search(fits, bounds=(0, 2 ** 31 - 1), T=int)  # OpenDP searches i32
    if not fits(found):
        raise InternalError()
    return found


class _Context:
    """Builds OpenDP measurements for one request (domain, metric, plans)."""

    def __init__(self, table: Table, request: Request, keys, approximate: bool = False):
        self.table, self.request, self.keys, self.approximate = table, request, keys, approximate
        ds = table.dataset
        self.unit = ds.privacy_unit
        self.by = list(request.query.group_by)
        self.groups = catalog.groups_bound(ds, self.by)
        keys_n = catalog.key_count(ds, self.by)
        self.truncate_groups = keys_n is None or self.groups < keys_n  # else it keeps all
        self.domain = _domain(table)
        self.metric = dp.frame_distance(dp.symmetric_id_distance(self.unit))
        measure = dp.zero_concentrated_divergence() if ds.measure == "zcdp" \
            else dp.max_divergence()
        self.output = dp.approximate(measure) if approximate else measure

    def with_keys(self, keys: pl.LazyFrame) -> "_Context":
        return _Context(self.table, self.request, keys, self.approximate)

    def lazyframe(self, shape: str, stats: list[Stat], scales: list[float | None]) -> pl.LazyFrame:
        ds, q = self.table.dataset, self.request.query
        frame = frames.base(self.table.schema)
        exprs = [s.expr(sc) for s, sc in zip(stats, scales)]
        if shape == "rows":  # bound first (keyed, as every engine does), then WHERE
            frame = frames.truncate_rows(frame, self.unit, ds.rows_per_customer)
            frame = frames.where(frame, q.where)
        elif shape == "group_rows":  # groups were truncated on the input (_truncation)
            frame = frames.where(frame, q.where)
            frame = frames.truncate_rows_per_group(frame, self.unit, self.by, ds.rows_per_customer)
        else:  # customers: groups were truncated on the input (_truncation)
            frame = frames.where(frame, q.where)
            pre = {s.pre().meta.output_name(): s.pre() for s in stats if s.pre is not None}
            frame = frames.per_customer(frame, self.unit, self.by, list(pre.values()) or [pl.len().alias("_rows")])
        return frames.aggregate(frame, self.by, exprs, self.keys)

    def _truncation(self, shape: str) -> GroupTruncation | None:
        """Customers kept in their first G groups, before the measurement (reference.py)."""
        if shape == "rows" or not self.truncate_groups or not self.by:
            return None
        return GroupTruncation(self.unit, tuple(self.by), self.groups, self.request.query.where)

    def bounded_part(self, shape: str, sps: list[StatPlan]):
        """The part as an engine computes it (None: only OpenDP's polars can release it)."""
        cells = tuple(sp.stat.cell for sp in sps)
        if shape not in ("rows", "customers") or None in cells or self.approximate:
            return None
        ds = self.table.dataset
        reach = catalog.key_count(ds, self.by) or self.groups
        return bounded_mod.Part(shape, self.unit, tuple(self.by), self.request.query.where, cells,
                                ds.rows_per_customer, self.groups if self.truncate_groups else None,
                                max_groups=min(reach, self.groups))

    def measurement(self, shape: str, sps: list[StatPlan], threshold: int | None = None) -> Reference:
        return self._reference(shape, [sp.stat for sp in sps], [sp.param for sp in sps], threshold)

    def single_loss(self, stat: Stat, scale: float) -> float:
        """The ε (or ρ) of releasing one statistic at `scale`, from OpenDP's map."""
        releases_keys = self.keys is None and bool(self.by)
        loss = self._reference(stat.shape, [stat], [scale],
                               NO_THRESHOLD if releases_keys else None).map()
        return loss[0] if self.approximate else loss

    def _reference(self, shape: str, stats: list[Stat], scales: list, threshold) -> Reference:
        plan = self.lazyframe(shape, stats, scales)
        return Reference(self._make(plan, threshold), self._truncation(shape))

    def _make(self, plan, threshold: int | None = None):
        try:
            return dp.m.make_private_lazyframe(self.domain, self.metric, self.output, plan,
                                               threshold=threshold)
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
    target = sp.share * (1 - SLACK)  # float sums of shares may round up; the charge never does
    loss_at_one = ctx.single_loss(sp.stat, 1.0)
    scale = (loss_at_one / target) ** (1.0 / power)
    for _ in range(60):
        if ctx.single_loss(sp.stat, scale) <= target:
            return scale
        scale *= 1 + 1e-9 * 4 ** _
    raise InternalError()


def _shares(aggregates, stats: list[Stat], total: float) -> dict[str, float]:
    """Split across aggregates by weight (equal by default); a ratio splits its share
    equally between num and den. dpquery.spend.exact_shares states the same split exactly."""
    weight = {a.alias: a.weight for a in aggregates}
    whole = sum(weight.values())
    count = {a.alias: sum(1 for s in stats if s.aggregate == a.alias) for a in aggregates}
    return {s.column: total * weight[s.aggregate] / whole / count[s.aggregate] for s in stats}


def _group_parts(stats: list[Stat], shares: dict) -> list[tuple[str, list[StatPlan]]]:
    """Statistics sharing a shape run in one OpenDP plan (one pass over the data)."""
    parts: dict[str, list[StatPlan]] = {}
    for s in stats:
        parts.setdefault(s.shape, []).append(StatPlan(s, shares[s.column]))
    return list(parts.items())


def _annotate(meas, sps: list[StatPlan], confidence: float) -> None:
    """Read distribution, scale and accuracy of each statistic from OpenDP."""
    alpha = 1 - confidence
    meas = meas.measurement
    full = {r["column"]: r for r in dp.summarize_polars_measurement(meas, alpha).rows(named=True)}
    half = {r["column"]: r for r in dp.summarize_polars_measurement(meas, alpha / 2).rows(named=True)}
    for sp in sps:
        row, row_half = full[sp.stat.column], half[sp.stat.column]
        unit = sp.stat.unit
        sp.distribution = row["distribution"]
        sp.scale = row["scale"] * unit  # reported; sp.param stays what OpenDP was given
        acc, acc_half = row.get("accuracy"), row_half.get("accuracy")
        sp.accuracy = acc * unit if acc is not None else math.nan
        sp.accuracy_half = acc_half * unit if acc_half is not None else math.nan


def _notes(request: Request, table: Table, key_release) -> list[str]:
    ds = table.dataset
    groups = catalog.groups_bound(ds, request.query.group_by)
    notes = [f"Each customer contributes at most {ds.rows_per_customer} rows and "
             f"{groups} group{'s' if groups != 1 else ''} per query; intervals cover the "
             "contribution-bounded value and the noise, not sampling error."]
    if key_release is not None:
        notes.append(f"Groups without a public list of values are shown only where a noisy "
                     f"count of customers passes {key_release.threshold}; which groups "
                     f"appear is protected by delta={ds.delta:g}.")
    if any(a.kind == "quantile" for a in request.query.aggregates):
        notes.append("Quantiles are chosen among configured candidates by the exponential "
                     "mechanism; they have no interval.")
    spreads = [n for a in request.query.aggregates if (n := mechanisms.spread_note(a, table))]
    return notes + postprocess.notes(request.query, request.confidence) + \
        _kind_notes(request.query) + spreads + derived_table.notes(request.query)


def _kind_notes(query) -> list[str]:
    """What COUNT(col) and VARIANCE/STDDEV mean here (from the query alone)."""
    notes, kinds = [], {a.kind for a in query.aggregates}
    if any(a.kind == "count" and a.column for a in query.aggregates):
        notes.append("COUNT(column) counts rows where the column is not null; the prepared "
                     "table drops rows with a null in any declared column, so it equals "
                     "COUNT(*) here.")
    if kinds & set(SPREADS):
        notes.append("VARIANCE and STDDEV come from noisy sums of values and of squared "
                     "values (centred on the clamp range's midpoint) and a noisy count; their "
                     "interval joins the three parts' intervals, each at a third of the error "
                     "rate, so it holds at the stated confidence.")
    return notes
