"""Every README example, run as written against a real `dpquery serve`.

The examples are read from README.md itself: the `curl` commands run through
bash with the real curl binary, the Python client block runs in this process,
the `dpquery` command lines run through bash. Only the server URL and the keys
are substituted (`$DPQUERY_KEY` and `$DPQUERY_URL` come from the environment,
`key` is a variable in the Python block). Each output is compared with what
README shows next to it: every documented field present with the documented
type, and every documented value that does not come from noise equal to it
(floats to the digits shown). The Errors section's transcripts must print
exactly what README prints, and each code in its table that a request can
provoke is answered with the documented status.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
import requests

from dpquery.client import Client
from server_helpers import Server

from .conftest import ROOT

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()
README_URL = "http://127.0.0.1:8000"
# Examples README shows that cannot run against a test server, and why.
NOT_RUN = {
    "dpquery admin ledger copy": "needs a PostgreSQL host named `db` and a stopped service",
}
# Error codes of README's table that need a fault to happen; tests elsewhere provoke them.
NEEDS_A_FAULT = {
    "rate_limited": "tests/security/test_attacks_on_server.py (a server with a low limit)",
    "query_interrupted": "tests/security/test_attacks_on_server.py (a query past its timeout)",
    "query_timeout": "tests/security/test_attacks_on_server.py (query_timeout_seconds=0.001)",
    "ledger_unavailable": "tests/budget/test_ledger_service.py (a ledger moved away)",
    "internal": "tests/api/test_error_shape.py (a bug raised in a view)",
}


# --- reading README -------------------------------------------------------

def fenced(lang: str) -> list[tuple[int, str]]:
    """(offset, text) of every ```lang block (lang "" for a bare fence)."""
    blocks = re.finditer(r"^```(\w*)\n(.*?)^```$", README, re.S | re.M)
    return [(m.start(), m.group(2)) for m in blocks if m.group(1) == lang]


def command_lines(text: str) -> list[str]:
    """A shell block's commands, backslash continuations joined."""
    return [line.strip() for line in text.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def shell_commands(program: str) -> list[tuple[int, str]]:
    return [(at, line) for at, block in fenced("bash") for line in command_lines(block)
            if line.startswith(program + " ")]


def documented_after(offset: int, key: str) -> dict:
    """The first ```json document after `offset` that has `key`."""
    for at, block in fenced("json"):
        doc = json.loads(block)
        if at > offset and key in doc:
            return doc
    raise AssertionError(f"README shows no JSON with {key!r} after offset {offset}")


def error_transcripts() -> list[tuple[str, str]]:
    """($ command, its printed output) pairs of the Errors section's transcripts."""
    pairs = []
    for _, block in fenced(""):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            pairs.append((command, output.rstrip("\n")))
    return pairs


def error_table() -> dict[str, int]:
    table = README[README.index("| status | code | when |"):]
    rows = table[:table.index("\n\n")].splitlines()[2:]
    return {code: int(row.split("|")[1]) for row in rows
            for code in re.findall(r"`([a-z_]+)`", row.split("|")[2])}


# --- comparing an answer with README ---------------------------------------

