"""Answer a query from answers the same partner already holds (issue 15 item 4).

A query is answered for free, marked `"derived_from": [query ids]`, when it
is a post-processing of answers this partner already paid for on the same
data version:

- a coarser grouping of a released table, by one or several columns, down to
  no grouping at all: COUNT(*) or SUM by region (or in total) from a released
  COUNT(*) or SUM by region x age_band adds the noisy cells up; the interval
  is that of a sum of independent noises of the released law
  (intervals.sum_halfwidth);
- a filter to released keys: `WHERE age_band = '25-34'` (or `IN (...)`) on a
  column the released table is grouped by and the new query is not, added to
  the released query's WHERE; with one released cell per new cell every
  aggregate kind is copied (ratios only at the same confidence);
- HAVING, ORDER BY, LIMIT and computed output columns on such a table: the
  released table is plain (none of those), so they filter, sort and compute
  on the derived rows exactly as on a fresh release (postprocess.finish);
- AVG(x) per group from a released SUM(x) and COUNT(*) with the same
  grouping and filter (one answer or two): the ratio's interval is the
  test-inversion interval of intervals.ratio_intervals over the two released
  noise laws (derive_ratio.py);
- COUNT(*) from a released AVG's denominator and COUNT(DISTINCT customer_id)
  from a released PURCHASE_RATE's (the same statistics over the same bounded
  rows, mechanisms.py), kept with ratio answers as `released_parts`; counts
  of rows add up over cells like any count, counts of customers are copied
  cell for cell only (a customer may be in several cells).

Privacy: only the partner's own stored answers (the ledger, by partner id)
and public configuration are read, never the data and never another
partner's answers, so the derived answer is post-processing of what this
partner holds and costs nothing. Whether a query is derived depends only on
the queries the partner asked and on public noise scales, not on released
values. It is recorded in the ledger as a zero-cost reservation whose
stored answer carries `derived_from`.

A query is derived only when it is at least as accurate as asked: its
half-width meets the request's accuracy target (for the aggregate the target
names) or is no wider than a fresh answer's at the requested spend (the
others); otherwise it is answered fresh and charged. A mere rephrasing of a
released query (same cells, same post-processing, e.g. another alias) is
derived only when strictly more accurate than a fresh answer (a smaller spend
than the one held): otherwise it stays a new, charged query. `"derive":
false` in the body always asks for a fresh answer (the first time: a repeat
returns whatever was stored). Answers with `"bounds": "auto"` are neither
derived nor used as sources (their row bound was chosen per query).

The derived values estimate the released query's contribution-bounded
values (its rows and groups per customer), which may differ slightly from
those of a fresh query with another grouping or filter.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from dpquery import derive_ratio, derive_values as V
from dpquery.engine import intervals, plan as planner, postprocess
from dpquery.engine.query import canonical
from dpquery.errors import InvalidRequest

ADDITIVE = ("count", "sum")
STORED = ("rows", "aggregates", "confidence", "group_by")  # what a derivation reads
# An AVG's denominator is COUNT(*) of its rows, a PURCHASE_RATE's the COUNT(DISTINCT) of
# its customers: the same statistics, over the same bounded rows (mechanisms.py)
DENOMINATORS = {"count": "avg", "count_customers": "purchase_rate"}


def option(body) -> tuple[bool, object]:
    """(derive allowed, body without the "derive" field)."""
    if not isinstance(body, dict) or "derive" not in body:
        return True, body
    if not isinstance(body["derive"], bool):
        raise InvalidRequest("'derive' must be true or false")
    return body["derive"], {k: v for k, v in body.items() if k != "derive"}


@dataclass
class Match:
    source_id: int
    filters: dict  # released group column -> allowed values
    by: list       # the new query's group columns
    aggregates: list  # (new alias, released alias, kind, part: None or "den")
    rephrased: bool = False  # the same cells and post-processing (another alias, weight)


@dataclass
class Held:
    """One answer this partner holds: its query id, canonical request and stored answer."""

    id: int
    request: dict
    load: object  # () -> the stored answer (dict) or None

    @property
    def answer(self) -> dict | None:
        if not hasattr(self, "_answer"):
            self._answer = self.load()
        return self._answer


def find(ledger, partner_id: str, request, table, plan, describe) -> dict | None:
    """A derived answer from this partner's stored answers, or None (answer fresh)."""
    want = json.loads(canonical(request))
    if want.get("bounds"):
        return None
    held = list(_held(ledger, partner_id, table))
    for h in held:
        match = _match(want["query"], h.request["query"], table, h.id)
        if match is None or h.answer is None:
            continue
        derived = _derive(h.answer, match, plan, describe)
        if derived is not None:
            return derived
    return derive_ratio.average(want["query"], held, plan, describe)


