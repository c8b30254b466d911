"""`dpquery admin ...`: budget administration on the command line.

The ledger comes from ``ctx.obj.settings`` (``[ledger] path`` or ``url``, set
by the top-level ``dpquery`` group); known dataset names from
``ctx.obj.dataset_names``. Only ``admin init`` creates a ledger; every other
command opens the existing one (see ``dpquery/ledger_access.py``). Errors
print one clear line to stderr and exit with status 1; `partner create` with a
name already in use exits with status 3 (nothing is created).

Reasons: commands that change what a partner may spend or whether it may
query (`set-budget`, `global-cap`, `suspend`) require --reason, kept in the
audit log; the others (`create`, `resume`, `revoke-key`) take an optional
--reason and record a default.
"""

from __future__ import annotations

import csv
import functools
import getpass
import io
import json

import click

from budget import Amount, Ledger, LedgerError, parse_amount_text
from dpquery.present import amount_text
from budget.copy import copy_ledger
from budget.store import SCHEMA_VERSION, describe
from dpquery.ledger_access import init_configured, location, open_configured

ONCE_WARNING = "Store this key now: it is shown only once and cannot be recovered."


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli:unknown"


def _settings(ctx: click.Context):
    """The loaded settings (a test may pass a namespace with ledger_path and ledger_url)."""
    return getattr(ctx.obj, "settings", ctx.obj)


def _ledger(ctx: click.Context) -> Ledger:
    ledger = open_configured(_settings(ctx), retry_seconds=0)
    ctx.call_on_close(ledger.close)
    return ledger


def _dataset(ctx: click.Context, dataset: str | None) -> str:
    names = list(getattr(ctx.obj, "dataset_names", []) or [])
    if dataset is None:
        if len(names) != 1:
            raise click.UsageError(f"choose a dataset with --dataset (one of {', '.join(names)})")
        return names[0]
    if names and dataset not in names:
        raise click.UsageError(f"unknown dataset {dataset!r}; known datasets: {', '.join(names)}")
    return dataset


def _amount(epsilon: str | None, rho: str | None = None, delta: str | None = None) -> Amount:
    parts = {"epsilon": epsilon, "rho": rho, "delta": delta}
    return Amount(**{k: parse_amount_text(v, k) for k, v in parts.items() if v is not None})


def _fmt(amount: Amount | None) -> str:
    return "none" if amount is None else amount_text(amount)


