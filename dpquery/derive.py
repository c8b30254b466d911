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
  noise laws (derive_ratio.py).

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

from dpquery.engine import intervals, plan as planner, postprocess
from dpquery.engine.query import AccuracyTarget, canonical
from dpquery.errors import InvalidRequest
from dpquery.present import amount_json, spend_amount

ADDITIVE = ("count", "sum")
POST = ("order_by", "limit", "select", "having")  # post-processing of released rows
ROUNDING = 2e-5  # released scales are shown to 6 digits and read back rounded up


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
    aggregates: list  # (new alias, released alias, kind)
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
    from dpquery import derive_ratio  # it imports this module
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
    return None if not answer or "derived_from" in answer or "auto_bounds" in answer else answer


def plain(query: dict) -> bool:
    """No HAVING, ORDER BY, LIMIT or computed columns: every public key's cell is there."""
    return not any(query.get(k) for k in POST)


def _match(want: dict, have: dict, table, source_id: int) -> Match | None:
    """How `want` reads from the released `have`, or None when it cannot."""
    columns = table.dataset.columns
    if not plain(have) or want["dataset"] != have["dataset"] or \
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
        same = [h for h in have["aggregates"] if _body(h) == _body(agg)]
        if not same:
            return None
        pairs.append((agg["alias"], same[0]["alias"], agg["kind"]))
    return Match(source_id, filters, list(want["group_by"]), pairs,
                 not filters and not dropped and plain(want))


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


def _derive(answer: dict, match: Match, plan, describe) -> dict | None:
    rows = [r for r in answer["rows"] if all(r[c] in v for c, v in match.filters.items())]
    cells: dict[tuple, list] = {}
    for r in rows:
        cells.setdefault(tuple(r[c] for c in match.by), []).append(r)
    ks = {len(v) for v in cells.values()}
    if len(ks) != 1:
        return None
    k = ks.pop()
    noise = {a["alias"]: a["noise"] for a in answer["aggregates"]}
    held_width = {a["alias"]: a.get("expected_halfwidth") for a in answer["aggregates"]}
    confidence, wanted = answer["confidence"], plan.request.confidence
    fresh = {sp.stat.column: sp for sp in plan.stats}
    out_rows = [{c: key[i] for i, c in enumerate(match.by)} for key in cells]
    widths = {}
    for alias, src, kind in match.aggregates:
        laws = laws_of(noise[src], fresh, alias)
        limit = limit_for(plan, alias, match.rephrased)
        if kind in ADDITIVE and held_width[src] is None:
            return None
        if kind in ADDITIVE and (k > 1 or confidence != wanted):
            width = intervals.sum_halfwidth(laws["value"], k, wanted)
            if not limit(width):
                return None
            for row, group in zip(out_rows, cells.values()):
                row.update(_summed(alias, src, group, width, held_width[src],
                                   _non_negative(plan, kind, alias)))
        elif k == 1 and confidence == wanted and \
                _copy_ok(kind, laws, held_width[src], plan, alias, limit, match.rephrased):
            width = held_width[src] if kind in ADDITIVE else None
            for row, (cell,) in zip(out_rows, cells.values()):
                row.update({alias: cell[src], f"{alias}_ci_low": cell[f"{src}_ci_low"],
                            f"{alias}_ci_high": cell[f"{src}_ci_high"]})
        else:
            return None
        widths[alias] = width
    rows = postprocess.finish(out_rows, plan.request.query)
    return answer_of(rows, [match.source_id], _note(match.source_id, k),
                     {alias: (noise[src], widths[alias]) for alias, src, _ in match.aggregates},
                     plan, describe)


def laws_of(entries: list, fresh: dict, alias: str) -> dict:
    """The released statistics' noise laws by role (units from the fresh plan's statistics)."""
    laws = {}
    for e in entries:
        column = alias if e["statistic"] == "value" else f"{alias}.{e['statistic']}"
        laws[e["statistic"]] = law(e, fresh[column].stat.unit)
    return laws


def law(entry: dict, unit: float) -> intervals.Noise:
    """One released statistic's noise law from its public description in an answer."""
    return intervals.Noise("Gaussian" in entry["mechanism"],
                           entry["scale"] * (1 + 1e-5),  # shown to 6 digits: round up
                           unit if entry["mechanism"].startswith("Integer") else None)


