"""`dpquery query`: one statement or a batch file, against a service or locally.

    dpquery query "SELECT region, COUNT(*) AS n FROM purchases GROUP BY region" --epsilon 0.5
    dpquery query "SELECT ..." --epsilon 0.5 --preview          # spend and expected accuracy
    dpquery query --file batch.sql --epsilon 0.2 --dry-run      # spend of each, total; free
    dpquery query --file batch.sql --epsilon 0.2 --format csv --out answers.csv
    dpquery query --file batch.sql --epsilon 0.2 --format parquet --out answers.parquet

URL and key also come from DPQUERY_URL and DPQUERY_KEY; `--local` runs on the
configured data directly (data owner use: no ledger). A batch file holds SQL
statements separated by ';' (split by sqlglot's tokenizer, so ';' or an
apostrophe inside a string or a comment does not split). A batch stops at the
first refused statement; the answers received so far are still written.
"""
from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import click

from dpquery.cli.output import preview_text, render, render_batch, short
from dpquery.present import amount_text


class Remote:
    """Statements answered by a dpquery service (charged on the partner's budget)."""

    def __init__(self, url: str | None, key: str | None):
        if not url:
            raise click.UsageError("give the service URL with --url or DPQUERY_URL "
                                   "(or use --local to query the configured data directly)")
        if not key:
            raise click.UsageError("give your API key with --key or DPQUERY_KEY")
        from dpquery.client import Client
        self.client = Client(url, key)

    def answer(self, body: dict) -> dict:
        return self.client.run(body)

    def preview(self, body: dict) -> dict:
        return self.client.preview_body(body)


def run_statements(runner, statements: list[str], base: dict, *, dry_run: bool, preview: bool,
                   fmt: str, out: Path | None, batch: bool) -> None:
    """Preview, dry-run or answer each statement, and show the result."""
    if dry_run or (preview and batch):
        _dry_run(runner, statements, base, fmt)
    elif preview:
        answer = _call(lambda: runner.preview({**base, "sql": statements[0]}), 1, 1)
        click.echo(json.dumps(answer, indent=2) if fmt == "json" else preview_text(answer))
    else:
        _run(runner, statements, base, fmt, out, batch)


def _dry_run(runner, statements: list[str], base: dict, fmt: str) -> None:
    """Each statement's spend and the total; nothing is charged."""
    total = {"epsilon": Fraction(0), "delta": Fraction(0), "rho": Fraction(0)}
    previews = []
    for i, statement in enumerate(statements, 1):
        answer = _call(lambda: runner.preview({**base, "sql": statement}), i, len(statements))
        previews.append(answer)
        for measure in total:
            total[measure] += Fraction(answer["cost"].get(measure, "0"))
        if fmt != "json":
            click.echo(f"{i:>3}. {amount_text(answer['cost'])}  {short(statement)}")
    if fmt == "json":
        exact = {**{k: str(v) for k, v in total.items()}, "text": amount_text(total)}
        click.echo(json.dumps({"statements": previews, "total": exact}, indent=2))
    else:
        click.echo(f"total: {amount_text(total)} for {len(statements)} statement(s); "
                   "nothing was charged (dry run)")


def _run(runner, statements: list[str], base: dict, fmt: str, out: Path | None,
         batch: bool) -> None:
    answers = []
    show = batch and sys.stderr.isatty()
    try:
        with click.progressbar(statements, label="queries", file=sys.stderr,
                               hidden=not show) as bar:
            for i, statement in enumerate(bar, 1):
                answers.append(_call(lambda: runner.answer({**base, "sql": statement}),
                                     i, len(statements)))
    finally:
        if answers:
            text = render_batch(answers, fmt, out, statements=statements) if batch \
                else render(answers[0], fmt, out)
            if text is not None:
                click.echo(text, err=out is not None)


def _call(func, i: int, n: int):
    from dpquery.client import DPQueryClientError
    from dpquery.errors import DPQueryError
    try:
        return func()
    except (DPQueryClientError, DPQueryError) as exc:
        where = "query" if n <= 1 else f"statement {i} of {n}"
        raise click.ClickException(f"{where} refused: {exc.code}: {exc.message}") from None


def split_statements(text: str) -> list[str]:
    """SQL statements separated by ';', split by sqlglot's tokenizer.

    A ';' or an apostrophe inside a string literal or a comment does not split;
    comments before or after a statement are dropped.
    """
    from sqlglot.errors import TokenError
    from sqlglot.tokens import Tokenizer, TokenType
    try:
        tokens = Tokenizer().tokenize(text)
    except TokenError as exc:
        raise click.UsageError(f"the batch file cannot be split into statements: {exc}") from None
    statements, current = [], []
    for token in tokens + [None]:
        if token is None or token.token_type == TokenType.SEMICOLON:
            if current:
                statements.append(text[current[0].start:current[-1].end + 1])
            current = []
        else:
            current.append(token)
    return statements
