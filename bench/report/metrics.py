"""Error of released answers against exact answers, and the error the noise scale predicts.

Predicted mean absolute error (MAE) per group:
  * a Laplace(b) noise has E|X| = b; a discrete Laplace of scale b (OpenDP's
    "Integer Laplace", Tumult's geometric) has E|X| = 2t / (1 - t^2) with
    t = exp(-1/b) (within 1% of b for b >= 5);
  * a ratio (mean, purchase rate) N/D released as (N + X) / (D + Y) has, to
    first order, error X/D - (N/D) Y/D: the sum of two independent Laplace
    variables of scales a = b_X / D and c = |N/D| b_Y / D, whose mean absolute
    value is (a^2 + a c + c^2) / (a + c).  (Tumult's average subtracts the
    midpoint 50 first, so there N/D is replaced by N/D - 50.)
"""
from __future__ import annotations

import math
import statistics


def discrete_laplace_mae(b: float) -> float:
    t = math.exp(-1.0 / b)
    return 2 * t / (1 - t * t)


def laplace_mae(b: float, discrete: bool = False) -> float:
    return discrete_laplace_mae(b) if discrete and b > 0 else b


def sum_of_laplace_mae(a: float, c: float) -> float:
    return 0.0 if a + c == 0 else (a * a + a * c + c * c) / (a + c)


def keyed(rows: list[dict], keys: list[str], field: str = "value") -> dict:
    return {tuple(r[k] for k in keys): r.get(field) for r in rows}


def errors(results: list[list[dict]], truth: dict, keys: list[str]) -> dict:
    """MAE, mean relative error and counts over reps x groups (None answers skipped)."""
    abs_e, rel_e, missing = [], [], 0
    for rows in results:
        for r in rows:
            k = tuple(r[c] for c in keys)
            v, t = r.get("value"), truth.get(k)
            if v is None or t is None or (isinstance(v, float) and math.isnan(v)):
                missing += 1
                continue
            e = abs(v - t)
            abs_e.append(e)
            if t != 0:
                rel_e.append(e / abs(t))
    return {"mae": statistics.fmean(abs_e) if abs_e else None,
            "rel": statistics.fmean(rel_e) if rel_e else None,
            "draws": len(abs_e), "missing": missing}


# -- the noise scales each system reports -----------------------------------------

def scales(system: str, query: str, info) -> dict | None:
    """{"value": (b, discrete)} or {"num": ..., "den": ...} from a runner's scale_or_accuracy."""
    try:
        if system == "dpquery":
            return {sp["statistic"]: (sp["scale"], "Integer" in sp["mechanism"]) for sp in info}
        if system == "opendp_context":
            def one(rows):
                return [(r["scale"], "Integer" in r["distribution"]) for r in rows]
            if query == "Q5":
                return {"num": one(info["numerator"])[0], "den": one(info["denominator"])[0]}
            rows = one(info)
            if query == "Q3":
                # dp.mean: a sum and a length; the sum has the larger scale
                rows = sorted(rows, reverse=True)
                return {"num": rows[0], "den": rows[1]}
            return {"value": rows[0]}
        if system == "tmlt_analytics":
            def one(rows):
                out = []
                for r in rows:
                    mech = str(r.get("noise_mechanism", r.get("mechanism", "")))
                    out.append((float(r["noise_parameter"]), "GEOMETRIC" in mech.upper()))
                return out
            if query == "Q5":
                return {"num": one(info["numerator"])[0], "den": one(info["denominator"])[0]}
            rows = one(info)
            if query == "Q3":
                # average: a sum of deviations and a count; the sum has the larger scale
                rows = sorted(rows, reverse=True)
                return {"num": rows[0], "den": rows[1]}
            return {"value": rows[0]}
        if system == "smartnoise_sql":
            def b_of(acc):  # Laplace: 95% accuracy = b ln(1/0.05)
                return acc / math.log(20)
            if query == "Q5":
                return {"num": (b_of(info["numerator"]["accuracy_95_per_column"][-1]), False),
                        "den": (b_of(info["denominator"]["accuracy_95_per_column"][-1]), False)}
            if query == "Q3":
                return None  # SmartNoise reports no accuracy for the parts of AVG
            return {"value": (b_of(info["accuracy_95_per_column"][-1]), False)}
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None


def predicted_mae(system: str, query: str, sc: dict | None, bounded_rows: list[dict],
                  keys: list[str], counts: dict | None = None) -> float | None:
    """Mean over groups of the predicted MAE (ratios need the bounded N and D per group).

    counts: for Q3, the bounded row count per group (D); Q5 rows carry
    numerator/denominator."""
    if not sc:
        return None
    if "value" in sc:
        b, disc = sc["value"]
        return laplace_mae(b, disc)
    (bn, _dn), (bd, _dd) = sc["num"], sc["den"]
    out = []
    for r in bounded_rows:
        k = tuple(r[c] for c in keys)
        ratio = r.get("value")
        den = r.get("denominator") if query == "Q5" else (counts or {}).get(k)
        if ratio is None or not den:
            continue
        mag = abs(ratio - 50.0) if (system == "tmlt_analytics" and query == "Q3") else abs(ratio)
        out.append(sum_of_laplace_mae(bn / den, mag * bd / den))
    return statistics.fmean(out) if out else None
