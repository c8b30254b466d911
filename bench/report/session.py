"""Budget efficiency: a scripted analyst session, accounted per system.

No data is read and no noise is drawn here: this is accounting.
bench/bench_session.py runs the same session on the real service instead
(Service.run, the ledger, derived answers) and counts what it answers.

* The session (``make_session``) is a seeded sequence of SQL queries an
  analyst might send: new queries, exact repeats of a recent query, the last
  query with one more filter, and the last query grouped wider or narrower.
  Each query carries the same accuracy target for its aggregate kind
  (``TARGETS``: 95% half-width; ratios for groups of an assumed size).
* dpquery: each query is sent as ``{"sql": ..., "accuracy": {...}}``; its
  spend is what ``Service.preview`` says (the least ε meeting the target, or
  refused when even the per-query cap cannot meet it).  An exact repeat of an
  already answered query costs 0: the service returns the stored answer.
* Peers: the analyst picks, per aggregate kind, the ε that meets the same
  target under that peer's own bounds and Laplace noise (the least such ε,
  which favours the peers: a real user would round up), and pays it again on
  every repeat (no answer cache in the library).  The same per-query cap as
  dpquery's applies (a query needing more is not asked).
"""
from __future__ import annotations

import math
import random

ALPHA = 0.05
AGGS = {
    "count": "COUNT(*)",
    "customers": "COUNT(DISTINCT customer_id)",
    "sum": "SUM(amount)",
    "rate": "PURCHASE_RATE(category = 'snacks')",
    "avg": "AVG(amount)",
}
# 95% half-width targets, the same for every system
TARGETS = {
    "count": {"within": 5000},
    "customers": {"within": 50},
    "sum": {"within": 50000},
    "rate": {"within": 0.03},                                   # groups of >= 1,000 customers
    "avg": {"within": 2.0, "assumed_group_size": 100_000},      # groups of >= 100,000 purchases
}
GROUPS = ["region", "age_band", "year"]
FILTERS = {
    "category": ["produce", "dairy", "snacks", "frozen", "health_food", "beverages"],
    "year": [2019, 2020, 2021, 2022, 2023, 2024],
    "age_band": ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"],
    "region": ["Washtenaw", "Wayne", "Oakland", "Macomb"],
}


def sql_of(q: dict) -> str:
    by = list(q["by"])
    sel = ", ".join(by + [AGGS[q["agg"]]])
    where = " AND ".join(f"{c} = {v!r}" if isinstance(v, str) else f"{c} = {v}"
                         for c, v in q["where"])
    text = f"SELECT {sel} FROM purchases"
    if where:
        text += f" WHERE {where}"
    if by:
        text += f" GROUP BY {', '.join(by)}"
    return text


def _new(rng: random.Random) -> dict:
    agg = rng.choice(list(AGGS))
    by = tuple(g for g in GROUPS if rng.random() < 0.45) or ("region",)
    where = ()
    if rng.random() < 0.5:
        col = rng.choice([c for c in FILTERS if c not in by and not (agg == "rate" and c == "category")])
        where = ((col, rng.choice(FILTERS[col])),)
    return {"agg": agg, "by": by, "where": where, "step": "new"}


