"""The scripted analyst session (bench/report/session.py) run on the real service.

    python bench/bench_session.py [--budgets 10,20] [--customers 100] [--by-kind] [--log]
    python bench/bench_session.py --budgets 10,20 --write   # BENCHMARKS.md section 3
    python bench/bench_session.py --at-most 1   # every query capped at ε = 1, peers too

Every session query goes through `Service.run` for one partner with an
ε budget, in order: the embedded SQLite ledger charges it, repeats come back
from the store, derived answers (dpquery/derive.py) come back free. The data
is a small demo table (dpquery/demo.py): whether a query is charged, derived
or repeated depends only on the queries and public configuration, never on
the data, so its size does not change the counts. The peers' figures are the
accounting of bench/report/session.py (unchanged). Prints markdown tables;
`--write` replaces the block between the `session:begin` and `session:end`
markers of BENCHMARKS.md with them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import settings_for  # noqa: E402
from bench.report import session as S  # noqa: E402

PEERS = {"opendp_context": "OpenDP Context", "smartnoise_sql": "SmartNoise SQL",
         "tmlt_analytics": "Tumult Analytics"}
BENCHMARKS = ROOT / "BENCHMARKS.md"
MARKERS = ("<!-- session:begin (bench/bench_session.py --write) -->", "<!-- session:end -->")
STEPS = ("new", "repeat", "refine", "wider", "narrower")
OUTCOMES = ("fresh", "repeat", "derived", "refused_budget", "refused_accuracy", "refused_other")


def run_session(budget: float, customers: int, session: list[dict],
                at_most: float | None = None) -> tuple[list, float, int]:
    """([(query, outcome, ε charged)] for each session query, through Service.run;
    the dataset's per-query cap; what the former accounting model answers).
    `at_most`: each target also caps the query's spend (refused above it)."""
    from budget.amounts import Amount
    from budget.ledger import Ledger
    from dpquery.demo import write_demo
    from dpquery.service import Service

    tmp = Path(tempfile.mkdtemp(prefix="dpq-session-"))
    write_demo(tmp / "purchases", customers=customers, seed=11)
    settings = settings_for(tmp / "purchases")
    ledger = Ledger(settings.ledger_path)
    service = Service.open(settings, ledger)
    pid, _key = ledger.create_partner("analyst", {"purchases": Amount(epsilon=Fraction(budget))},
                                      actor="bench", reason="session benchmark")
    accounted = S.answered([_preview_cost(service, q, at_most) for q in session], budget)
    out = [(q, *_ask(service, pid, q, at_most)) for q in session]
    ledger.close()
    return out, settings.datasets["purchases"].max_epsilon_per_query, accounted


def _target(q: dict, at_most: float | None) -> dict:
    return {**S.TARGETS[q["agg"]], **({"at_most": at_most} if at_most else {})}


def _preview_cost(service, q: dict, at_most: float | None = None) -> tuple[str, float | None]:
    """The former model (accounting only): Service.preview's spend, repeats free."""
    from dpquery.errors import DPQueryError
    try:
        preview = service.preview({"sql": q["sql"], "accuracy": _target(q, at_most)})
        return q["sql"], float(Fraction(preview["cost"]["epsilon"]))
    except DPQueryError:
        return q["sql"], None


def _ask(service, pid: str, q: dict, at_most: float | None = None) -> tuple[str, Fraction]:
    from dpquery.errors import AccuracyUnreachable, BudgetExhausted, DPQueryError
    try:
        answer = service.run(pid, {"sql": q["sql"], "accuracy": _target(q, at_most)})
    except BudgetExhausted:
        return "refused_budget", Fraction(0)
    except AccuracyUnreachable:
        return "refused_accuracy", Fraction(0)
    except DPQueryError:
        return "refused_other", Fraction(0)
    charged = Fraction(answer["charged"]["epsilon"])
    if answer.get("repeat"):
        return "repeat", charged
    return ("derived" if answer.get("derived_from") else "fresh"), charged


def peer_counts(session: list[dict], budget: float, cap: float) -> dict[str, int]:
    """Peers: the least ε meeting the target per kind, paid on every ask (session.py)."""
    out = {}
    for p in PEERS:
        costs = []
        for q in session:
            e = S.peer_epsilon(p, q["agg"], bool(q["by"]))
            costs.append((None, e if e <= cap else None))
        out[p] = S.answered(costs, budget)
    return out


def summary_table(results, budget: float, peers: dict[str, int], accounted: int) -> str:
    n = Counter(outcome for _q, outcome, _c in results)
    spent = sum(c for _q, _o, c in results)
    answered = n["fresh"] + n["repeat"] + n["derived"]
    lines = [f"| system | answered within ε = {budget:g} (of {len(results)}) | fresh (charged) "
             "| repeat (free) | derived (free) | refused: budget | refused: accuracy unreachable |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| dpquery (real service) | {answered} | {n['fresh']} | {n['repeat']} | "
             f"{n['derived']} | {n['refused_budget']} | "
             f"{n['refused_accuracy'] + n['refused_other']} |"]
    lines.append(f"| dpquery (former model: preview spend, repeats free) | {accounted} | "
                 "— | — | 0 | — | — |")
    for p, count in peers.items():
        lines.append(f"| {PEERS[p]} | {count} | {count} | 0 | 0 | {len(results) - count} | 0 |")
    lines.append(f"\nε spent by dpquery: {float(spent):.4g} of {budget:g}.")
    return "\n".join(lines)


def kind_table(results) -> str:
    """Outcomes per (step, aggregate kind): which classes are charged or refused."""
    cells = Counter((q["step"], q["agg"], o) for q, o, _c in results)
    keys = sorted({(s, a) for s, a, _o in cells})
    lines = ["| step | kind | " + " | ".join(OUTCOMES) + " |",
             "|---|---|" + "---:|" * len(OUTCOMES)]
    for s, a in keys:
        lines.append(f"| {s} | {a} | " + " | ".join(str(cells[(s, a, o)]) for o in OUTCOMES) + " |")
    return "\n".join(lines)


def step_table(results) -> str:
    """Per session step: how its queries were answered."""
    cells = Counter((q["step"], o) for q, o, _c in results)
    lines = ["| step | queries | fresh | repeat | derived | refused: budget | refused: accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in STEPS:
        n = sum(v for (step, _o), v in cells.items() if step == s)
        lines.append(f"| {s} | {n} | " + " | ".join(
            str(cells[(s, o)]) for o in ("fresh", "repeat", "derived", "refused_budget"))
            + f" | {cells[(s, 'refused_accuracy')] + cells[(s, 'refused_other')]} |")
    return "\n".join(lines)


def block(runs: list, customers: int) -> str:
    """The BENCHMARKS.md text: the command, the model, a table per budget, the steps."""
    out = ["**Measured on the real service** (`python bench/bench_session.py --budgets "
           + ",".join(f"{b:g}" for b, *_ in runs) + " --write`). Every session query goes "
           "through `Service.run` in order for one partner with an ε budget, in the embedded "
           "SQLite ledger, on a demo table of "
           f"{customers} customers (whether a query is charged, repeated or derived depends only "
           "on the queries and public configuration, never on the data). *fresh*: charged and "
           "released; *repeat*: the stored answer of the same canonical query, free; *derived*: "
           "free post-processing of answers the partner holds (`dpquery/derive.py`: a filter to "
           "released keys, coarser groupings and HAVING/ORDER BY/LIMIT of a released table, AVG "
           "from a released SUM and COUNT(*), COUNT(*) and COUNT(DISTINCT) from the released "
           "denominators of an AVG or PURCHASE_RATE), each only when at least as accurate as "
           "asked. The *former model* row is the accounting above run on the same code "
           "(preview spend, repeats free, nothing derived); the peers' rows are that "
           "accounting, unchanged.\n"]
    for budget, results, peers, accounted in runs:
        out += [summary_table(results, budget, peers, accounted), ""]
    budget, results, *_ = runs[0]
    out += [f"How each step of the session was answered at ε = {budget:g}:\n",
            step_table(results), ""]
    return "\n".join(out)


def write(text: str) -> None:
    doc = BENCHMARKS.read_text()
    start, end = doc.index(MARKERS[0]) + len(MARKERS[0]), doc.index(MARKERS[1])
    BENCHMARKS.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="10", help="comma-separated ε budgets, e.g. 10,20")
    ap.add_argument("--customers", type=int, default=100,
                    help="demo data size (about 60 rows each)")
    ap.add_argument("--by-kind", action="store_true", help="also print outcomes per step and kind")
    ap.add_argument("--log", action="store_true", help="print each query's outcome")
    ap.add_argument("--at-most", type=float, default=None,
                    help="every target also caps its query's spend (accuracy at_most); the "
                         "peers skip the same queries (their per-query cap)")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md section 3")
    args = ap.parse_args()
    session = S.make_session()
    runs = []
    for budget in (float(b) for b in args.budgets.split(",")):
        results, cap, accounted = run_session(budget, args.customers, session, args.at_most)
        cap = min(cap, args.at_most or cap)
        runs.append((budget, results, peer_counts(session, budget, cap), accounted))
        if args.log:
            for i, (q, o, c) in enumerate(results):
                print(f"{i:3d} {o:16s} {float(c):<7.4g} {q['step']:8s} {q['sql']}")
        if args.by_kind:
            print(kind_table(results) + "\n")
    text = block(runs, args.customers)
    print(text)
    if args.write:
        write(text)


if __name__ == "__main__":
    main()
