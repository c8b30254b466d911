"""`"bounds": "auto"`: a query's rows-per-customer bound, chosen privately (issue 15 item 1).

A configured row bound trades bias (rows of heavy customers left out) for
noise (the noise scale grows with the bound). Which side wins depends on the
query: at ε=1 a count of 1M rows by region loses ~21% to a 200-row bound,
while its noise is ~1%. With `"bounds": "auto"` (datasets opting in with
`bounds.auto = true`) a query runs in two stages under one charge:

1. Stage 1, `auto_share` of the spend (0.1 by default): the engine computes
   the exact histogram of customers by their row counts, each adding the
   share of its rows the WHERE keeps (customer_histogram.py, sensitivity Q:
   1 without a WHERE); OpenDP's vector Laplace (Gaussian under zCDP) releases
   it, at a scale accepted only where OpenDP's map at sensitivity Q fits the
   share. A grouped query also spends a third of stage 1 on a noisy count of
   customers per group (a COUNT(DISTINCT) planned like any query), which sizes
   the groups for the choice.
2. The choice, post-processing of those noisy releases and public
   configuration only (`choose`): for each candidate bound k (the histogram's
   edges up to `auto_max_rows_per_customer`), the expected mean relative
   error over the query's public groups: each group loses the share of rows
   the histogram says k leaves out, and gets the noise OpenDP's map sizes at
   k for the rest of the spend. The histogram is first fitted to a
   non-increasing density (its sparse tail is where the noise is loudest).
   Candidates start at 1, not at the configured bound: a query filtered to
   few rows per customer is best answered with a small bound. Within a bin a
   customer's row count is taken at the bin's middle; SUM and AVG weigh a
   lost row like a row's largest clamped value. Customers in the last bin (at
   least the largest bound's rows) lose k' − k more rows at k than at k'
   whatever their count, so the choice needs no guess of it; the reported
   estimate counts them at the largest bound (low for them).
3. Stage 2: the query planned like any other (`plan.plan_with_spend`) with k in place
   of `rows_per_customer`, at the rest of the spend: deterministic from
   public information and stage 1's output.

Privacy contract: the ledger is charged the whole stated spend once, before
stage 1 draws noise (service.py). If two datasets differ in one customer,
stage 1's histogram is s_h-DP (OpenDP's map at sensitivity Q) and its group
sizes s_g-DP (their own OpenDP-checked plan), s_h + s_g = s; stage 2 is
(1 − s)-DP for every k (its own OpenDP-checked plan), so by sequential
composition (stage 2 chosen adaptively from stage 1's output) the answer is
ε-DP with ε the charge (ρ-zCDP likewise); tests/test_autobound.py adds the
OpenDP losses exactly.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dpquery.engine import customer_histogram as histogram, execute, noise, plan as planner, \
    vector_plan
from dpquery.engine.query import Aggregate, Request, Spend
from dpquery.errors import InvalidQuery

ROW_KINDS = ("count", "sum", "avg")
SIZES_SHARE = 1 / 3  # of stage 1, for the noisy customers per group (grouped queries only)
SIZES = "_customers"


@dataclass(frozen=True)
class Stage1:
    """Stage 1 of an auto plan: everything is public (no data was read)."""

    share: float               # the histogram's share of the spend, in floats for OpenDP
    scale: float               # OpenDP's vector noise scale for the histogram
    measure: str               # "epsilon" or "rho"
    edges: tuple[int, ...]     # histogram bin edges (customer_histogram.edges)
    resolution: int            # Q: the histogram's sensitivity (customer_histogram.py)
    maximum: int               # auto_max_rows_per_customer
    configured: int            # rows_per_customer: caps rows per customer in group sizes
    sizes: "planner.Plan | None" = None  # grouped: the noisy count of customers per group

    @property
    def candidates(self) -> list[int]:
        return [e for e in self.edges if e <= self.maximum]


def build(request, table) -> planner.Plan:
    """Plan an auto query: stage 1 sized, stage 2 sized at the largest bound (an upper
    bound on its noise, for previews). Reads no data; refuses before any spend."""
    _check_allowed(request, table)
    ds = table.dataset
    planner.check_spend(request.budget, table)
    total = request.budget.value
    plan = planner.plan_with_spend(request, at_bound(table, ds.auto_max_rows_per_customer), total)
    if not _row_stats(plan):
        raise InvalidQuery("\"bounds\": \"auto\" chooses the rows-per-customer bound, which "
                           "this query does not use: at the largest bound a SUM adds customer "
                           "totals (clamped to customer_total_upper) instead of rows. Leave "
                           "\"bounds\" out")
    plan.auto = _stage1(plan, total * ds.auto_share)
    plan.notes.append(
        f"\"bounds\": \"auto\": {ds.auto_share:.0%} of the spend releases a noisy histogram of "
        "customers by their row counts (and, grouped, a noisy count of customers per group); "
        f"the row bound (at most {ds.auto_max_rows_per_customer}) is chosen from them for the "
        "least expected error relative to each group's size, rows left out and noise "
        "together. The noise stated here is at the largest bound: the answer's is at most "
        "this.")
    return plan


def _check_allowed(request, table) -> None:
    ds = table.dataset
    if not ds.auto_bounds:
        raise InvalidQuery(f"dataset {ds.name!r} does not choose bounds per query; its "
                           f"operator can allow it with datasets.{ds.name}.bounds.auto = true "
                           "(and bounds.auto_max_rows_per_customer) in config.toml. Leave "
                           "\"bounds\" out to use the configured bounds")
    if not isinstance(request.budget, planner.Spend):
        raise InvalidQuery("\"bounds\": \"auto\" needs a stated epsilon (or rho), not an "
                           "accuracy target: the noise depends on the bound it chooses")
    if request.bounding_report:
        raise InvalidQuery("\"bounds\": \"auto\" reports the rows its bound leaves out "
                           "(auto_bounds in the answer); leave bounding_report out")
    kinds = sorted({a.kind for a in request.query.aggregates} - set(ROW_KINDS))
    if kinds:
        raise InvalidQuery(f"\"bounds\": \"auto\" chooses the row bound of COUNT(*), SUM and "
                           f"AVG; this query also has {', '.join(k.upper() for k in kinds)}. "
                           "Ask for those separately, without \"bounds\"")
    if any(not ds.columns[c].is_public_key for c in request.query.group_by):
        raise InvalidQuery("\"bounds\": \"auto\" needs groups with public values (columns "
                           "with `values` in config.toml)")


def at_bound(table, k: int):
    """The table as a query with row bound k sees it (only rows_per_customer changes)."""
    return dataclasses.replace(table, dataset=dataclasses.replace(table.dataset,
                                                                  rows_per_customer=k))


def _stage1(plan, share: float) -> Stage1:
    """Stage 1 sized: the histogram, and for grouped queries the customers per group (a
    COUNT(DISTINCT) planned like any query, at SIZES_SHARE of stage 1)."""
    ds, query = plan.table.dataset, plan.request.query
    sizes = None
    if query.group_by:
        sizes = _sizes_plan(plan, share * SIZES_SHARE)
        share -= share * SIZES_SHARE
    measure = plan.measure
    q = histogram.resolution(query.where is not None)
    scale = vector_plan.scale_for(measure, q, share)  # OpenDP's map at sensitivity Q fits share
    noise.check(scale, measure, q, share)
    return Stage1(share, scale, measure, histogram.edges(ds.auto_max_rows_per_customer),
                  q, ds.auto_max_rows_per_customer, ds.rows_per_customer, sizes)


def _group_sizes(sizes: "planner.Plan | None") -> list[float] | None:
    """Noisy customers per group, each at least its noise's half-width (a group the noise
    cannot tell from empty counts as that large: small noisy counts must not dominate)."""
    if sizes is None:
        return None
    floor = max(sizes.stats[0].accuracy, 1.0)
    return [max(float(c), floor) for c in execute.release(sizes)[SIZES].to_list()]


def _sizes_plan(plan, share: float) -> planner.Plan:
    """COUNT(DISTINCT customer) per public group, with the query's WHERE, at `share`."""
    query = dataclasses.replace(plan.request.query,
                                aggregates=(Aggregate("count_customers", SIZES),),
                                order_by=(), limit=None, select=(), having=None)
    request = Request(query, Spend(**{plan.measure: share}), plan.request.confidence)
    return planner.plan_with_spend(request, plan.table, share)


