"""A lost or swapped ledger is never silently replaced (issue 13, item 3), on both backends."""
import shutil
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from budget import (
    Amount, Ledger, LedgerMismatch, LedgerMissing, LedgerUnavailable,
)
from budget.identity import init_ledger, open_ledger, recorded_id
from dpquery.cli.admin import admin
from pg_helpers import raw_execute


def _tables(location: str) -> list:
    if location.startswith("postgresql://"):
        return raw_execute(location, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return raw_execute(location, "SELECT name FROM sqlite_master") if Path(location).exists() else []


def test_a_missing_ledger_is_an_error_and_nothing_is_created(location, tmp_path):
    with pytest.raises(LedgerMissing, match="dpquery admin init"):
        open_ledger(location, tmp_path / "ledger-id")
    with pytest.raises(LedgerMissing):
        Ledger(location, create=False)
    assert _tables(location) == []  # no file, no schema: nothing was initialised
    assert recorded_id(tmp_path / "ledger-id") is None


def test_init_records_the_id_and_open_checks_it(location, tmp_path):
    ident = tmp_path / "var" / "ledger-id"
    ledger, created = init_ledger(location, ident)
    assert created and recorded_id(ident) == ledger.ledger_id
    ledger.close()
    again, created = init_ledger(location, ident)  # idempotent: the same ledger
    assert not created and again.ledger_id == recorded_id(ident)
    again.close()
    with open_ledger(location, ident) as opened:
        assert opened.ledger_id == recorded_id(ident)


def test_another_ledger_in_its_place_is_refused(location, tmp_path):
    ident = tmp_path / "ledger-id"
    init_ledger(location, ident)[0].close()
    other = tmp_path / "other.db"
    Ledger(other).close()
    with pytest.raises(LedgerMismatch, match="not the ledger this installation used"):
        open_ledger(other, ident)


def test_a_lost_ledger_cannot_be_recreated_by_init(tmp_path):
    ident, path = tmp_path / "ledger-id", tmp_path / "ledger.db"
    ledger, _ = init_ledger(path, ident)
    ledger.create_partner("ifa", {"purchases": Amount(epsilon=1)}, actor="t")
    ledger.close()
    shutil.move(path, tmp_path / "moved.db")
    with pytest.raises(LedgerMissing, match=f"this installation's ledger {recorded_id(ident)}"):
        open_ledger(path, ident)
    with pytest.raises(LedgerMismatch, match="start a new, empty ledger on purpose"):
        init_ledger(path, ident)
    assert not path.exists()


def test_a_sqlite_ledger_moved_away_while_in_use_fails_requests(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    pid, _ = ledger.create_partner("ifa", {"purchases": Amount(epsilon=1)}, actor="t")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            shutil.move(f"{path}{suffix}", tmp_path / f"moved.db{suffix}")
    with pytest.raises(LedgerUnavailable, match="moved, replaced or deleted"):
        ledger.reserve(pid, "purchases", Amount(epsilon=0.5), "r1", "q")
    with pytest.raises(LedgerUnavailable):
        ledger.list_partners()
    ledger.close()
    assert not path.exists()
    with Ledger(tmp_path / "moved.db", create=False) as moved:
        assert moved.reservations() == []  # the refused charge went nowhere


def test_a_postgresql_ledger_emptied_while_in_use_fails_requests(pg_cluster):
    url = pg_cluster.create_database()
    ledger = Ledger(url)
    pid, _ = ledger.create_partner("ifa", {"purchases": Amount(epsilon=1)}, actor="t")
    pg_cluster.drop_database(url)  # also ends the ledger's connections
    raw_execute(pg_cluster.url(), f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
    with pytest.raises(LedgerUnavailable, match="no longer holds ledger"):
        ledger.reserve(pid, "purchases", Amount(epsilon=0.5), "r1", "q")
    assert _tables(url) == []  # the empty database was not initialised
    ledger.close()
    pg_cluster.drop_database(url)


def _cli(settings, *args):
    obj = types.SimpleNamespace(settings=settings, dataset_names=["purchases"])
    return CliRunner().invoke(admin, list(args), obj=obj)


def test_admin_commands_refuse_a_missing_ledger(location, tmp_path):
    url = location if location.startswith("postgresql://") else None
    settings = types.SimpleNamespace(ledger_path=Path(url and tmp_path / "l.db" or location),
                                     ledger_url=url)
    result = _cli(settings, "partner", "list")
    assert result.exit_code == 1 and "no ledger at" in result.stderr
    assert "Traceback" not in result.output and _tables(location) == []
    assert _cli(settings, "init").exit_code == 0
    assert _cli(settings, "partner", "list").exit_code == 0
    assert (tmp_path / "ledger-id").read_text().strip()
