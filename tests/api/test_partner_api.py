"""Partner endpoints through Flask's test client."""
from __future__ import annotations

from fractions import Fraction

from .conftest import COUNT, SNACKS, bearer, epsilon_spent


def ask(client, key, body, **headers):
    return client.post("/v1/queries", json=body, headers={**bearer(key), **headers})


def test_healthz_and_openapi_need_no_key(client):
    assert client.get("/healthz").json == {"status": "ok"}
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    assert "/v1/queries" in doc["paths"] and "/v1/admin/partners" in doc["paths"]


def test_openapi_lists_every_route(app):
    """Every JSON route is documented (the web console's HTML pages are not an API)."""
    documented = set(app.test_client().get("/openapi.json").json["paths"])
    routes = {r.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
              for r in app.url_map.iter_rules()
              if r.endpoint != "static" and not r.endpoint.startswith("web.")}
    assert routes == documented


def test_datasets_describe_schema_without_data(client, partner):
    doc = client.get("/v1/datasets", headers=bearer(partner[1])).json
    (ds,) = doc["datasets"]
    assert ds["name"] == "purchases"
    assert "customer_id" not in {c["name"] for c in ds["columns"]}


def test_budget_shows_exact_amounts(client, partner):
    doc = client.get("/v1/budget", headers=bearer(partner[1])).json
    (row,) = doc["datasets"]
    assert row["budget"]["epsilon"] == "3" and row["remaining"]["epsilon"] == "3"
    assert doc["purposes"] == ["pricing research", "actuarial review"]


def test_preview_is_free(client, ledger, partner):
    r = client.post("/v1/queries/preview", json={"sql": SNACKS, "epsilon": 0.5},
                    headers=bearer(partner[1]))
    assert r.status_code == 200 and r.json["cost"]["epsilon"] == "1/2"
    assert "rows" not in r.json
    assert epsilon_spent(ledger, partner[0]).epsilon == 0


def test_query_charges_once_and_repeats_are_free(client, ledger, partner):
    pid, key = partner
    first = ask(client, key, {"sql": SNACKS, "epsilon": 0.5})
    assert first.status_code == 200, first.json
    answer = first.json
    assert answer["repeat"] is False and answer["charged"]["epsilon"] == "1/2"
    assert answer["remaining"]["epsilon"] == "5/2"
    assert answer["columns"] == ["region", "snack_rate", "snack_rate_ci_low", "snack_rate_ci_high"]
    assert len(answer["rows"]) == 12
    again = ask(client, key, {"sql": SNACKS, "epsilon": 0.5}).json
    assert again["repeat"] is True and again["charged"]["text"] == "ε=0"
    assert again["rows"] == answer["rows"]
    assert epsilon_spent(ledger, pid).epsilon == Fraction(1, 2)


def test_rephrased_query_is_charged(client, ledger, partner):
    pid, key = partner
    ask(client, key, {"sql": SNACKS, "epsilon": 0.5})
    rephrased = SNACKS.replace("AS snack_rate", "AS snacks")
    answer = ask(client, key, {"sql": rephrased, "epsilon": 0.5}).json
    assert answer["repeat"] is False
    assert epsilon_spent(ledger, pid).epsilon == 1


def test_idempotency_key_retry_returns_same_answer_charged_once(client, ledger, partner):
    pid, key = partner
    body = {"sql": COUNT, "epsilon": 0.25}
    first = ask(client, key, body, **{"Idempotency-Key": "retry-1"}).json
    second = ask(client, key, body, **{"Idempotency-Key": "retry-1"}).json
    assert second["rows"] == first["rows"] and second["query_id"] == first["query_id"]
    assert second["repeat"] is True
    assert epsilon_spent(ledger, pid).epsilon == Fraction(1, 4)


def test_history_and_stored_answer(client, partner, ledger):
    pid, key = partner
    answer = ask(client, key, {"sql": COUNT, "epsilon": 0.25}).json
    (item,) = client.get("/v1/queries", headers=bearer(key)).json["queries"]
    assert item["query_id"] == answer["query_id"] and item["status"] == "COMMITTED"
    stored = client.get(f"/v1/queries/{answer['query_id']}", headers=bearer(key)).json
    assert stored["rows"] == answer["rows"]


def test_another_partners_answer_is_not_found(client, partner, ledger):
    answer = ask(client, partner[1], {"sql": COUNT, "epsilon": 0.25}).json
    _, other = ledger.create_partner("Other", {"purchases": ledger.spent(partner[0], "purchases")},
                                     actor="test", reason="t")
    r = client.get(f"/v1/queries/{answer['query_id']}", headers=bearer(other))
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"


def test_purpose_defaults_to_first_and_is_audited(client, ledger, partner):
    pid, key = partner
    ask(client, key, {"sql": COUNT, "epsilon": 0.25})
    ask(client, key, {"sql": SNACKS, "epsilon": 0.25, "purpose": "actuarial review"})
    actors = [e.actor for e in ledger.ledger_entries(pid) if e.outcome == "reserved"]
    assert actors == [f"partner:{pid} purpose:pricing research",
                      f"partner:{pid} purpose:actuarial review"]


def test_unapproved_purpose_is_refused_and_free(client, ledger, partner):
    r = ask(client, partner[1], {"sql": COUNT, "epsilon": 0.25, "purpose": "marketing"})
    assert r.status_code == 403 and r.json["error"]["code"] == "forbidden"
    assert r.json["error"]["approved_purposes"] == ["pricing research", "actuarial review"]
    assert epsilon_spent(ledger, partner[0]).epsilon == 0


def test_json_query_form_and_accuracy_target(client, partner):
    body = {"query": {"dataset": "purchases", "group_by": ["region"],
                      "aggregates": [{"kind": "count"}]}, "accuracy": {"within": 2000}}
    r = ask(client, partner[1], body)
    assert r.status_code == 200, r.json
    assert r.json["columns"][:2] == ["region", "count"]


def test_admin_key_cannot_run_queries(client, admin_key):
    r = ask(client, admin_key, {"sql": COUNT, "epsilon": 0.25})
    assert r.status_code == 403 and r.json["error"]["code"] == "forbidden"