def release(plan) -> tuple[planner.Plan, dict]:
    """Stage 1 (noise), the choice and stage 2's plan: (the plan at bound k, the report).

    Privacy contract: if two datasets differ in one customer, the histogram's
    release is `plan.auto.share`-DP (ρ-zCDP on zCDP datasets), as OpenDP's map
    of the vector measurement at sensitivity Q confirms before drawing, and the
    group sizes' release costs `plan.auto.sizes.cost`; the caller has charged
    plan.cost, which covers both and the returned plan's release.
    """
    st = plan.auto
    counts = histogram.exact(plan.table, plan.request.query.where, st.edges)
    noisy = noise.release(counts, st.scale, st.measure, st.resolution, st.share)
    sizes = _group_sizes(st.sizes)
    k, lost, total = choose(noisy, st, _noise_scales(plan), sizes)
    final = planner.plan_with_spend(plan.request, at_bound(plan.table, k), plan.cost)
    final.notes.append(f"The row bound {k} was chosen for this query (\"bounds\": \"auto\"; "
                       "see auto_bounds).")
    return final, {
        "rows_per_customer": k, "auto_max_rows_per_customer": st.maximum,
        "estimated_rows_left_out": round(max(lost, 0.0)),
        "estimated_share_left_out": min(max(lost / total, 0.0), 1.0) if total > 0 else None,
        "meaning": "the row bound was chosen from a noisy histogram of customers by their "
                   "row counts; the rows it leaves out (over the WHERE-filtered table, all "
                   "groups together) are estimated from that histogram, counting customers "
                   "above the largest bound at that bound, so the estimate is rough and low"}


