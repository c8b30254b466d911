"""How the CLI shows an answer: a table, JSON, CSV or Parquet."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click


def render(answer: dict, fmt: str, out: Path | None = None) -> str | None:
    """An answer as a table, JSON, CSV, or a Parquet file written to `out`."""
    rows = answer.get("rows")
    if fmt == "json" or rows is None:
        text = json.dumps(answer, indent=2)
    elif fmt == "csv":
        text = _csv(rows, answer["columns"])
    elif fmt == "parquet":
        if out is None:
            raise click.UsageError("--format parquet needs --out FILE")
        import pandas as pd
        pd.DataFrame(rows, columns=answer["columns"]).to_parquet(out)
        return f"wrote {len(rows)} rows to {out}"
    else:
        text = _table(answer)
    if out is not None:
        out.write_text(text + "\n")
        return f"wrote {out}"
    return text


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().rstrip("\n")


def _table(answer: dict) -> str:
    cols, rows = answer["columns"], answer["rows"]
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    spend = ", ".join(f"{k}={v:g}" for k, v in answer["cost"].items())
    lines = [line(cols), line(["-" * w for w in widths]), *map(line, cells), "",
             f"spend: {spend}; intervals at {answer['confidence']:.0%}"]
    if "remaining" in answer:
        remaining = answer["remaining"]
        lines.append(f"remaining: {remaining.get('text', remaining)}")
    if answer.get("bounding"):
        b = answer["bounding"]
        lines.append(f"customers cut by the {b['rows_per_customer']}-row bound: "
                     f"{_share(b['share_of_customers_truncated'])} "
                     f"({_share(b['ci_low'])} to {_share(b['ci_high'])})")
    return "\n".join(lines)


def _share(value) -> str:
    return "unknown" if value is None else f"{value:.1%}"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return "" if value is None else str(value)
