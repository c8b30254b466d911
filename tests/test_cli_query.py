"""`dpquery query` and `dpquery serve --config`: local mode, batches, previews, repeats."""
from __future__ import annotations

import io

import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from budget import Amount, Ledger
from dpquery import client as dpclient
from dpquery.cli import main
from dpquery.cli.remote import split_statements
from dpquery.http.app import create_app
from settings_helpers import ROOT

COUNT = "SELECT age_band, COUNT(*) AS n FROM purchases GROUP BY age_band"
BATCH = """-- the customer's count (an apostrophe in a comment must not split)
SELECT age_band, COUNT(*) AS n FROM purchases GROUP BY age_band;
/* a block; comment */
SELECT region, PURCHASE_RATE(category = 'snacks') AS rate FROM purchases GROUP BY region;
"""


@pytest.fixture
def config(tmp_path, demo_data):
    text = (ROOT / "config.toml").read_text()
    assert 'path = "var/demo/purchases"' in text
    path = tmp_path / "config.toml"
    path.write_text(text.replace('path = "var/demo/purchases"', f'path = "{demo_data}"'))
    return path


@pytest.fixture
def batch_file(tmp_path):
    path = tmp_path / "batch.sql"
    path.write_text(BATCH)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_statements_are_split_by_sqlglot():
    text = "-- don't split here; or here\nSELECT 'a;b' AS x FROM t; SELECT 2 -- it's\n;"
    assert split_statements(text) == ["SELECT 'a;b' AS x FROM t", "SELECT 2"]
    assert split_statements(BATCH)[0].startswith("SELECT age_band")
    assert split_statements("-- only a comment\n") == []


def test_local_batch_dry_run_gives_each_spend_and_the_exact_total(config, batch_file):
    result = run("query", "--config", config, "--local", "--file", batch_file,
                 "--epsilon", "0.1", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("  1. ε=0.1  SELECT age_band") and lines[1].startswith("  2. ε=0.1")
    assert lines[2] == "total: ε=0.2 for 2 statement(s); nothing was charged (dry run)"


def test_preview_shows_expected_accuracy(config):
    result = run("query", "--config", config, "--local", COUNT, "--epsilon", "0.5", "--preview",
                 "--weight", "n=3")
    assert result.exit_code == 0, result.output
    assert "expected accuracy at 95%:" in result.stdout
    assert "  n: ±" in result.stdout and "spend ε=0.5" in result.stdout


def test_bounds_auto_is_sent_and_reported(config):
    result = run("query", "--config", config, "--local", COUNT, "--epsilon", "0.5",
                 "--bounds", "auto", "--format", "json")
    assert result.exit_code == 0, result.output
    assert '"auto_bounds"' in result.stdout and '"rows_per_customer"' in result.stdout


def test_local_batch_csv_is_one_table_with_a_query_column(config, batch_file, tmp_path):
    result = run("query", "--config", config, "--local", "--file", batch_file,
                 "--epsilon", "0.1", "--format", "csv")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns[:2]) == ["query", "age_band"]
    assert sorted(frame["query"].unique()) == [1, 2] and "rate_ci_high" in frame.columns
    out = tmp_path / "answers.parquet"
    result = run("query", "--config", config, "--local", "--file", batch_file,
                 "--epsilon", "0.1", "--format", "parquet", "--out", out)
    assert result.exit_code == 0, result.output
    parquet = pd.read_parquet(out)
    assert parquet["query"].dtype == "int64" and parquet["n"].dtype == "Int64"
    assert parquet["rate"].dtype == "float64" and len(parquet) == len(frame)


@pytest.fixture
def remote(settings, monkeypatch):
    """(url, key): `dpquery query --url` answered by the app through Flask's test client."""
    from tests.api.test_client import FlaskAdapter
    ledger = Ledger(settings.ledger_path)
    pid, key = ledger.create_partner("IFA", {"purchases": Amount(epsilon=3)}, actor="t",
                                     reason="test")
    app = create_app({"TESTING": True, "SETTINGS": settings, "LEDGER": ledger,
                      "TIME_QUANTUM_SECONDS": 0})
    real = requests.Session

    def session():
        s = real()
        s.mount("http://dpquery.test", FlaskAdapter(app))
        return s
    monkeypatch.setattr(dpclient.requests, "Session", session)
    yield "http://dpquery.test", key
    ledger.close()


def test_a_free_repeat_says_so(remote):
    url, key = remote
    first = run("query", COUNT, "--epsilon", "0.2", "--url", url, "--key", key)
    assert first.exit_code == 0, first.output
    assert "charged: ε=0.2;" in first.stdout and "remaining: ε=2.8" in first.stdout
    again = run("query", COUNT, "--epsilon", "0.2", "--url", url, "--key", key)
    assert "charged: 0 (repeat" in again.stdout and "ε=0.2;" not in again.stdout


def test_no_progress_label_when_stderr_is_not_a_terminal(remote, batch_file):
    url, key = remote
    result = run("query", "--file", batch_file, "--epsilon", "0.1", "--url", url, "--key", key)
    assert result.exit_code == 0, result.output
    assert "queries" not in result.stderr and result.stdout.startswith("-- 1. SELECT age_band")


def test_a_refused_statement_names_its_place(remote, tmp_path):
    url, key = remote
    path = tmp_path / "b.sql"
    path.write_text(f"{COUNT};\nSELECT nonsense FROM purchases;")
    result = run("query", "--file", path, "--epsilon", "0.1", "--url", url, "--key", key)
    assert result.exit_code == 1 and "statement 2 of 2 refused: invalid_query" in result.output


def test_serve_takes_config_after_the_command(config, monkeypatch):
    seen = {}
    import dpquery.http.server as server
    monkeypatch.setattr(server, "run_server", lambda settings, **kw: seen.update(s=settings))
    result = run("serve", "--config", config, "--port", "9")
    assert result.exit_code == 0, result.output
    assert str(seen["s"].datasets["purchases"].path).startswith(str(config.parent.parent))


def test_at_most_refuses_a_costlier_accuracy_target(config):
    """--within with --at-most: a statement whose least spend is above it is refused, free."""
    rate = "SELECT region, PURCHASE_RATE(category = 'snacks') AS rate FROM purchases GROUP BY region"
    roomy = run("query", "--config", config, "--local", rate, "--within", "0.05", "--dry-run")
    assert roomy.exit_code == 0, roomy.output
    tight = run("query", "--config", config, "--local", rate, "--within", "0.05",
                "--at-most", "0.001", "--dry-run")
    assert tight.exit_code != 0 and "your at_most 0.001" in tight.output
    alone = run("query", "--config", config, "--local", COUNT, "--at-most", "0.5")
    assert alone.exit_code != 0 and "give --within too" in alone.output
