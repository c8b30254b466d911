"""The `dpquery admin` command group, through click's CliRunner."""

import json
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from budget import Amount, Ledger
from dpquery.cli.admin import admin


@pytest.fixture
def run(tmp_path, location, request):
    """`dpquery admin ...` on an initialised ledger of either backend."""
    url = location if location.startswith("postgresql://") else None
    settings = types.SimpleNamespace(ledger_path=tmp_path / "var" / "l.db" if url else Path(location),
                                     ledger_url=url)
    obj = types.SimpleNamespace(settings=settings, dataset_names=["purchases"])

    def invoke(*args: str):
        return CliRunner().invoke(admin, list(args), obj=obj)

    def ledger():
        opened = Ledger(location, create=False)
        request.addfinalizer(opened.close)
        return opened
    invoke.ledger, invoke.location, invoke.settings = ledger, location, settings
    result = invoke("init")
    assert result.exit_code == 0 and "created ledger" in result.stdout, result.output
    return invoke


def create(run, name="IFA", *extra):
    result = run("partner", "create", name, "--epsilon", "1.0", *extra)
    assert result.exit_code == 0, result.output + result.stderr
    key = result.stdout.split("api key: ")[1].strip()
    return result.stdout.split()[2], key, result


def test_create_prints_the_key_once_with_a_warning(run):
    pid, key, result = create(run, "IFA", "--per-query-cap", "0.5", "--purpose", "pricing")
    assert pid == "ifa" and key.startswith("dpq_")
    assert "shown only once" in result.stderr
    principal = run.ledger().authenticate(key)
    assert principal.partner.per_query_cap == Amount(epsilon=0.5)
    assert principal.partner.purposes == ("pricing",)
    shown = run("partner", "show", "ifa")
    assert key not in shown.stdout and "budget ε=1;" in shown.stdout


def test_list_set_budget_suspend_resume(run):
    create(run)
    assert run("partner", "list").stdout == "ifa\tactive\tIFA\n"
    result = run("partner", "set-budget", "ifa", "--epsilon", "2.5", "--reason", "renewal")
    assert result.exit_code == 0 and "budget ε=2.5," in result.stdout
    assert run.ledger().remaining("ifa", "purchases") == Amount(epsilon=2.5)
    assert run("partner", "suspend", "ifa", "--reason", "audit").exit_code == 0
    assert run.ledger().get_partner("ifa").status == "suspended"
    assert run("partner", "resume", "ifa").exit_code == 0
    assert run.ledger().get_partner("ifa").status == "active"


def test_rotate_and_revoke_keys(run):
    _, first, _ = create(run)
    rotated = run("partner", "rotate-key", "ifa")
    second = rotated.stdout.split("api key: ")[1].strip()
    ledger = run.ledger()
    key_id = ledger.authenticate(first).key_id
    assert run("partner", "revoke-key", key_id).exit_code == 0
    assert ledger.authenticate(first) is None and ledger.authenticate(second) is not None


def test_global_cap_and_admin_key(run):
    result = run("global-cap", "--dataset", "purchases", "--epsilon", "10", "--reason", "collusion")
    assert result.exit_code == 0, result.stderr
    assert "global cap on purchases: ε=10 " in result.stdout
    key = run("create-admin-key").stdout.split("admin key: ")[1].strip()
    assert run.ledger().authenticate(key).role == "admin"


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_ledger_listing(run, fmt):
    create(run)
    ledger = run.ledger()
    ledger.commit(ledger.reserve("ifa", "purchases", Amount(epsilon=0.1), "r1", "SELECT 1").id)
    result = run("ledger", "--partner", "ifa", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    if fmt == "json":
        outcomes = [row["outcome"] for row in json.loads(result.stdout)]
        assert outcomes[-2:] == ["reserved", "committed"]
        assert json.loads(result.stdout)[-1]["amount"]["epsilon"] == "1/10"
    else:
        assert "committed" in result.stdout and "ε=0.1" in result.stdout
    later = run("ledger", "--since", "2999-01-01", "--format", "json")
    assert json.loads(later.stdout) == []


@pytest.mark.parametrize("args,message", [
    (["partner", "show", "nobody"], "unknown partner 'nobody'"),
    (["partner", "create", "X", "--epsilon", "-1"], "non-negative decimal number"),
    (["partner", "create", "X", "--epsilon", "nan"], "decimal number"),
    (["partner", "create", "X", "--epsilon", "1", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["partner", "set-budget", "nobody", "--epsilon", "1", "--reason", "r"], "unknown partner"),
    (["partner", "revoke-key", "abc"], "unknown key id 'abc'"),
    (["ledger", "--since", "yesterday"], "not ISO-8601"),
])
def test_errors_are_one_clear_line_without_traceback(run, args, message):
    result = run(*args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_a_file_that_is_not_a_ledger(tmp_path):
    (tmp_path / "l.db").write_text("not a database " * 100)
    settings = types.SimpleNamespace(ledger_path=tmp_path / "l.db", ledger_url=None)
    result = CliRunner().invoke(admin, ["partner", "list"], obj=types.SimpleNamespace(
        settings=settings, dataset_names=["purchases"]))
    assert result.exit_code == 1 and "cannot be opened" in result.stderr


def test_create_with_a_name_in_use_refuses_and_creates_nothing(run):
    create(run)
    again = run("partner", "create", "ifa", "--epsilon", "1.0")
    assert again.exit_code == 3 and "already exists" in again.output
    assert "partner show ifa" in again.output and "set-budget" in again.output
    assert [p.id for p in run.ledger().list_partners()] == ["ifa"]


def test_a_global_cap_below_what_is_spent_is_refused(run):
    create(run)
    ledger = run.ledger()
    ledger.commit(ledger.reserve("ifa", "purchases", Amount(epsilon=0.5), "r1", "SELECT 1").id)
    low = run("global-cap", "--dataset", "purchases", "--epsilon", "0.25", "--reason", "tighten")
    assert low.exit_code == 1 and "below what all partners already spent" in low.output
    assert ledger.global_position("purchases")[0] is None
    assert run("global-cap", "--dataset", "purchases", "--epsilon", "0.5",
               "--reason", "exactly spent").exit_code == 0