def make_session(n: int = 240, seed: int = 6) -> list[dict]:
    """Seeded analyst session: {"agg", "by", "where", "step", "sql"} per query."""
    rng = random.Random(seed)
    out = [_new(rng)]
    while len(out) < n:
        last = out[-1]
        r = rng.random()
        q = None
        if r < 0.25:            # ask a recent query again, word for word
            q = dict(rng.choice(out[-8:]), step="repeat")
        elif r < 0.50:          # one more filter
            used = {c for c, _ in last["where"]} | set(last["by"])
            cols = [c for c in FILTERS if c not in used and not (last["agg"] == "rate" and c == "category")]
            if cols:
                col = rng.choice(cols)
                q = dict(last, where=last["where"] + ((col, rng.choice(FILTERS[col])),), step="refine")
        elif r < 0.65 and len(last["by"]) > 1:  # wider grouping
            drop = rng.choice(last["by"])
            q = dict(last, by=tuple(g for g in last["by"] if g != drop), step="wider")
        elif r < 0.80:          # narrower grouping
            cols = [g for g in GROUPS if g not in last["by"] and g not in {c for c, _ in last["where"]}]
            if cols:
                q = dict(last, by=tuple(g for g in GROUPS if g in last["by"] or g == rng.choice(cols)),
                         step="narrower")
        if q is None:
            q = _new(rng)
        out.append(q)
    for q in out:
        q["sql"] = sql_of(q)
    return out


# -- peers: analytic Laplace accounting under each peer's own bounds -------------

R, UPPER, MIDPOINT_MAG = 200, 100.0, 50.0


def peer_sensitivity(peer: str, agg: str, grouped: bool) -> tuple[float, float | None, float]:
    """(numerator or value sensitivity, denominator sensitivity, magnitude M) for a peer.

    Customer counts use G = 1 group per customer (SmartNoise max_ids=1, Tumult
    MaxRowsPerID(1)/MaxGroupsPerID(.,1)); OpenDP Context accounts G = 1 as 2
    groups when grouped (opendp 0.16 truncate_num_groups, see bench/peers/README.md).
    Tumult's average sums deviations from the midpoint of [0, 100], so its
    numerator sensitivity and magnitude are halved.
    """
    g = 2.0 if (peer == "opendp_context" and grouped) else 1.0
    if agg == "count":
        return R, None, 0.0
    if agg == "sum":
        return R * UPPER, None, 0.0
    if agg == "customers":
        return g, None, 0.0
    if agg == "rate":
        return g, g, 1.0
    if agg == "avg":
        if peer == "tmlt_analytics":
            return R * UPPER / 2, R, MIDPOINT_MAG
        return R * UPPER, R, UPPER
    raise ValueError(agg)


def peer_halfwidth(peer: str, agg: str, grouped: bool, eps: float) -> float:
    """95% half-width under Laplace noise; ratios: numerator and denominator at ε/2
    each, each bound at α/2, for groups of the target's assumed size (same
    formula as dpquery.engine.accuracy_plan.expected_halfwidth)."""
    d_num, d_den, mag = peer_sensitivity(peer, agg, grouped)
    if d_den is None:
        return d_num / eps * math.log(1 / ALPHA)
    size = TARGETS[agg].get("assumed_group_size", 1000)
    num = d_num / (eps / 2) * math.log(2 / ALPHA)
    den = d_den / (eps / 2) * math.log(2 / ALPHA)
    return math.inf if size <= den else (num + mag * den) / (size - den)


def peer_epsilon(peer: str, agg: str, grouped: bool) -> float:
    """Least ε (3 significant digits, rounded up) meeting the target."""
    target = TARGETS[agg]["within"]
    lo, hi = 1e-6, 1e6
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if peer_halfwidth(peer, agg, grouped, mid) <= target:
            hi = mid
        else:
            lo = mid
    digits = 2 - math.floor(math.log10(hi))
    return math.ceil(hi * 10 ** digits) / 10 ** digits


def answered(entries: list[tuple[str | None, float | None]], budget: float) -> int:
    """Queries answered in order within `budget`.

    entries: (cache key or None, cost).  cost None = refused, never charged; a
    query that does not fit the remaining budget is refused and the session
    goes on.  With a cache key, a query whose key was already *answered* is
    answered again for free (dpquery's stored answers); peers pass None.
    """
    left, n, done = budget, 0, set()
    for key, c in entries:
        if key is not None and key in done:
            n += 1
            continue
        if c is None or c > left + 1e-12:
            continue
        left -= c
        n += 1
        if key is not None:
            done.add(key)
    return n