def choose(noisy: list[int], st: Stage1, noise_scales: list, sizes: list[float] | None = None):
    """(k, estimated rows left out at k, estimated matching rows): the candidate bound with
    the least expected mean relative error over the query's groups.

    Post-processing of stage 1's output and public configuration only. A group
    of r rows loses the same share lost(k) / total of them as the whole table
    (an assumption: the histogram is not per group) and gets noise of OpenDP's
    scale at k; its expected |error| is E|bias + noise| (`expected_abs`), and
    each group's counts relative to its size, as partners read "within x%".
    """
    rows = _representatives(st)
    customers = decreasing_density([c / st.resolution for c in noisy], _widths(st.edges))
    total = sum(c * n for c, n in zip(customers, rows))
    groups = group_rows(sizes, sum(c * min(n, st.configured) for c, n in zip(customers, rows)))

    def lost(k: int) -> float:
        return sum(c * max(n - k, 0.0) for c, n in zip(customers, rows))

    def error(k: int) -> float:
        share = lost(k) / total if total > 0 else 0.0
        scales = [scale_at(k) for scale_at in noise_scales]
        return sum(expected_abs(share * g, scale, st.measure) / g
                   for scale in scales for g in groups)

    best = min(st.candidates, key=lambda k: (error(k), k))
    return best, lost(best), total


def group_rows(sizes: list[float] | None, total: float) -> list[float]:
    """Each group's matching rows, estimated: its noisy customers times the matching rows
    per customer-group (`total` over all groups' customers). Without groups: one group.

    `total` counts each customer's rows up to the configured bound only: the sparse
    tail is the noisiest part of the histogram, and an inflated tail would make every
    group look large and its noise cheap; smaller groups make the choice cautious."""
    if not sizes:
        return [max(total, 1.0)]
    per_customer = max(total, 1.0) / sum(sizes)
    return [max(c * per_customer, 1.0) for c in sizes]


def expected_abs(bias: float, scale: float, measure: str) -> float:
    """E|bias + X| for X the noise: Laplace of this scale (ε), or Gaussian of this σ (ρ)."""
    if measure == "rho":
        z = bias / scale
        spread = scale * math.sqrt(2 / math.pi) * math.exp(-z * z / 2)
        return spread + bias * math.erf(z / math.sqrt(2))
    return bias + scale * math.exp(-bias / scale)


def decreasing_density(counts: list[float], widths: list[float]) -> list[float]:
    """The noisy bin counts fitted to a non-increasing density (rows per customer is
    heavy-tailed: fewer customers per unit of n as n grows), then clipped at 0.

    Pool-adjacent-violators (least squares, weighted by bin width): adjacent bins
    whose densities rise are pooled into their average. In the sparse tail this
    averages the noise of several near-empty bins instead of trusting each.
    """
    blocks: list[list[float]] = []  # [density, width, bins]
    for c, w in zip(counts, widths):
        blocks.append([c / w, w, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            d2, w2, n2 = blocks.pop()
            d1, w1, n1 = blocks.pop()
            blocks.append([(d1 * w1 + d2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    density = [max(d, 0.0) for d, _w, n in blocks for _ in range(n)]
    return [d * w for d, w in zip(density, widths)]


def _widths(edges: tuple[int, ...]) -> list[float]:
    """Integer row counts in each bin; the open last bin as wide as the one before it
    (at least 1)."""
    inner = [float(b - a) for a, b in zip(edges, edges[1:])]
    return inner + [inner[-1] if inner else 1.0]


def _representatives(st: Stage1) -> list[float]:
    """The rows assumed for a customer in each bin: its middle (the last bin: its edge)."""
    edges = st.edges
    return [(a + b - 1) / 2 for a, b in zip(edges, edges[1:])] + [float(edges[-1])]


def _row_stats(plan) -> list:
    """The plan's row-bounded statistics with an engine cell (their noise grows with k)."""
    return [sp for sp in plan.stats if sp.stat.shape == "rows" and sp.stat.cell is not None]


def _noise_scales(plan) -> list:
    """Per row-bounded statistic: k -> its noise scale per group at bound k, in rows (the
    scale over a row's largest change). Scales from OpenDP's vector map at k's sensitivity."""
    return [_scale_in_rows(plan.measure, _per_row(sp.stat.cell), sp.share)
            for sp in _row_stats(plan)]


def _scale_in_rows(measure: str, per_row: float, share: float):
    def at(k: int) -> float:
        return vector_plan.scale_for(measure, k * per_row, share) / per_row
    return at


def _per_row(cell) -> float:
    """One row's largest change to the cell (as bounded.sensitivity with k = 1)."""
    if cell.kind == "len":
        return 1.0
    return float(max(abs(cell.bounds[0] - cell.center), abs(cell.bounds[1] - cell.center)))
