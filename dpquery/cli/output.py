"""How the CLI shows answers and previews: a table, JSON, CSV or Parquet.

A batch is one document: one CSV (or Parquet file) whose first column `query`
numbers the statements (1, 2, ...), so `pandas.read_csv` reads it whole.
Numbers and amounts are shown by `dpquery.present`, as in the web console.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from dpquery.present import amount_text, number, share


def render(answer: dict, fmt: str, out: Path | None = None) -> str | None:
    """An answer as a table, JSON, CSV, or a Parquet file written to `out`."""
    if fmt == "table" and "rows" in answer:
        return _write(_table(answer), out)
    return render_batch([answer], fmt, out, numbered=False)


def render_batch(answers: list[dict], fmt: str, out: Path | None = None,
                 numbered: bool = True, statements: list[str] | None = None) -> str | None:
    """Several answers as one document (a `query` column numbers them)."""
    if fmt == "json":
        return _write(json.dumps(answers if numbered else answers[0], indent=2), out)
    if fmt == "table":
        blocks = [f"-- {i}. {short(s)}\n{_table(a)}" if statements else _table(a)
                  for i, (a, s) in enumerate(zip(answers, statements or answers), 1)]
        return _write("\n\n".join(blocks), out)
    frame = _frame(answers, numbered)
    if fmt == "parquet":
        if out is None:
            raise click.UsageError("--format parquet needs --out FILE")
        frame.to_parquet(out, index=False)
        return f"wrote {len(frame)} rows to {out}"
    return _write(frame.to_csv(index=False).rstrip("\n"), out)


def _frame(answers: list[dict], numbered: bool):
    from dpquery.client import batch_frame, to_frame
    if numbered:
        return batch_frame(answers)
    return to_frame(answers[0])


def _write(text: str, out: Path | None) -> str | None:
    if out is None:
        return text
    out.write_text(text + "\n")
    return f"wrote {out}"


def preview_text(preview: dict) -> str:
    """A preview for reading: the spend, and each aggregate's expected accuracy."""
    lines = [f"spend: {amount_text(preview['cost'])} (nothing charged: a preview)",
             f"expected accuracy at {preview['confidence']:.0%}:"]
    for agg in preview["aggregates"]:
        lines.append(f"  {agg['alias']}: {_accuracy(agg)}; spend {amount_text(agg['spend'])}")
    return "\n".join(lines)


def _accuracy(agg: dict) -> str:
    width = agg.get("expected_halfwidth")
    if agg["kind"] == "quantile":
        return "chosen among the configured candidates (no interval)"
    if width is None:
        return "unknown"
    text = f"±{number(width)}"
    size = agg.get("expected_halfwidth_for_group_size")
    return text + (f" for groups of {number(size)}" if size else "")


def spend_line(answer: dict) -> str:
    """`charged: ε=0.5` for a fresh answer, `charged: 0 (repeat)` for a free repeat."""
    if answer.get("repeat"):
        return "charged: 0 (repeat: the stored answer, nothing was charged)"
    return f"charged: {amount_text(answer.get('charged') or answer['cost'])}"


def _table(answer: dict) -> str:
    cols, rows = answer["columns"], answer["rows"]
    cells = [[number(r.get(c)) if r.get(c) is not None else "" for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    lines = [line(cols), line(["-" * w for w in widths]), *map(line, cells), "",
             f"{spend_line(answer)}; intervals at {answer['confidence']:.0%}"]
    if "remaining" in answer:
        remaining = answer["remaining"]
        lines.append(f"remaining: {amount_text(remaining)}" + _limit(remaining))
    if answer.get("bounding"):
        b = answer["bounding"]
        lines.append(f"customers cut by the {b['rows_per_customer']}-row bound: "
                     f"{share(b['share_of_customers_truncated'])} "
                     f"({share(b['ci_low'])} to {share(b['ci_high'])})")
    return "\n".join(lines)


def _limit(remaining: dict) -> str:
    parts = []
    if remaining.get("limit") == "global":
        parts.append("bound by the global cap all partners share")
    if "queries_like_this" in remaining:
        parts.append(f"about {remaining['queries_like_this']} more queries like this one")
    return f" ({'; '.join(parts)})" if parts else ""


def short(statement: str, width: int = 70) -> str:
    """A statement on one line, cut to `width` characters."""
    text = " ".join(statement.split())
    return text if len(text) <= width else text[:width - 3] + "..."
