"""Answer a query from answers the same partner already holds (issue 15 item 4).

A query is answered for free, marked `"derived_from": [query ids]`, when it
is a post-processing of one answer this partner already paid for on the same
data version:

- a coarser grouping of a released table: COUNT(*) or SUM by region from a
  released COUNT(*) or SUM by region x age_band adds the noisy cells up; the
  interval is that of a sum of independent noises of the released law
  (intervals.sum_halfwidth);
- a filter to released keys: `WHERE age_band = '25-34'` (or `IN (...)`) on a
  column the released table is grouped by and the new query is not, added to
  the released query's WHERE; with one released cell per new cell every
  aggregate kind is copied (ratios only at the same confidence).

Privacy: only the partner's own stored answers (the ledger, by partner id)
and public configuration are read, never the data and never another
partner's answers, so the derived answer is post-processing of what this
partner holds and costs nothing. Whether a query is derived depends only on
the queries the partner asked and on public noise scales, not on released
values. It is recorded in the ledger as a zero-cost reservation whose
stored answer carries `derived_from`.

A query is derived only when its answer is at least as accurate as a fresh
one at the requested spend (derived half-width <= the fresh plan's, or the
released noise scales no larger than the fresh ones); otherwise it is
answered fresh and charged. A mere rephrasing of a released query (same
cells, e.g. another alias) is derived only when strictly more accurate (a
smaller spend than the one held): otherwise it stays a new, charged query. `"derive": false` in the body always asks for a
fresh answer (the first time: a repeat returns whatever was stored).

The derived values estimate the released query's contribution-bounded
values (its rows and groups per customer), which may differ slightly from
those of a fresh query with another grouping or filter.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from dpquery.engine import intervals, plan as planner
from dpquery.engine.query import canonical
from dpquery.errors import InvalidRequest
from dpquery.present import amount_json, spend_amount

ADDITIVE = ("count", "sum")


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
    rephrased: bool = False  # the same cells (no filter, no coarser grouping)


def find(ledger, partner_id: str, request, table, plan, describe) -> dict | None:
    """A derived answer from this partner's stored answers, or None (answer fresh)."""
    want = json.loads(canonical(request))["query"]
    suffix = f"|{table.version}"
    for r in ledger.reservations(partner_id, table.name):
        if r.status != "COMMITTED" or not r.query_text.endswith(suffix):
            continue
        stored = json.loads(r.query_text[: -len(suffix)])
        match = _match(want, stored["query"], table, r.id)
        if match is None:
            continue
        text = ledger.get_answer(partner_id, r.request_id)
        answer = json.loads(text) if text else None
        if not answer or "derived_from" in answer:
            continue
        derived = _derive(answer, stored["confidence"], match, request, plan, describe)
        if derived is not None:
            return derived
    return None


def _match(want: dict, have: dict, table, source_id: int) -> Match | None:
    """How `want` reads from the released `have`, or None when it cannot."""
    plain = all(not q.get(k) for q in (want, have) for k in ("order_by", "limit", "select", "having"))
    columns = table.dataset.columns
    if not plain or want["dataset"] != have["dataset"] or \
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
                 not filters and not dropped)


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


def _derive(answer: dict, confidence: float, match: Match, request, plan, describe) -> dict | None:
    rows = [r for r in answer["rows"] if all(r[c] in v for c, v in match.filters.items())]
    cells: dict[tuple, list] = {}
    for r in rows:
        cells.setdefault(tuple(r[c] for c in match.by), []).append(r)
    ks = {len(v) for v in cells.values()}
    if len(ks) != 1:
        return None
    k = ks.pop()
    noise = {a["alias"]: a["noise"] for a in answer["aggregates"]}
    fresh = {sp.stat.column: sp for sp in plan.stats}
    out_rows = [{c: key[i] for i, c in enumerate(match.by)} for key in cells]
    widths = {}
    for alias, src, kind in match.aggregates:
        laws = _laws(noise[src], fresh, alias)
        if kind in ADDITIVE and (k > 1 or confidence != request.confidence):
            width = intervals.sum_halfwidth(laws["value"], k, request.confidence)
            if not _better(width, planner.expected_halfwidth(plan, alias), match.rephrased):
                return None
            single = intervals.sum_halfwidth(laws["value"], 1, confidence)
            for row, group in zip(out_rows, cells.values()):
                row.update(_summed(alias, src, group, width, single, _non_negative(plan, kind, alias)))
        elif k == 1 and confidence == request.confidence and \
                _no_noisier(laws, fresh, alias, match.rephrased):
            width = None
            for row, (cell,) in zip(out_rows, cells.values()):
                row.update({alias: cell[src], f"{alias}_ci_low": cell[f"{src}_ci_low"],
                            f"{alias}_ci_high": cell[f"{src}_ci_high"]})
        else:
            return None
        widths[alias] = width
    return _answer(out_rows, match, k, noise, widths, plan, describe)


