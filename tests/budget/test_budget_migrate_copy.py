"""`dpquery admin ledger migrate` and `dpquery admin ledger copy` (SQLite -> PostgreSQL)."""
import sqlite3
import types
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from budget import Amount, Ledger, LedgerFileError
from budget.copy import copy_ledger, totals
from budget.identity import init_ledger, open_ledger
from budget.store import SCHEMA_VERSION
from budget.store.sqlite import MIGRATIONS
from dpquery.cli.admin import admin
from pg_helpers import raw_execute


def _cli(settings, *args):
    obj = types.SimpleNamespace(settings=settings, dataset_names=["purchases"])
    return CliRunner().invoke(admin, list(args), obj=obj)


def _busy_ledger(location) -> Ledger:
    """A ledger with partners, keys, caps and every reservation state."""
    ledger = Ledger(location)
    a, _ = ledger.create_partner("a", {"purchases": Amount(epsilon=2)}, actor="t")
    b, _ = ledger.create_partner("b", {"purchases": Amount(epsilon=1, delta=Fraction(1, 10**6))},
                                 per_query_cap=Amount(epsilon=0.5, delta=Fraction(1, 10**6)), actor="t")
    ledger.set_global_cap("purchases", Amount(epsilon=10, delta=Fraction(1, 10**5)), "t", "cap")
    ledger.commit(ledger.reserve(a, "purchases", Amount(epsilon=0.1), "r1", "q1").id, '{"x": 1}')
    ledger.reserve(a, "purchases", Amount(epsilon=Fraction(1, 3)), "r2", "q2")
    ledger.release(ledger.reserve(b, "purchases", Amount(epsilon=0.2), "r3", "q3").id)
    ledger.reserve(b, "purchases", Amount(epsilon=0.3, delta=Fraction(1, 10**7)), "r4", "q4")
    ledger.suspend(b, "t", "audit")
    return ledger


def test_migrate_an_old_sqlite_ledger_from_the_cli(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    settings = types.SimpleNamespace(ledger_path=path, ledger_url=None)
    result = _cli(settings, "ledger", "migrate")
    assert result.exit_code == 0, result.output
    assert f"migrated from schema version 2 to {SCHEMA_VERSION}" in result.stdout
    again = _cli(settings, "ledger", "migrate")
    assert f"is at schema version {SCHEMA_VERSION} (current)" in again.stdout


def test_migrate_on_postgresql(pg_cluster, tmp_path):
    url = pg_cluster.create_database()
    settings = types.SimpleNamespace(ledger_path=tmp_path / "l.db", ledger_url=url)
    refused = _cli(settings, "ledger", "migrate")  # an empty database is not initialised
    assert refused.exit_code == 1 and "holds no ledger" in refused.stderr
    assert _cli(settings, "init").exit_code == 0
    raw_execute(url, "DROP INDEX reservations_by_query")  # back to version 1's shape...
    raw_execute(url, "DROP TABLE ledger_meta")
    raw_execute(url, "UPDATE ledger_schema SET version = 1")
    (tmp_path / "ledger-id").unlink()  # ...whose ledger had no id yet
    result = _cli(settings, "ledger", "migrate")
    assert result.exit_code == 0, result.output
    assert f"migrated from schema version 1 to {SCHEMA_VERSION}" in result.stdout
    assert raw_execute(url, "SELECT version FROM ledger_schema") == [(SCHEMA_VERSION,)]
    pg_cluster.drop_database(url)


def test_copy_sqlite_into_postgresql_keeps_everything(pg_cluster, tmp_path):
    source, ident = tmp_path / "ledger.db", tmp_path / "ledger-id"
    init_ledger(source, ident)[0].close()
    ledger = _busy_ledger(source)
    before = {"reservations": ledger.reservations(), "audit": ledger.ledger_entries(),
              "partners": ledger.list_partners(), "summary": ledger.budget_summary("a")}
    ledger.close()
    url = pg_cluster.create_database()
    result = _cli(None, "ledger", "copy", "--from", f"sqlite:{source}", "--to", url)
    assert result.exit_code == 0, result.output
    assert "verified" in result.stdout and "reservations" in result.stdout
    with open_ledger(url, ident) as copied:  # same identity: the installation accepts it
        assert copied.reservations() == before["reservations"]
        assert copied.ledger_entries() == before["audit"]
        assert copied.list_partners() == before["partners"]
        assert copied.budget_summary("a") == before["summary"]
        assert copied.integrity_check() == "ok"
        r = copied.reserve("a", "purchases", Amount(epsilon=0.1), "r5", "q5")  # ids continue
        assert r.id == max(x.id for x in before["reservations"]) + 1
        assert copied.find_answer("a", "q1") == '{"x": 1}'
        assert copied.ledger_entries()[-1].seq == before["audit"][-1].seq + 1
    pg_cluster.drop_database(url)


def test_copy_refuses_a_target_that_is_not_empty(pg_cluster, tmp_path):
    source = tmp_path / "ledger.db"
    _busy_ledger(source).close()
    url = pg_cluster.create_database()
    with Ledger(url) as target:
        target.create_partner("someone", actor="t")
    with pytest.raises(LedgerFileError, match="not empty"):
        copy_ledger(source, url)
    with Ledger(url, create=False) as target:
        assert [p.id for p in target.list_partners()] == ["someone"]
    pg_cluster.drop_database(url)


def test_copy_back_from_postgresql_to_sqlite_has_equal_totals(pg_cluster, tmp_path):
    url = pg_cluster.create_database()
    _busy_ledger(url).close()
    expected = copy_ledger(url, tmp_path / "back.db")
    with Ledger(tmp_path / "back.db", create=False) as back, back.store.read() as conn:
        assert totals(conn) == expected
        assert expected.rows["reservations"] == 4
    pg_cluster.drop_database(url)