def reports_errors(func):
    """Turn ledger errors into a one-line message on stderr and exit status 1."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LedgerError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


amount_options = [
    click.option("--epsilon", help="epsilon, e.g. 1.0 (exact decimal)"),
    click.option("--rho", help="rho, for zCDP datasets"),
    click.option("--delta", help="delta, e.g. 1e-6"),
]


def with_amount(func):
    for option in reversed(amount_options):
        func = option(func)
    return func


@click.group()
def admin():
    """Manage partners, budgets, keys and read the ledger."""


@admin.group()
def partner():
    """Create and manage partners."""


@partner.command("create")
@click.argument("name")
@with_amount
@click.option("--dataset", help="dataset the budget is for (default: the only one)")
@click.option("--per-query-cap", help="most epsilon one query may cost")
@click.option("--purpose", "purposes", multiple=True, help="declared purpose (repeatable)")
@click.option("--reason", default="created with the admin CLI",
              help="why (optional; kept in the audit log)")
@click.pass_context
@reports_errors
def partner_create(ctx, name, epsilon, rho, delta, dataset, per_query_cap, purposes, reason):
    """Create partner NAME with a budget; prints its first API key once.

    A name already in use is refused (exit status 3): see `partner show` and
    `partner set-budget` to change an existing partner.
    """
    if epsilon is None and rho is None:
        raise click.UsageError("give the budget with --epsilon (or --rho for zCDP)")
    _refuse_existing(_ledger(ctx), name)
    budgets = {_dataset(ctx, dataset): _amount(epsilon, rho, delta)}
    cap = None if per_query_cap is None else _amount(per_query_cap)
    pid, key = _ledger(ctx).create_partner(name, budgets, cap, list(purposes), _actor(), reason)
    click.echo(f"created partner {pid}")
    click.echo(f"api key: {key}")
    click.echo(ONCE_WARNING, err=True)


class PartnerExists(click.ClickException):
    exit_code = 3


def _refuse_existing(ledger: Ledger, name: str) -> None:
    from dpquery.partner_names import existing_partner
    taken = existing_partner(ledger, name)
    if taken is not None:
        raise PartnerExists(f"a partner named {name!r} already exists ({taken}); nothing was "
                            f"created. See it with `dpquery admin partner show {taken}`, change "
                            f"its budget with `dpquery admin partner set-budget {taken} ...`")


@partner.command("list")
@click.pass_context
@reports_errors
def partner_list(ctx):
    """List partners with their status."""
    for p in _ledger(ctx).list_partners():
        click.echo(f"{p.id}\t{p.status}\t{p.name}")


@partner.command("show")
@click.argument("partner_id")
@click.pass_context
@reports_errors
def partner_show(ctx, partner_id):
    """Show a partner: status, budgets, spent, remaining, keys."""
    ledger = _ledger(ctx)
    p = ledger.get_partner(partner_id)
    click.echo(f"partner {p.id} ({p.name}): {p.status}")
    click.echo(f"per-query cap: {_fmt(p.per_query_cap)}; purposes: {', '.join(p.purposes) or '-'}")
    for b in ledger.budget_summary(partner_id):
        click.echo(f"dataset {b.dataset}: budget {_fmt(b.budget)}; spent {_fmt(b.spent)}; "
                   f"remaining {_fmt(b.remaining)}; global cap {_fmt(b.global_cap)} "
                   f"(all partners spent {_fmt(b.global_spent)})")
    for k in ledger.list_keys(partner_id):
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        click.echo(f"key {k.key_id}: created {k.created_at}, {state}")


@partner.command("set-budget")
@click.argument("partner_id")
@with_amount
@click.option("--dataset")
@click.option("--reason", required=True, help="why (kept in the audit log)")
@click.pass_context
@reports_errors
def partner_set_budget(ctx, partner_id, epsilon, rho, delta, dataset, reason):
    """Set (not add to) a partner's total budget on a dataset."""
    if epsilon is None and rho is None:
        raise click.UsageError("give the budget with --epsilon (or --rho for zCDP)")
    b = _ledger(ctx).set_budget(partner_id, _dataset(ctx, dataset), _amount(epsilon, rho, delta),
                                _actor(), reason)
    click.echo(f"{partner_id} on {b.dataset}: budget {_fmt(b.budget)}, spent {_fmt(b.spent)}, "
               f"remaining {_fmt(b.remaining)}")


@partner.command("suspend")
@click.argument("partner_id")
@click.option("--reason", required=True)
@click.pass_context
@reports_errors
def partner_suspend(ctx, partner_id, reason):
    """Suspend a partner: its keys stop working, its queries are refused."""
    _ledger(ctx).suspend(partner_id, _actor(), reason)
    click.echo(f"suspended {partner_id}")


@partner.command("resume")
@click.argument("partner_id")
@click.option("--reason", default="resumed with the admin CLI")
@click.pass_context
@reports_errors
def partner_resume(ctx, partner_id, reason):
    """Resume a suspended partner."""
    _ledger(ctx).resume(partner_id, _actor(), reason)
    click.echo(f"resumed {partner_id}")


@partner.command("rotate-key")
@click.argument("partner_id")
@click.pass_context
@reports_errors
def partner_rotate_key(ctx, partner_id):
    """Issue a new API key; old keys stay valid until revoked."""
    key = _ledger(ctx).rotate_key(partner_id, _actor())
    click.echo(f"api key: {key}")
    click.echo(ONCE_WARNING + " Older keys stay valid until you revoke them.", err=True)


@partner.command("revoke-key")
@click.argument("key_id")
@click.option("--reason", default="revoked with the admin CLI")
@click.pass_context
@reports_errors
def partner_revoke_key(ctx, key_id, reason):
    """Revoke a key by its public key id (see `partner show`)."""
    info = _ledger(ctx).revoke_key(key_id, _actor(), reason)
    click.echo(f"revoked key {info.key_id} at {info.revoked_at}")