def _held(ledger, partner_id: str, table):
    """The partner's committed, non-derived answers on this data version (lazily loaded)."""
    suffix = f"|{table.version}"
    for r in ledger.reservations(partner_id, table.name):
        if r.status != "COMMITTED" or not r.query_text.endswith(suffix) or \
                r.amount.is_zero():  # derived answers are not sources: their own are
            continue
        stored = json.loads(r.query_text[: -len(suffix)])
        if stored.get("bounds"):
            continue
        yield Held(r.id, stored, lambda rid=r.request_id: _load(ledger, partner_id, rid))


def _load(ledger, partner_id: str, request_id: str) -> dict | None:
    text = ledger.get_answer(partner_id, request_id)
    answer = json.loads(text) if text else None
    if not answer or "derived_from" in answer or "auto_bounds" in answer or \
            not all(k in answer for k in STORED):  # e.g. stored by an older version
        return None
    return answer


def released_parts(plan, noisy) -> list[dict] | None:
    """The released numerators and denominators of the plan's ratios, per group key, in
    column units, kept with the answer (`released_parts`): they are the release itself
    (the ratio and its interval are computed from them), and a later query may be
    derived from them (COUNT(*) from an AVG's denominator, COUNT(DISTINCT) from a
    PURCHASE_RATE's). None when the query has no ratio."""
    ratios = {a.alias for a in plan.request.query.aggregates if a.kind in planner.RATIOS}
    stats = [sp.stat for sp in plan.stats if sp.stat.aggregate in ratios]
    if not stats:
        return None
    by = list(plan.request.query.group_by)
    out = []
    for record in noisy.iter_rows(named=True):
        row = {k: record[k] for k in by}
        for st in stats:
            value = record[st.column]
            row[st.column] = None if value is None else float(value) * st.unit
        out.append(row)
    return out


def _match(want: dict, have: dict, table, source_id: int) -> Match | None:
    """How `want` reads from the released `have`, or None when it cannot."""
    columns = table.dataset.columns
    if not V.plain(have) or want["dataset"] != have["dataset"] or \
            want.get("derived") != have.get("derived") or \
            not all(columns[c].is_public_key for c in have["group_by"]) or \
            not set(want["group_by"]) <= set(have["group_by"]):
        return None
    dropped = set(have["group_by"]) - set(want["group_by"])
    filters = _filters(want["where"], have["where"], dropped)
    if filters is None:
        return None
    pairs = []
    for agg in want["aggregates"]:
        source = _source(agg, have["aggregates"])
        if source is None:
            return None
        pairs.append((agg["alias"], source[0], agg["kind"], source[1]))
    same = not filters and not dropped and V.plain(want) and all(p[3] is None for p in pairs)
    return Match(source_id, filters, list(want["group_by"]), pairs, same)


def _source(agg: dict, held: list) -> tuple | None:
    """(held alias, part) a new aggregate reads: the same aggregate (part None), or the
    released denominator of a held ratio that counts the same thing (DENOMINATORS)."""
    same = [h["alias"] for h in held if _body(h) == _body(agg)]
    if same:
        return same[0], None
    ratio = DENOMINATORS.get(agg["kind"]) if agg.get("column") is None else None
    parts = [h["alias"] for h in held if h["kind"] == ratio]
    return (parts[0], "den") if parts else None


def _body(agg: dict) -> dict:
    return {k: v for k, v in agg.items() if k not in ("alias", "weight")}


def _filters(want_where, have_where, dropped: set) -> dict | None:
    """want's WHERE = have's WHERE AND key filters on dropped group columns."""
    if want_where == have_where:
        return {}
    terms = want_where["items"] if want_where and want_where["node"] == "And" else [want_where]
    base = have_where["items"] if have_where and have_where["node"] == "And" else \
        ([have_where] if have_where else [])
    if any(t not in terms for t in base):
        return None
    filters = {}
    for t in (t for t in terms if t not in base):
        if t is None or t.get("column") not in dropped or t["column"] in filters:
            return None
        if t["node"] == "Compare" and t["op"] == "=":
            filters[t["column"]] = [t["value"]]
        elif t["node"] == "InList" and not t["negated"]:
            filters[t["column"]] = list(t["values"])
        else:
            return None
    return filters


@dataclass
class Cells:
    """The held cells a derived answer reads: per new row, the held rows it adds up."""

    answer: dict
    groups: list  # [[held row, ...] per new row]
    k: int        # held rows per new row
    parts: dict | None  # held group key -> its released numerators and denominators

    def key(self, row: dict) -> tuple:
        return tuple(row[c] for c in self.answer["group_by"])