def kind(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number"
    return type(value).__name__


def differences(doc, real, path: str = "$", noisy: tuple = ()) -> list[str]:
    """Where `real` lacks a field README documents, or differs from a value README shows.

    Under a path in `noisy` only fields and types are compared; floats are
    compared to the digits README shows ("values shortened").
    """
    if kind(doc) != kind(real):
        return [f"{path}: README shows {doc!r}, the server gave {real!r}"]
    if isinstance(doc, dict):
        return [f"{path}.{k}: documented, not in the answer" for k in doc if k not in real] + [
            d for k in doc if k in real
            for d in differences(doc[k], real[k], f"{path}.{k}", noisy)]
    if isinstance(doc, list):
        short = [f"{path}: README shows {len(doc)} items, the server gave {len(real)}"]
        return (short if len(real) < len(doc) else []) + [
            d for i, (a, b) in enumerate(zip(doc, real))
            for d in differences(a, b, f"{path}[{i}]", noisy)]
    if path.startswith(noisy) or doc == real:
        return []
    if isinstance(doc, float) and isinstance(real, (int, float)):
        digits = len(repr(doc).partition(".")[2])
        if round(real, digits) == doc:
            return []
    return [f"{path}: README shows {doc!r}, the server gave {real!r}"]


# --- running examples ---------------------------------------------------------

def curl_binary() -> str:
    found = shutil.which("curl")
    if found is None:
        message = ("the README's curl examples need the curl binary; "
                   "scripts/install_test_deps.sh installs it (apt-get install curl)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def shell(server: Server, command: str, key: str) -> subprocess.CompletedProcess:
    """Run a README command line through bash, as a reader would paste it."""
    env = {**os.environ, "DPQUERY_URL": server.url, "DPQUERY_KEY": key,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command.replace(README_URL, server.url)], env=env,
                          cwd=server.tmp, capture_output=True, text=True, timeout=120)


def run_curl(server: Server, command: str, key: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a README curl command; curl itself must succeed."""
    curl_binary()
    done = shell(server, command + " -w '\\n%{http_code}'", key)
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def curl_status(server: Server, path: str, *args: str) -> tuple[int, dict]:
    """Status and JSON body of one request made with curl (the error-table checks)."""
    done = subprocess.run([curl_binary(), "-s", "-w", "\n%{http_code}", *args, server.url + path],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def with_body(command: str, body: dict) -> str:
    """README's curl command with another `-d` body (one of README's JSON requests)."""
    head, found, _ = command.partition(" -d ")
    assert found, command
    return head + " -d " + "'" + json.dumps(body).replace("'", "'\\''") + "'"


# --- the server ---------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("readme"), workers=2)
    try:
        srv.wait_ready(timeout=120)
        srv.partner_key, srv.admin_key = srv.keys()
        yield srv
    finally:
        srv.stop()


def admin(server: Server, method: str, path: str, body: dict) -> dict:
    r = requests.request(method, server.url + "/v1/admin" + path, json=body, timeout=60,
                         headers={"Authorization": f"Bearer {server.admin_key}"})
    assert r.ok, r.text
    return r.json()


def decimal(amount) -> str:
    """An exact amount ("1/5" or a Fraction) as the decimal text a request takes."""
    amount = Fraction(amount)
    return str(Decimal(amount.numerator) / Decimal(amount.denominator))


def new_partner(server: Server, name: str, epsilon: str, **extra) -> str:
    return admin(server, "POST", "/partners",
                 {"name": name, "budgets": {"purchases": {"epsilon": epsilon}}, **extra})["key"]


def query_curl() -> tuple[int, str]:
    [(at, command)] = [(at, c) for at, c in shell_commands("curl") if "/v1/queries" in c]
    return at, command


# --- the examples -------------------------------------------------------------

def test_readme_has_the_examples_this_file_runs():
    assert query_curl() and fenced("python") and len(shell_commands("dpquery")) >= 5
    assert len(error_transcripts()) >= 2 and len(error_table()) >= 15


def test_the_curl_query_answers_as_readme_shows(server):
    """Run on the demo partner's fresh budget, so `remaining` is README's exactly."""
    at, command = query_curl()
    shown = documented_after(at, "rows")
    status, answer = run_curl(server, command, server.partner_key)
    assert status == 200, answer
    assert differences(shown, answer, noisy=("$.rows", "$.data_version", "$.query_id")) == []
    total = int(re.search(r"\(Two of the (\d+) rows shown", README).group(1))
    assert len(answer["rows"]) == total
    assert {r["region"] for r in shown["rows"]} <= {r["region"] for r in answer["rows"]}
    status, again = run_curl(server, command, server.partner_key)
    assert (status, again["repeat"], again["charged"]["epsilon"]) == (200, True, "0")
    assert again["rows"] == answer["rows"]  # the stored answer: noise is not drawn again


def test_every_readme_request_body_is_answered_through_the_curl_command(server):
    at, command = query_curl()
    shown = documented_after(at, "rows")
    bodies = [json.loads(b) for _, b in fenced("json")]
    bodies = [b for b in bodies if {"sql", "query"} & set(b)]
    assert len(bodies) >= 2
    key = new_partner(server, "readme-bodies", "10")
    spends = {}
    for body in bodies:
        status, answer = run_curl(server, with_body(command, body), key)
        assert status == 200, answer
        assert set(shown) <= set(answer), body  # the fields README's answer shows
        assert differences({k: shown[k] for k in ("cost", "charged", "remaining")}, answer,
                           noisy=("$",)) == [], body
        assert Fraction(answer["charged"]["epsilon"]) == Fraction(str(body["epsilon"]))
        spends.update({a["alias"]: a["spend"]["epsilon"] for a in answer["aggregates"]})
    claim = re.search(r"Here `(\w+)` gets ε=([\d/]+) and `(\w+)` ε=([\d/]+)\.", README)
    assert claim, "README's sentence on the weights example moved"
    a, a_spend, b, b_spend = claim.groups()
    assert (spends[a], spends[b]) == (a_spend, b_spend)


def test_the_python_client_block_runs_as_shown(server):
    [(_, code)] = fenced("python")
    key = new_partner(server, "readme-python", "10")
    names = {"key": key}
    exec(compile(code.replace(README_URL, server.url), "README.md python block", "exec"), names)
    df, plan, answers = names["df"], names["plan"], names["answers"]
    assert isinstance(df, pd.DataFrame) and len(df) > 0
    assert {"region", "age_band", "r", "r_ci_low", "r_ci_high"} <= set(df.columns)
    assert {"charged", "remaining", "data_version", "notes"} <= set(df.attrs)
    assert df.attrs["charged"]["epsilon"] == "1/2"
    assert df["r"].dtype == "float64" and df["r_ci_low"].dtype == "float64"  # as README says
    assert plan.attrs["total"]["epsilon"] == "1/5" and len(plan) == 2
    assert sorted(set(answers["query"])) == [1, 2] and answers["n"].dtype == "Int64"
    assert names["c"].budget()["datasets"][0]["spent"]["epsilon"] == "7/10"  # the dry run is free


def cli_checks(out: str, command: str, server: Server) -> list[str]:
    """What each README command line must print besides exiting with 0."""
    if "--dry-run" in command:
        return [] if re.search(r"^total: ε=0\.2 for 2 statement\(s\); nothing was charged",
                               out, re.M) else ["no total of the dry run"]
    if "--out" in command:
        path = server.tmp / command.split("--out ")[1].split()[0]
        frame = pd.read_csv(path)
        return [] if sorted(set(frame["query"])) == [1, 2] else ["no `query` column 1, 2"]
    if "--local" in command and "--format csv" in command:
        frame = pd.read_csv(io.StringIO(out))
        return [] if list(frame.columns[:2]) == ["region", "count"] and len(frame) == 12 else [
            f"not one CSV row per region: {out[:200]}"]
    if "--preview" in command:
        return [] if "nothing charged" in out and "expected accuracy" in out else [out]
    return [] if re.search(r"^charged: ε=0\.2", out, re.M) and "remaining: " in out else [out]


def test_every_dpquery_command_line_runs(server):
    key = new_partner(server, "readme-cli", "10")
    batch = re.search(r"c\.batch\(\[(.*?)\]", fenced("python")[0][1], re.S).group(1)
    statements = re.findall(r'"(SELECT [^"]+)"', batch)
    assert len(statements) == 2  # README's dry run of the file spends 2 × ε=0.1
    (server.tmp / "batch.sql").write_text(";\n".join(statements) + ";\n")
    run = [c for _, c in shell_commands("dpquery") if not c.startswith(tuple(NOT_RUN))]
    assert len(run) >= 5
    for command in run:
        done = shell(server, command, key)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert cli_checks(done.stdout, command, server) == [], command
    again = shell(server, run[0], key)  # "A repeat prints ..."
    printed = re.search(r"A\s+repeat prints `([^`]+)`", README).group(1)
    assert printed in again.stdout, again.stdout


@pytest.mark.parametrize("command, printed", [
    pytest.param(c, p, id=f"transcript{i}") for i, (c, p) in enumerate(error_transcripts())])
def test_error_transcripts_print_what_readme_shows(server, command, printed):
    assert command.startswith("dpquery ")
    done = shell(server, command, server.partner_key)
    assert done.returncode != 0
    assert (done.stdout + done.stderr).rstrip("\n") == printed


def test_the_budget_exhausted_example(server):
    at, command = query_curl()
    shown = next(json.loads(b) for _, b in fenced("json") if '"budget_exhausted"' in b)
    remaining = decimal(shown["error"]["remaining"]["epsilon"])
    key = new_partner(server, "readme-exhausted", remaining)
    status, body = run_curl(server, command, key)
    assert status == error_table()["budget_exhausted"]
    assert differences(shown, body) == []


def test_the_budget_example_with_a_global_cap(server):
    """README's /v1/budget: partner 'ifa' spent ε=0.5, the global cap has ε=0.2 left."""
    shown = next(json.loads(b) for _, b in fenced("json") if '"queries_left"' in b)
    row = shown["datasets"][0]
    key = new_partner(server, shown["partner"], decimal(row["budget"]["epsilon"]),
                      purposes=shown["purposes"])
    at, command = query_curl()
    assert run_curl(server, command, key)[0] == 200  # spends ε=0.5, README's `spent`
    cap = {"reason": "README example"}
    try:
        admin(server, "PUT", "/global-cap/purchases", {**cap, "epsilon": "1000"})
        spent = Client(server.url, key).budget()["datasets"][0]["global"]["spent"]["epsilon"]
        left = row["global"]["remaining"]["epsilon"]  # the cap is set so README's is left
        admin(server, "PUT", "/global-cap/purchases",
              {**cap, "epsilon": decimal(Fraction(spent) + Fraction(left))})
        budget = Client(server.url, key).budget(epsilon=0.1)
    finally:
        admin(server, "PUT", "/global-cap/purchases", {**cap, "cap": None})
    noisy = ("$.datasets[0].global.cap", "$.datasets[0].global.spent")  # depend on other tests
    assert differences(shown, budget, noisy=noisy) == []


COUNT = {"sql": "SELECT COUNT(*) AS n FROM purchases", "epsilon": 0.1}


def post(key: str, body: dict, *extra: str) -> tuple[str, list[str]]:
    return "/v1/queries", ["-H", f"Authorization: Bearer {key}", *extra,
                           "-H", "Content-Type: application/json", "-d", json.dumps(body)]


def provocations(server: Server, key: str) -> dict[str, tuple[str, list[str]]]:
    """A curl request (path, arguments) that provokes each code; none is charged."""
    auth = ["-H", f"Authorization: Bearer {key}"]
    big = server.tmp / "big.json"
    big.write_text(json.dumps({**COUNT, "pad": "x" * 70_000}))
    excluded = next(c for c, out in error_transcripts() if "policy_violation" in out)
    excluded = excluded.split('"')[1]  # the SQL of README's excluded-category example
    return {
        "invalid_query": post(key, {**COUNT, "sql": "SELECT FROM purchases"}),
        "policy_violation": post(key, {**COUNT, "sql": excluded}),
        "accuracy_unreachable": post(key, {"sql": COUNT["sql"],
                                           "accuracy": {"within": 0.001, "confidence": 0.95}}),
        "invalid_request": post(key, {}),
        "unauthorized": ("/v1/budget", ["-H", "Authorization: Bearer nope"]),
        "budget_exhausted": post(key, {**COUNT, "epsilon": 2}),
        "forbidden": ("/v1/admin/partners", auth),
        "not_found": post(key, {**COUNT, "sql": "SELECT COUNT(*) FROM nosuch"}),
        "idempotency_conflict": post(key, {**COUNT, "epsilon": 0.2},
                                     "-H", "Idempotency-Key: readme-1"),
        "partner_exists": ("/v1/admin/partners", [
            "-H", f"Authorization: Bearer {server.admin_key}", "-H",
            "Content-Type: application/json", "-d", json.dumps({"name": "readme-errors"})]),
        "too_large": ("/v1/queries", [*auth, "-H", "Content-Type: application/json",
                                      "--data-binary", f"@{big}"]),
        "uri_too_long": ("/v1/budget?x=" + "a" * 9000, auth),
        "header_too_large": ("/v1/budget", [*auth, "-H", "X-Big: " + "a" * 9000]),
    }


def test_every_code_readme_lists_has_the_documented_status(server):
    table = error_table()
    assert set(NEEDS_A_FAULT) <= set(table)
    key = new_partner(server, "readme-errors", "1")
    path, args = post(key, COUNT, "-H", "Idempotency-Key: readme-1")  # reused below
    assert curl_status(server, path, *args)[0] == 200
    seen = {code: curl_status(server, path, *args)
            for code, (path, args) in provocations(server, key).items()}
    for code, (status, body) in seen.items():
        assert (status, body["error"]["code"]) == (table[code], code), body
    assert set(table) == set(seen) | set(NEEDS_A_FAULT)
    spent = Client(server.url, key).budget()["datasets"][0]["spent"]["epsilon"]
    assert spent == "1/10"  # "Nothing is charged for a refused query."
