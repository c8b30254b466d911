"""`dpquery` command: serve, demo-data, query, admin."""
from __future__ import annotations

from pathlib import Path

import click

from dpquery import config as config_mod
from dpquery.cli.output import render
from dpquery.errors import ConfigError, DPQueryError

DEFAULT_CONFIG = "config.toml"


class Obj:
    """What sub-commands share: the settings, loaded lazily from --config."""

    def __init__(self, path: str):
        self.path = path
        self._settings = None

    @property
    def settings(self):
        if self._settings is None:
            try:
                self._settings = config_mod.load(self.path)
            except ConfigError as exc:
                raise click.ClickException(f"configuration error: {exc}") from None
        return self._settings

    @property
    def ledger_path(self) -> Path:
        path = self.settings.ledger_path
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def dataset_names(self) -> list[str]:
        return self.settings.dataset_names


@click.group()
@click.option("--config", "config_path", default=DEFAULT_CONFIG, envvar="DPQUERY_CONFIG",
              show_default=True, help="configuration file (env DPQUERY_CONFIG)")
@click.pass_context
def main(ctx: click.Context, config_path: str) -> None:
    """dpquery: differentially private aggregate queries with a privacy-budget ledger."""
    ctx.obj = Obj(config_path)


@main.command("demo-data")
@click.option("--customers", type=click.IntRange(min=1), default=20000, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=7, show_default=True)
def demo_data(customers: int, out: Path, seed: int) -> None:
    """Write the deterministic ShopSense demo data (folder of Parquet files)."""
    from dpquery.demo import write_demo
    summary = write_demo(out, customers, seed)
    click.echo(f"wrote {summary.rows:,} rows for {summary.customers:,} customers "
               f"in {summary.files} file(s) to {out}")


@main.command("query")
@click.argument("sql", required=False)
@click.option("--local", "local", is_flag=True, help="run on the configured data directly "
              "(data owner use: no ledger, no partner)")
@click.option("--epsilon", type=float, help="privacy spend")
@click.option("--rho", type=float, help="privacy spend on zCDP datasets")
@click.option("--within", type=float, help="accuracy target instead of a spend: half-width")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--preview", is_flag=True, help="show spend and expected accuracy only")
@click.option("--bounding-report", is_flag=True,
              help="also estimate the share of customers the row bound cuts (10%% of the spend)")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "parquet"]),
              default="table", show_default=True)
@click.option("--url", envvar="DPQUERY_URL", help="service URL (env DPQUERY_URL)")
@click.option("--key", envvar="DPQUERY_KEY", help="API key (env DPQUERY_KEY)")
@click.option("--file", "batch", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a batch file of SQL statements separated by ';'")
@click.option("--dry-run", is_flag=True, help="with --file: total spend, nothing charged")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="write the result to this file (needed for parquet)")
@click.pass_context
def query(ctx, sql, local, epsilon, rho, within, confidence, preview, bounding_report, fmt,
          url, key, batch, dry_run, out):
    """Run SQL locally (--local) or against a dpquery service (--url, --key)."""
    body = _body(sql, epsilon, rho, within, confidence)
    if bounding_report:
        body["bounding_report"] = True
    if local:
        if sql is None:
            raise click.UsageError("give the SQL text as an argument")
        answer = _run_local(ctx.obj.settings, body, preview)
        _emit(answer, fmt, out)
        return
    from dpquery.cli.remote import run_remote
    run_remote(url=url, key=key, sql=sql, body=body, batch=batch, dry_run=dry_run,
               preview=preview, fmt=fmt, out=out)


def _body(sql, epsilon, rho, within, confidence) -> dict:
    body: dict = {"confidence": confidence}
    if sql is not None:
        body["sql"] = sql
    if within is not None:
        body["accuracy"] = {"within": within, "confidence": confidence}
    for name, value in (("epsilon", epsilon), ("rho", rho)):
        if value is not None:
            body[name] = value
    return body


def _run_local(settings, body: dict, preview: bool) -> dict:
    """Data-owner use: plan and release directly, with no ledger involved."""
    from dpquery.engine import catalog, plan as planner
    from dpquery.engine.request import parse_body
    from dpquery.service import describe_plan, release_answer
    try:
        tables = {n: catalog.open_table(ds, settings.prepared_dir, settings.engine)
                  for n, ds in settings.datasets.items()}
        request = parse_body(body, max_sql_chars=settings.server["max_sql_chars"])
        plan = planner.build(request, catalog.check_query(request.query, tables))
        return describe_plan(plan) if preview else release_answer(plan)
    except (DPQueryError, FileNotFoundError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from None


def _emit(answer: dict, fmt: str, out: Path | None) -> None:
    text = render(answer, fmt, out)
    if text is not None:
        click.echo(text)


@main.command("serve")
@click.option("--host", default=None, help="bind address (default from config)")
@click.option("--port", type=int, default=None, help="port (default from config)")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="gunicorn workers (default from config)")
@click.option("--demo", is_flag=True, help="write demo data for the demo dataset if it has "
              "none ([demo] dataset, under the ledger's folder; `make run` does this)")
@click.pass_context
def serve(ctx, host, port, workers, demo) -> None:
    """Run the HTTP service under gunicorn (first start makes demo keys; --demo, demo data)."""
    from dpquery.http.server import run_server
    try:
        run_server(ctx.obj.settings, host=host, port=port, workers=workers, demo=demo)
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def _register_admin() -> None:
    from dpquery.cli.admin import admin
    main.add_command(admin)


_register_admin()

