"""One contract: README examples, the OpenAPI document, the server and the client agree."""
from __future__ import annotations

import json
import re
import shlex

import pytest

from budget import Amount
from dpquery import client as dpclient
from dpquery.http import openapi

from .conftest import ROOT, bearer
from .contract import errors

README = (ROOT / "README.md").read_text()
JSON_BLOCKS = re.findall(r"```json\n(.*?)```", README, re.S)
CURL_BODIES = [shlex.split(cmd.replace("\\\n", " "))
               for cmd in re.findall(r"(curl [^`]*?)\n```", README, re.S)]
QUERY_BODY = openapi.QUERY_BODY


def _documents() -> list[dict]:
    return [json.loads(block) for block in JSON_BLOCKS]


def _schema_for(doc: dict) -> dict:
    if "error" in doc:
        return openapi.ERROR
    if "rows" in doc:
        return openapi.ANSWER
    if "datasets" in doc and "partner" in doc:
        return openapi.BUDGET
    return QUERY_BODY


def _bodies() -> list[dict]:
    bodies = [d for d in _documents() if _schema_for(d) is QUERY_BODY]
    for argv in CURL_BODIES:
        if "-d" in argv:
            bodies.append(json.loads(argv[argv.index("-d") + 1]))
    return bodies


def test_readme_has_examples_to_check():
    assert len(JSON_BLOCKS) >= 5 and CURL_BODIES and len(_bodies()) >= 3


@pytest.mark.parametrize("doc", _documents(), ids=lambda d: sorted(d)[0])
def test_every_readme_json_example_matches_the_spec(doc):
    assert errors(_schema_for(doc), doc) == []


@pytest.mark.parametrize("body", _bodies(), ids=lambda b: sorted(b)[0])
def test_every_readme_request_is_answered_by_the_server(client, partner, body):
    assert errors(QUERY_BODY, body) == []
    r = client.post("/v1/queries/preview", json=body, headers=bearer(partner[1]))
    assert r.status_code == 200, r.json
    r = client.post("/v1/queries", json=body, headers=bearer(partner[1]))
    assert r.status_code == 200, r.json  # the response's shape is checked by conftest's app


def test_readme_error_codes_are_in_the_spec_and_the_client():
    table = README[README.index("| status | code | when |"):]
    table = table[:table.index("\n\n")]
    codes = set(re.findall(r"`([a-z_]+)`", "\n".join(
        line.split("|")[2] for line in table.splitlines()[2:])))
    assert {"invalid_request", "query_interrupted", "query_timeout", "ledger_unavailable"} <= codes
    assert codes <= set(openapi.ERROR_CODES)
    assert set(openapi.ERROR_CODES) <= set(dpclient.BY_CODE)


@pytest.mark.parametrize("body", [{}, {"sql": "SELECT COUNT(*) FROM purchases"},
                                  {"epsilon": 0.5}, [], {"sql": "x", "epsilon": 0.5, "e": 1},
                                  {"sql": "SELECT COUNT(*) FROM purchases", "epsilon": "abc"},
                                  {"sql": "SELECT COUNT(*) FROM purchases", "epsilon": " 0.1"}])
def test_what_the_spec_refuses_the_server_refuses_as_invalid_request(client, partner, body):
    assert errors(QUERY_BODY, body) != []
    r = client.post("/v1/queries", json=body, headers=bearer(partner[1]))
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_request"


def test_epsilon_as_exact_decimal_text(client, partner):
    body = {"sql": "SELECT COUNT(*) AS n FROM purchases", "epsilon": "0.1"}
    assert errors(QUERY_BODY, body) == []
    r = client.post("/v1/queries", json=body, headers=bearer(partner[1]))
    assert r.status_code == 200 and r.json["charged"]["epsilon"] == "1/10"


def test_weights_divide_the_spend_exactly(client, partner):
    body = {"sql": "SELECT COUNT(*) AS n, SUM(amount) AS s, AVG(amount) AS a FROM purchases",
            "epsilon": "0.3"}
    even = client.post("/v1/queries/preview", json=body, headers=bearer(partner[1])).json
    assert [a["spend"]["epsilon"] for a in even["aggregates"]] == ["1/10"] * 3
    assert [n["spend"]["epsilon"] for n in even["aggregates"][2]["noise"]] == ["1/20", "1/20"]
    weighted = client.post("/v1/queries/preview", json={**body, "weights": {"n": 2}},
                           headers=bearer(partner[1])).json
    assert [a["spend"]["epsilon"] for a in weighted["aggregates"]] == ["3/20", "3/40", "3/40"]
    bad = client.post("/v1/queries/preview", json={**body, "weights": {"zz": 2}},
                      headers=bearer(partner[1]))
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_query"


def test_budget_remaining_includes_the_global_cap(client, ledger, partner):
    pid, key = partner
    ledger.set_global_cap("purchases", Amount(epsilon=1), actor="t", reason="test")
    sql = {"sql": "SELECT COUNT(*) AS n FROM purchases", "epsilon": "0.75"}
    answer = client.post("/v1/queries", json=sql, headers=bearer(key)).json
    assert answer["remaining"]["epsilon"] == "1/4" and answer["remaining"]["limit"] == "global"
    budget = client.get("/v1/budget?epsilon=0.1", headers=bearer(key)).json["datasets"][0]
    assert budget["remaining"]["epsilon"] == "1/4" and budget["limit"] == "global"
    assert budget["partner_remaining"]["epsilon"] == "9/4"
    assert budget["queries_left"]["count"] == 2 and "cap all partners share" in budget["why"]
    bad = client.get("/v1/budget?epsilon=lots", headers=bearer(key))
    assert bad.status_code == 400


def test_admin_create_with_a_name_in_use_is_409(client, ledger, partner, admin_key):
    r = client.post("/v1/admin/partners", json={"name": "IFA", "budgets": {
        "purchases": {"epsilon": 3}}}, headers=bearer(admin_key))
    assert r.status_code == 409 and r.json["error"]["code"] == "partner_exists"
    assert "/v1/admin/partners/ifa/budget" in r.json["error"]["message"]
    assert [p.id for p in ledger.list_partners()] == ["ifa"]


def test_admin_global_cap_below_spent_is_refused(client, ledger, partner, admin_key):
    client.post("/v1/queries", json={"sql": "SELECT COUNT(*) AS n FROM purchases",
                                     "epsilon": 0.5}, headers=bearer(partner[1]))
    r = client.put("/v1/admin/global-cap/purchases", json={"epsilon": 0.25, "reason": "x"},
                   headers=bearer(admin_key))
    assert r.status_code == 400 and "below what all partners already spent" in \
        r.json["error"]["message"]
    assert ledger.global_position("purchases")[0] is None