@admin.command("global-cap")
@click.option("--dataset", required=True)
@with_amount
@click.option("--reason", required=True)
@click.pass_context
@reports_errors
def global_cap(ctx, dataset, epsilon, rho, delta, reason):
    """Cap what all partners together may spend on a dataset."""
    if epsilon is None and rho is None:
        raise click.UsageError("give the cap with --epsilon (or --rho for zCDP)")
    cap, spent = _ledger(ctx).set_global_cap(_dataset(ctx, dataset),
                                             _amount(epsilon, rho, delta), _actor(), reason)
    click.echo(f"global cap on {dataset}: {_fmt(cap)} (spent so far {_fmt(spent)})")


@admin.command("init")
@click.pass_context
@reports_errors
def init(ctx):
    """Create the configured ledger (SQLite path or PostgreSQL url) and an admin key.

    The only way to make a ledger besides the demo's first `serve --demo`. An
    existing ledger that this installation recorded (or any, when none is
    recorded) is left as it is.
    """
    ledger, created = init_configured(_settings(ctx))
    with ledger:
        where = describe(location(_settings(ctx)))
        if not created:
            click.echo(f"ledger {ledger.ledger_id} at {where} already exists; nothing to do")
            return
        key = ledger.create_admin_key(_actor())
        click.echo(f"created ledger {ledger.ledger_id} at {where}")
    click.echo(f"admin key: {key}")
    click.echo(ONCE_WARNING, err=True)


@admin.group("ledger", invoke_without_command=True)
@click.option("--partner", "partner_id")
@click.option("--since", help="ISO date or time, UTC if no zone (e.g. 2025-01-31)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
@reports_errors
def ledger_listing(ctx, partner_id, since, fmt):
    """Print the audit log: every charge, refusal and admin action.

    Sub-commands: `migrate` (schema migrations), `copy` (SQLite to PostgreSQL).
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = []
    for entry in _ledger(ctx).ledger_entries(partner_id, since):
        row = entry.to_json()
        row["amount"] = row["amount"] if fmt == "json" else _fmt(entry.amount)
        rows.append(row)
    click.echo(_render(rows, fmt), nl=False)


@ledger_listing.command("migrate")
@click.pass_context
@reports_errors
def ledger_migrate(ctx):
    """Apply pending schema migrations to the configured ledger (either backend)."""
    with _ledger(ctx) as ledger:  # opening an older ledger migrates it, under a lock
        before, now = ledger.store.migrated_from, ledger.store.schema_version()
    where = describe(location(_settings(ctx)))
    if before == now:
        click.echo(f"ledger at {where} is at schema version {now} (current); nothing to do")
    else:
        click.echo(f"ledger at {where} migrated from schema version {before} to {now}")


@ledger_listing.command("copy")
@click.option("--from", "source", required=True, metavar="LEDGER",
              help="the ledger to copy: sqlite:PATH (or a path) or postgresql://...")
@click.option("--to", "target", required=True, metavar="LEDGER",
              help="a new, empty ledger: postgresql://... (or sqlite:PATH)")
@reports_errors
def ledger_copy(source, target):
    """Copy a whole ledger (e.g. SQLite into PostgreSQL), verified by totals.

    Stop the service first. The copy keeps every id and the ledger's identity;
    then set `[ledger] url` to the target and start the service again.
    """
    copied = copy_ledger(_location_arg(source), _location_arg(target))
    rows = ", ".join(f"{n} {t}" for t, n in copied.rows.items())
    click.echo(f"copied ledger {copied.ledger_id} to {describe(_location_arg(target))}: {rows}")
    click.echo(f"verified: spent, budgets, global counters and the charged total "
               f"({_fmt(copied.charged)}) are equal in both (schema version {SCHEMA_VERSION})")


def _location_arg(value: str) -> str:
    return value[len("sqlite:"):] if value.startswith("sqlite:") else value


COLUMNS = ["seq", "at", "actor", "partner_id", "dataset", "request_id", "outcome", "amount",
           "reason", "query_text"]


def _render(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    out = io.StringIO()
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    short = COLUMNS[:-1]
    table = [short] + [[str(r[c] if r[c] is not None else "-") for c in short] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(short))]
    return "".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n"
                   for row in table)


@admin.command("create-admin-key")
@click.pass_context
@reports_errors
def create_admin_key(ctx):
    """Issue an administrator API key; printed once."""
    key = _ledger(ctx).create_admin_key(_actor())
    click.echo(f"admin key: {key}")
    click.echo(ONCE_WARNING, err=True)
