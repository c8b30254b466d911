"""Chart geometry for the templates: numbers in, percentages and points out.

Charts are drawn as inline SVG by macros in templates/_charts.html. Bar charts
use percentage coordinates (one small SVG per row) and the time chart draws
its lines in a stretched SVG with HTML labels around it, so text stays at its
normal size on a phone instead of shrinking with the picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction

from dpquery.web import fmt

MAX_BARS = 60
PALETTE = ["#0b5fa5", "#b34700", "#007a55", "#a8327a", "#6a4c93", "#5b6770", "#111111"]


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if step * m >= raw)
    start = math.floor(low / step) * step
    return [start + i * step for i in range(int(math.ceil((high - start) / step)) + 1)]


def _pct(value: float, low: float, high: float) -> float:
    return round(100 * (value - low) / (high - low), 3)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    low: float
    high: float
    start: float  # percentages of the plot width
    end: float
    err_low: float
    err_high: float
    point: float

    @property
    def text(self) -> str:
        return fmt.number(self.value)

    @property
    def description(self) -> str:
        return (f"{self.label}: {fmt.number(self.value)} (interval {fmt.number(self.low)} "
                f"to {fmt.number(self.high)})")


def bar_chart(answer: dict, alias: str) -> dict:
    """Horizontal bars with error bars for one aggregate of an answer."""
    rows = answer.get("rows", [])
    shown = [r for r in rows if _finite(r.get(alias))][:MAX_BARS]
    values = [v for r in shown for v in (r[alias], _or(r, f"{alias}_ci_low", r[alias]),
                                         _or(r, f"{alias}_ci_high", r[alias]))]
    ticks = nice_ticks(min([0.0, *values]), max([0.0, *values]) or 1.0)
    low, high = ticks[0], ticks[-1]
    zero = _pct(0.0, low, high)
    bars = [_bar(r, alias, answer.get("group_by", []), low, high, zero) for r in shown]
    return {"alias": alias, "bars": bars, "total": len(rows), "zero": zero,
            "ticks": [{"at": _pct(t, low, high), "text": fmt.compact(t)} for t in ticks]}


def _bar(row: dict, alias: str, group_by: list, low: float, high: float, zero: float) -> Bar:
    value = row[alias]
    lo, hi = _or(row, f"{alias}_ci_low", value), _or(row, f"{alias}_ci_high", value)
    point = _pct(value, low, high)
    label = " · ".join(str(row.get(g)) for g in group_by) or "all rows"
    return Bar(label, value, lo, hi, min(zero, point), max(zero, point),
               _pct(lo, low, high), _pct(hi, low, high), point)


def _or(row: dict, key: str, default: float) -> float:
    value = row.get(key)
    return value if _finite(value) else default


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- gauge ---------------------------------------------------------------------------

def gauge(remaining_share: float) -> dict:
    """A half-circle gauge: the arc path for the remaining share (0..1)."""
    share = max(0.0, min(1.0, remaining_share))
    angle = math.pi * (1 - share)
    x, y = 50 + 40 * math.cos(angle), 50 - 40 * math.sin(angle)
    return {"share": share, "percent": round(100 * share),
            "arc": f"M 10 50 A 40 40 0 0 1 {x:.2f} {y:.2f}" if share > 0 else "",
            "level": "low" if share < 0.2 else ("mid" if share < 0.5 else "ok")}


# -- privacy spent over time ---------------------------------------------------------------

def spend_over_time(reservations, dataset: str, measure: str, cap=None,
                    now: datetime | None = None) -> dict:
    """Cumulative spend per partner on one dataset, as step lines (charged rows only)."""
    name = fmt.component(measure)
    rows = [r for r in reservations if r.dataset == dataset and r.charged]
    now = now or datetime.now(timezone.utc)
    times = [_time(r.created_at) for r in rows]
    start = min(times, default=now)
    end = max([now, *times])
    if (end - start).total_seconds() < 60:
        start = start.replace(second=0, microsecond=0)
    series = _series(rows, name)
    cap_value = float(cap.components()[name]) if cap is not None else None
    top = max([float(s["total"]) for s in series] + [cap_value or 0.0]) or 1.0
    ticks = nice_ticks(0.0, top, 4)
    return {"dataset": dataset, "symbol": fmt.SYMBOLS[name], "series": [
        _line(s, i, start, end, ticks[-1], now) for i, s in enumerate(series)],
        "cap": None if cap_value is None else {"y": _y(cap_value, ticks[-1]),
                                               "text": fmt.amount_number(cap.components()[name])},
        "yticks": [{"at": _y(t, ticks[-1]), "text": fmt.compact(t)} for t in ticks],
        "xticks": [{"at": 0, "text": fmt.when(start.isoformat())},
                   {"at": 100, "text": fmt.when(end.isoformat())}],
        "empty": not rows}


def _series(rows, name: str) -> list[dict]:
    by_partner: dict[str, list] = {}
    for r in rows:
        by_partner.setdefault(r.partner_id, []).append(r)
    series = []
    for partner_id, items in sorted(by_partner.items()):
        total, points = Fraction(0), []
        for r in sorted(items, key=lambda r: r.created_at):
            total += r.amount.components()[name]  # exact: the ledger's own arithmetic
            points.append((_time(r.created_at), float(total)))
        series.append({"partner_id": partner_id, "points": points, "total": total})
    return series


def _line(series: dict, index: int, start: datetime, end: datetime, top: float,
          now: datetime) -> dict:
    span = max((end - start).total_seconds(), 1.0)
    xs = lambda t: round(1000 * (t - start).total_seconds() / span, 1)  # noqa: E731
    level, points = 0.0, [(0.0, 1000.0)]
    for moment, total in series["points"]:
        points += [(xs(moment), _y(level, top) * 10), (xs(moment), _y(total, top) * 10)]
        level = total
    points.append((1000.0, _y(level, top) * 10))
    return {"partner_id": series["partner_id"], "color": PALETTE[index % len(PALETTE)],
            "dash": "" if index < len(PALETTE) else "6 4",
            "points": " ".join(f"{x},{y}" for x, y in points),
            "total": fmt.amount_number(series["total"])}


def _y(value: float, top: float) -> float:
    """Percent from the top of the plot."""
    return round(100 * (1 - value / top), 3)


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
