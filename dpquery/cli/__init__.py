"""`dpquery` command: serve, demo-data, query, admin."""
from __future__ import annotations

from pathlib import Path

import click

from dpquery import config as config_mod
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


def _config_after(ctx: click.Context, _param, value: str | None) -> None:
    """`dpquery serve --config x` works as well as `dpquery --config x serve`."""
    if value is not None:
        ctx.find_object(Obj).path = value


config_option = click.option("--config", "config_after", default=None, expose_value=False,
                             callback=_config_after, is_eager=True,
                             help="configuration file (also accepted before the command)")


@main.command("query")
@click.argument("sql", required=False)
@click.option("--local", "local", is_flag=True, help="run on the configured data directly "
              "(data owner use: no ledger, no partner)")
@click.option("--epsilon", help="privacy spend, e.g. 0.5 (exact decimal)")
@click.option("--rho", help="privacy spend on zCDP datasets")
@click.option("--within", type=float, help="accuracy target instead of a spend: half-width")
@click.option("--at-most", "at_most", type=float,
              help="with --within: the most one query may spend; costlier ones are refused")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--weight", "weights", multiple=True, metavar="ALIAS=N",
              help="give aggregate ALIAS N times the default share of the spend (repeatable)")
@click.option("--preview", is_flag=True, help="show spend and expected accuracy only (free)")
@click.option("--bounding-report", is_flag=True,
              help="also estimate the share of customers the row bound cuts (10%% of the spend)")
@click.option("--bounds", type=click.Choice(["auto"]),
              help="auto: choose the rows-per-customer bound for this query from a private "
                   "histogram (datasets with bounds.auto = true; README: Bounds chosen per query)")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "parquet"]),
              default="table", show_default=True)
@click.option("--url", envvar="DPQUERY_URL", help="service URL (env DPQUERY_URL)")
@click.option("--key", envvar="DPQUERY_KEY", help="API key (env DPQUERY_KEY)")
@click.option("--file", "batch", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a batch file of SQL statements separated by ';'")
@click.option("--dry-run", is_flag=True, help="spend of each statement and the total; free")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="write the result to this file (needed for parquet)")
@config_option
@click.pass_context
def query(ctx, sql, local, epsilon, rho, within, at_most, confidence, weights, preview,
          bounding_report, bounds, fmt, url, key, batch, dry_run, out):
    """Run SQL against a dpquery service (--url, --key) or locally (--local).

    A batch (--file) gives one document: one CSV or Parquet file with a
    `query` column numbering the statements, or a JSON list.
    """
    from dpquery.cli.remote import Remote, run_statements, split_statements
    if (sql is None) == (batch is None):
        raise click.UsageError("give either the SQL text as an argument or --file batch.sql")
    statements = split_statements(batch.read_text()) if batch else [sql]
    if not statements:
        raise click.UsageError(f"{batch} holds no SQL statements")
    if at_most is not None and within is None:
        raise click.UsageError("--at-most caps the spend of an accuracy target: give --within too")
    base = _body(epsilon, rho, within, confidence, weights, at_most)
    if bounding_report:
        base["bounding_report"] = True
    if bounds:
        base["bounds"] = bounds
    runner = _Local(ctx.obj.settings) if local else Remote(url, key)
    run_statements(runner, statements, base, dry_run=dry_run, preview=preview, fmt=fmt,
                   out=out, batch=batch is not None)


def _body(epsilon, rho, within, confidence, weights, at_most=None) -> dict:
    body: dict = {"confidence": confidence}
    if within is not None:
        body["accuracy"] = {"within": within, "confidence": confidence}
        if at_most is not None:
            body["accuracy"]["at_most"] = at_most
    for name, value in (("epsilon", epsilon), ("rho", rho)):
        if value is not None:
            body[name] = value  # decimal text: the service charges it exactly
    if weights:
        body["weights"] = dict(_weight(w) for w in weights)
    return body


def _weight(text: str) -> tuple[str, int]:
    alias, _, n = text.partition("=")
    if not alias or not n.isdigit():
        raise click.BadParameter(f"{text!r}: use ALIAS=N, e.g. --weight n=2",
                                 param_hint="--weight")
    return alias, int(n)


class _Local:
    """Data-owner use: plan and release on the configured data, with no ledger involved."""

    def __init__(self, settings):
        from dpquery.engine import catalog
        self.settings = settings
        try:
            self.tables = {n: catalog.open_table(ds, settings.prepared_dir, settings.engine)
                           for n, ds in settings.datasets.items()}
        except (DPQueryError, FileNotFoundError) as exc:
            raise click.ClickException(getattr(exc, "message", str(exc))) from None

    def _plan(self, body: dict):
        from dpquery.engine import catalog, plan as planner
        from dpquery.engine.request import parse_body
        request = parse_body(body, max_sql_chars=self.settings.server["max_sql_chars"],
                             datasets=self.settings.datasets)
        return planner.build(request, catalog.check_query(request.query, self.tables))

    def answer(self, body: dict) -> dict:
        from dpquery.service import release_answer
        return release_answer(self._plan(body))

    def preview(self, body: dict) -> dict:
        from dpquery.service import describe_plan
        return describe_plan(self._plan(body))


@main.command("prepare")
@config_option
@click.pass_context
def prepare(ctx) -> None:
    """Bound every dataset once for its current data version (serve does this first)."""
    from dpquery.engine import catalog
    settings = ctx.obj.settings
    try:
        for name, ds in settings.datasets.items():
            table = catalog.open_table(ds, settings.prepared_dir, settings.engine)
            click.echo(f"{name}: data version {table.version}, {len(table.files)} prepared parts")
    except (ConfigError, FileNotFoundError) as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


@main.command("serve")
@click.option("--host", default=None, help="bind address (default from config)")
@click.option("--port", type=int, default=None, help="port (default from config)")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="gunicorn workers (default from config)")
@click.option("--demo", is_flag=True, help="write demo data for the demo dataset if it has "
              "none ([demo] dataset, under the ledger's folder; `make run` does this)")
@config_option
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