def _cells(answer: dict, match: Match) -> Cells | None:
    rows = [r for r in answer["rows"] if all(r[c] in v for c, v in match.filters.items())]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[c] for c in match.by), []).append(r)
    ks = {len(v) for v in groups.values()}
    if len(ks) != 1:
        return None
    by = answer["group_by"]
    parts = {tuple(p[c] for c in by): p for p in answer.get("released_parts") or []} or None
    return Cells(answer, list(groups.values()), ks.pop(), parts)


def _derive(answer: dict, match: Match, plan, describe) -> dict | None:
    cells = _cells(answer, match)
    if cells is None:
        return None
    out_rows = [{c: group[0][c] for c in match.by} for group in cells.groups]
    noise = {}
    for alias, src, kind, part in match.aggregates:
        info = next(a for a in answer["aggregates"] if a["alias"] == src)
        limit = V.limit_for(plan, alias, match.rephrased)
        got = _from_part(cells, alias, info, kind, part, limit, plan) if part else \
            _from_cells(cells, alias, info, kind, limit, plan, match.rephrased)
        if got is None:
            return None
        values, noise[alias] = got
        for row, v in zip(out_rows, values):
            row.update(v)
    rows = postprocess.finish(out_rows, plan.request.query)
    return V.answer_of(rows, [match.source_id], _note(match.source_id, cells.k), noise,
                     plan, describe)


def _from_cells(cells: Cells, alias: str, info: dict, kind: str, limit, plan,
                rephrased: bool) -> tuple | None:
    """(values per new row, (noise entries, half-width)) from the held aggregate's cells."""
    src, held = info["alias"], info.get("expected_halfwidth")
    same_level = cells.k == 1 and cells.answer["confidence"] == plan.request.confidence
    if kind in ADDITIVE:
        if held is None:
            return None
        if same_level:  # the held cells as they are, or nothing
            return ([V.copied(alias, src, g[0]) for g in cells.groups], (info["noise"], held)) \
                if limit(held) else None
        laws = V.laws_of(info["noise"], {sp.stat.column: sp for sp in plan.stats}, alias)
        width = intervals.sum_halfwidth(laws["value"], cells.k, plan.request.confidence)
        if not limit(width):
            return None
        positive = _non_negative(plan, kind, alias)
        values = [V.summed(alias, [V.released(c, src, held, positive) for c in g], held, width,
                          positive) for g in cells.groups]
        return values, (info["noise"], width)
    if not same_level:
        return None
    laws = V.laws_of(info["noise"], {sp.stat.column: sp for sp in plan.stats}, alias)
    if kind in planner.RATIOS:  # the half-width the released laws give, shown in the answer
        if not V.same_centre(info["noise"], plan, alias, kind):
            return None
        width = V.ratio_width(laws["num"], laws["den"], plan, alias)
        ok = limit(width)
    else:
        width, ok = None, V.scales_ok(laws, plan, alias, rephrased)
    return ([V.copied(alias, src, g[0]) for g in cells.groups], (info["noise"], width)) \
        if ok else None


def _from_part(cells: Cells, alias: str, info: dict, kind: str, part: str, limit,
               plan) -> tuple | None:
    """(values per new row, (noise entries, half-width)) from a held ratio's released
    denominators (released_parts): COUNT(*) from an AVG's, COUNT(DISTINCT) from a
    PURCHASE_RATE's. Counts of rows add up over cells; counts of customers do not
    (a customer may be in several), so those are copied cell for cell only."""
    if cells.parts is None or (cells.k > 1 and kind not in ADDITIVE):
        return None
    entry = next(e for e in info["noise"] if e["statistic"] == part)
    width = intervals.sum_halfwidth(V.law(entry, 1.0), cells.k, plan.request.confidence)
    column = f"{info['alias']}.{part}"
    values = [[cells.parts.get(cells.key(r), {}).get(column) for r in g] for g in cells.groups]
    if not limit(width) or any(v is None for g in values for v in g):
        return None
    return ([V.summed(alias, g, 0.0, width, True) for g in values],
            ([{**entry, "statistic": "value"}], width))


def _non_negative(plan, kind: str, alias: str) -> bool:
    if kind == "count":
        return True
    agg = next(a for a in plan.request.query.aggregates if a.alias == alias)
    return plan.table.column(agg.column).lower >= 0


def _note(source_id: int, k: int) -> str:
    return (f"Derived at no cost from query {source_id}, which this partner already holds"
            + (f": each value adds up {k} of its cells, and the interval is that of a sum of "
               f"{k} independent noises" if k > 1 else ": its cells, selected"))


