"""Administrator endpoints: everything `dpquery admin` does."""
from __future__ import annotations

from .conftest import COUNT, bearer


def test_partner_lifecycle(client, admin_key, ledger):
    h = bearer(admin_key)
    created = client.post("/v1/admin/partners", headers=h, json={
        "name": "Acme Re", "budgets": {"purchases": {"epsilon": "1.5"}},
        "per_query_cap": {"epsilon": 0.5}, "purposes": ["reinsurance"], "reason": "contract 7"})
    assert created.status_code == 201, created.json
    pid, key = created.json["id"], created.json["key"]
    assert created.json["budgets"][0]["budget"]["epsilon"] == "3/2"
    assert [p["id"] for p in client.get("/v1/admin/partners", headers=h).json["partners"]] == [pid]

    r = client.post(f"/v1/admin/partners/{pid}/budget", headers=h,
                    json={"dataset": "purchases", "epsilon": 2, "reason": "renewal"})
    assert r.status_code == 200 and r.json["budget"]["epsilon"] == "2"

    r = client.post("/v1/queries", headers=bearer(key), json={"sql": COUNT, "epsilon": 1.0})
    assert r.json["error"]["limit"] == "per_query"  # the cap set at creation holds

    assert client.post(f"/v1/admin/partners/{pid}/suspend", headers=h,
                       json={"reason": "audit"}).json["status"] == "suspended"
    assert client.get("/v1/budget", headers=bearer(key)).status_code == 403
    assert client.post(f"/v1/admin/partners/{pid}/resume", headers=h).json["status"] == "active"
    assert client.get("/v1/budget", headers=bearer(key)).status_code == 200

    rotated = client.post(f"/v1/admin/partners/{pid}/keys", headers=h)
    assert rotated.status_code == 201
    new_key, old_id = rotated.json["key"], created.json["key_id"]
    assert client.get("/v1/budget", headers=bearer(new_key)).status_code == 200
    revoked = client.delete(f"/v1/admin/keys/{old_id}?reason=rotated", headers=h)
    assert revoked.status_code == 200 and revoked.json["revoked_at"]
    assert client.get("/v1/budget", headers=bearer(key)).status_code == 401

    keys = client.get(f"/v1/admin/partners/{pid}", headers=h).json["keys"]
    assert {k["key_id"]: bool(k["revoked_at"]) for k in keys} == {
        old_id: True, rotated.json["key_id"]: False}


def test_global_cap_binds_all_partners(client, admin_key, partner):
    h = bearer(admin_key)
    r = client.put("/v1/admin/global-cap/purchases", headers=h,
                   json={"epsilon": 0.3, "reason": "collusion bound"})
    assert r.status_code == 200 and r.json["cap"]["epsilon"] == "3/10"
    refused = client.post("/v1/queries", headers=bearer(partner[1]),
                          json={"sql": COUNT, "epsilon": 0.5})
    assert refused.status_code == 403 and refused.json["error"]["limit"] == "global"
    removed = client.put("/v1/admin/global-cap/purchases", headers=h,
                         json={"cap": None, "reason": "lifted"})
    assert removed.json["cap"] is None
    assert client.put("/v1/admin/global-cap/nope", headers=h,
                      json={"epsilon": 1, "reason": "x"}).status_code == 404


def test_ledger_and_audit(client, admin_key, partner):
    h = bearer(admin_key)
    client.post("/v1/queries", headers=bearer(partner[1]), json={"sql": COUNT, "epsilon": 0.5})
    (charge,) = client.get(f"/v1/admin/ledger?partner={partner[0]}", headers=h).json["charges"]
    assert charge["status"] == "COMMITTED" and charge["amount"]["epsilon"] == "1/2"
    assert client.get("/v1/admin/ledger?since=2999-01-01", headers=h).json["charges"] == []
    assert client.get("/v1/admin/ledger?since=yesterday", headers=h).status_code == 400
    entries = client.get("/v1/admin/audit?outcome=reserved", headers=h).json["entries"]
    assert [e["partner_id"] for e in entries] == [partner[0]]


def test_admin_key_issue_and_bad_bodies(client, admin_key):
    h = bearer(admin_key)
    new = client.post("/v1/admin/keys", headers=h)
    assert new.status_code == 201 and new.json["key"].startswith("dpqa_")
    assert client.get("/v1/admin/partners", headers=bearer(new.json["key"])).status_code == 200
    for body in ({"name": "X", "budgets": {"purchases": {"epsilon": -1}}},
                 {"name": "X", "budgets": {"unknown": {"epsilon": 1}}},
                 {"name": "X", "colour": "red"}, {}):
        r = client.post("/v1/admin/partners", headers=h, json=body)
        assert r.status_code == 400 and r.json["error"]["code"] == "invalid_request", body
    r = client.post("/v1/admin/partners/x/budget", headers=h, json={"dataset": "purchases",
                                                                    "epsilon": 1})
    assert r.status_code == 400  # reason is required