def _laws(entries: list, fresh: dict, alias: str) -> dict:
    """The released statistics' noise laws by role (units from the fresh plan's statistics)."""
    laws = {}
    for e in entries:
        column = alias if e["statistic"] == "value" else f"{alias}.{e['statistic']}"
        unit = fresh[column].stat.unit
        laws[e["statistic"]] = intervals.Noise(
            "Gaussian" in e["mechanism"], e["scale"] * (1 + 1e-5),  # shown to 6 digits: round up
            unit if e["mechanism"].startswith("Integer") else None)
    return laws


def _better(derived: float, fresh: float, strictly: bool) -> bool:
    """A rephrasing of the same cells (e.g. a new alias) is derived only when strictly
    more accurate: as before, a merely rephrased query is a new query, charged."""
    return derived < fresh * (1 - 1e-4) if strictly else derived <= fresh


def _no_noisier(laws: dict, fresh: dict, alias: str, strictly: bool) -> bool:
    """Every released part has the fresh plan's law family and a scale no larger."""
    for role, law in laws.items():
        sp = fresh[alias if role == "value" else f"{alias}.{role}"]
        if law.gaussian != ("Gaussian" in sp.distribution) or \
                not _better(law.scale, sp.scale * (1 + 1e-5), strictly):
            return False
    return True


def _summed(alias: str, src: str, group: list, width: float, single: float,
            non_negative: bool) -> dict:
    """Σ of released cells ± the sum's half-width. A cell shown as 0 was clipped
    after the noise: its released value is read back from its interval; one whose
    whole interval was clipped (drawn below −half-width) leaves the low end at 0."""
    total, censored = 0.0, False
    for cell in group:
        value, high = cell[src], cell[f"{src}_ci_high"]
        if not non_negative or value > 0:
            total += value
        elif high > 0:
            total += high - single
        else:
            total, censored = total - single, True
    low, high = total - width, total + width
    if non_negative:
        total, low, high = max(total, 0.0), 0.0 if censored else max(low, 0.0), max(high, 0.0)
    return {alias: total, f"{alias}_ci_low": low, f"{alias}_ci_high": high}


def _non_negative(plan, kind: str, alias: str) -> bool:
    if kind == "count":
        return True
    agg = next(a for a in plan.request.query.aggregates if a.alias == alias)
    return plan.table.column(agg.column).lower >= 0


def _answer(rows: list, match: Match, k: int, noise: dict, widths: dict, plan, describe) -> dict:
    answer = {"rows": rows, **describe(plan)}
    answer["cost"] = amount_json(spend_amount(plan.measure, 0))
    by_alias = {src: alias for alias, src, _kind in match.aggregates}
    for info in answer["aggregates"]:
        src = next(s for s, a in by_alias.items() if a == info["alias"])
        info["spend"] = answer["cost"]
        info["noise"] = noise[src]
        if widths.get(info["alias"]) is not None:
            info["expected_halfwidth"] = widths[info["alias"]]
    answer["derived_from"] = [match.source_id]
    answer["notes"] = answer["notes"] + [
        f"Derived at no cost from query {match.source_id}, which this partner already holds"
        + (f": each value adds up {k} of its cells, and the interval is that of a sum of "
           f"{k} independent noises" if k > 1 else ": its cells, selected") +
        ". Values estimate that query's contribution-bounded values. Send \"derive\": false "
        "to pay for a fresh answer instead."]
    return answer