def limit_for(plan, alias: str, strictly: bool = False):
    """Whether a derived half-width is accurate enough for `alias`.

    The request's accuracy target, for the aggregate it names, or else a fresh
    answer's half-width at the planned spend. A rephrasing of the same cells
    (e.g. a new alias) is derived only when strictly more accurate than a
    fresh answer: as before, a merely rephrased query is a new query, charged.
    """
    budget = plan.request.budget
    assumed = getattr(budget, "assumed_group_size", None)
    fresh = planner.expected_halfwidth(plan, alias, assumed)
    if strictly:
        return lambda width: width is not None and width < fresh * (1 - 1e-4)
    bound = fresh * (1 + ROUNDING)
    if isinstance(budget, AccuracyTarget) and \
            (budget.aggregate or plan.request.query.aggregates[0].alias) == alias:
        bound = max(bound, budget.within)
    return lambda width: width is not None and width <= bound


def _copy_ok(kind: str, laws: dict, held: float | None, plan, alias: str, limit,
             strictly: bool) -> bool:
    """Copied cells: their half-width (additive: the held one; ratios: the one the
    released laws give for groups of the request's size) is accurate enough;
    other kinds: every released part's scale is no larger than the fresh one's."""
    if kind in ADDITIVE:
        return limit(held)
    if kind in planner.RATIOS:
        return limit(ratio_width(laws["num"], laws["den"], plan, alias))
    fresh = {sp.stat.role: sp for sp in plan.stats if sp.stat.aggregate == alias}
    for role, law in laws.items():
        sp = fresh[role]
        if law.gaussian != ("Gaussian" in sp.distribution):
            return False
        if not (law.scale < sp.scale * (1 - 1e-4) if strictly
                else law.scale <= sp.scale * (1 + ROUNDING)):
            return False
    return True


def ratio_width(num: intervals.Noise, den: intervals.Noise, plan, alias: str,
                centre: float | None = None) -> float:
    """The half-width a ratio's interval has under these released laws, for groups of
    the size the request assumes (as planner.expected_halfwidth for a fresh answer).
    `centre`: what the numerator's values were summed minus (default: the fresh plan's)."""
    agg = next(a for a in plan.request.query.aggregates if a.alias == alias)
    size = planner.group_size(agg.kind, getattr(plan.request.budget, "assumed_group_size", None))
    magnitude = 1.0
    if agg.kind == "avg":
        if centre is None:
            centre = next(sp for sp in plan.stats if sp.stat.column == f"{alias}.num").stat.center
        col = plan.table.column(agg.column)
        magnitude = max(abs(col.lower - centre), abs(col.upper - centre))
    return intervals.expected_halfwidth(num, den, magnitude, size, plan.request.confidence)


def released(cell: dict, src: str, held: float, non_negative: bool) -> float | None:
    """A cell's released (unclipped) value: one shown as 0 was clipped after the noise
    and is read back from its interval; None when the whole interval was clipped (the
    draw was below −half-width: only an upper bound is known)."""
    value, high = cell[src], cell[f"{src}_ci_high"]
    if not non_negative or value > 0:
        return value
    return high - held if high > 0 else None


def _summed(alias: str, src: str, group: list, width: float, held: float,
            non_negative: bool) -> dict:
    """Σ of released cells ± the sum's half-width. A cell whose whole interval was
    clipped counts as −half-width (its draw was lower) and leaves the low end at 0."""
    total, censored = 0.0, False
    for cell in group:
        value = released(cell, src, held, non_negative)
        if value is None:
            total, censored = total - held, True
        else:
            total += value
    low, high = total - width, total + width
    if non_negative:
        total, low, high = max(total, 0.0), 0.0 if censored else max(low, 0.0), max(high, 0.0)
    return {alias: total, f"{alias}_ci_low": low, f"{alias}_ci_high": high}


def _non_negative(plan, kind: str, alias: str) -> bool:
    if kind == "count":
        return True
    agg = next(a for a in plan.request.query.aggregates if a.alias == alias)
    return plan.table.column(agg.column).lower >= 0


def _note(source_id: int, k: int) -> str:
    return (f"Derived at no cost from query {source_id}, which this partner already holds"
            + (f": each value adds up {k} of its cells, and the interval is that of a sum of "
               f"{k} independent noises" if k > 1 else ": its cells, selected"))


def answer_of(rows: list, sources: list, note: str, noise: dict, plan, describe) -> dict:
    """A derived answer: the fresh plan's description, zero cost, the released noise laws
    per aggregate (noise[alias] = (entries, half-width or None)), `derived_from`."""
    answer = {"rows": rows, **describe(plan)}
    answer["cost"] = amount_json(spend_amount(plan.measure, 0))
    for info in answer["aggregates"]:
        entries, width = noise[info["alias"]]
        info["spend"] = answer["cost"]
        info["noise"] = entries
        if width is not None:
            info["expected_halfwidth"] = width
    answer["derived_from"] = sources
    answer["notes"] = answer["notes"] + [
        note + ". Values estimate the held queries' contribution-bounded values. Send "
        "\"derive\": false to pay for a fresh answer instead."]
    return answer
