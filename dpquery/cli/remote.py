"""`dpquery query SQL --url URL --key KEY`: queries against a running service.

    dpquery query "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region" --epsilon 0.5
    dpquery query --file batch.sql --epsilon 0.2 --dry-run     # spend of each, total; free
    dpquery query --file batch.sql --epsilon 0.2 --format csv --out answers.csv

URL and key also come from DPQUERY_URL and DPQUERY_KEY. A batch file holds SQL
statements separated by ';'. A batch stops at the first refused statement
(the answers received so far are still written).
"""
from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import click

from dpquery.cli.output import render
from dpquery.client import Client, DPQueryClientError


def run_remote(url, key, sql, body: dict, batch: Path | None, dry_run: bool, preview: bool,
               fmt: str, out: Path | None) -> None:
    if not url:
        raise click.UsageError("give the service URL with --url or DPQUERY_URL "
                               "(or use --local to query the configured data directly)")
    if not key:
        raise click.UsageError("give your API key with --key or DPQUERY_KEY")
    if (sql is None) == (batch is None):
        raise click.UsageError("give either the SQL text as an argument or --file batch.sql")
    client = Client(url, key)
    base = {k: v for k, v in body.items() if k != "sql"}
    statements = split_statements(batch.read_text()) if batch else [sql]
    if not statements:
        raise click.UsageError(f"{batch} holds no SQL statements")
    if dry_run or preview:
        _dry_run(client, statements, base, fmt)
    else:
        _run(client, statements, base, fmt, out, show_progress=batch is not None)


def _dry_run(client: Client, statements: list[str], base: dict, fmt: str) -> None:
    """Each statement's spend and the total; nothing is charged."""
    total: dict[str, Fraction] = {}
    previews = []
    for i, statement in enumerate(statements, 1):
        answer = _call(lambda: client.preview_body({**base, "sql": statement}), i, statement,
                       len(statements))
        previews.append(answer)
        for measure, value in answer["cost"].items():
            total[measure] = total.get(measure, Fraction(0)) + Fraction(repr(value))
        if fmt != "json":
            click.echo(f"{i:>3}. {_spend(answer['cost'])}  {_short(statement)}")
    if fmt == "json":
        click.echo(json.dumps({"statements": previews, "total": _plain(total)}, indent=2))
    else:
        click.echo(f"total: {_spend(_plain(total))} for {len(statements)} statement(s); "
                   "nothing was charged (dry run)")


def _run(client: Client, statements: list[str], base: dict, fmt: str, out: Path | None,
         show_progress: bool) -> None:
    answers = []
    try:
        with click.progressbar(statements, label="queries", file=sys.stderr,
                               hidden=not show_progress) as bar:
            for i, statement in enumerate(bar, 1):
                answers.append(_call(lambda: client.run({**base, "sql": statement}),
                                     i, statement, len(statements)))
    finally:
        _emit(answers, statements, fmt, out)


def _emit(answers: list[dict], statements: list[str], fmt: str, out: Path | None) -> None:
    if fmt == "json" and len(statements) > 1:
        text = json.dumps(answers, indent=2)
        if out is None:
            click.echo(text)
        else:
            out.write_text(text + "\n")
            click.echo(f"wrote {len(answers)} answers to {out}", err=True)
        return
    for i, answer in enumerate(answers, 1):
        target = out if out is None or len(statements) == 1 else _numbered(out, i)
        if len(statements) > 1 and out is None and fmt == "table":
            click.echo(f"-- {i}. {_short(statements[i - 1])}")
        text = render(answer, fmt, target)
        if text is not None:
            click.echo(text, err=target is not None)


def _call(func, i: int, statement: str, n: int = 0):
    try:
        return func()
    except DPQueryClientError as exc:
        where = "query" if n <= 1 else f"statement {i} of {n}"
        raise click.ClickException(f"{where} refused: {exc.code}: {exc.message}") from None


def split_statements(text: str) -> list[str]:
    """SQL statements separated by ';' (a ';' inside '...' does not split); '--' comments dropped."""
    statements, current, quoted = [], [], False
    for line in text.splitlines():
        if not quoted and line.lstrip().startswith("--"):
            continue
        for ch in line + "\n":
            if ch == "'":
                quoted = not quoted
            if ch == ";" and not quoted:
                statements.append("".join(current))
                current = []
            else:
                current.append(ch)
    statements.append("".join(current))
    return [" ".join(s.split()) for s in statements if s.strip()]


def _numbered(out: Path, i: int) -> Path:
    return out.with_name(f"{out.stem}-{i}{out.suffix}")


def _plain(total: dict[str, Fraction]) -> dict[str, float]:
    return {k: float(v) for k, v in total.items()}


def _spend(cost: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in cost.items())


def _short(statement: str, width: int = 70) -> str:
    return statement if len(statement) <= width else statement[:width - 3] + "..."
