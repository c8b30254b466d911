"""One walk through every error path: one JSON shape, the right status, nothing charged."""
from __future__ import annotations

import logging

from dpquery.http.app import create_app

from .conftest import COUNT, bearer, epsilon_spent


def check(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and set(response.json) == {"error"}
    error = response.json["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return error


def test_every_error_path_has_the_one_shape(client, app, ledger, partner, admin_key, settings):
    pid, key = partner
    q = lambda body, **h: client.post("/v1/queries", json=body, headers={**bearer(key), **h})

    check(q({"sql": "SELECT MEDIAN_PRICE(amount) FROM purchases", "epsilon": 0.5}),
          400, "invalid_query")
    check(q({"sql": "SELECT customer_id, COUNT(*) FROM purchases GROUP BY customer_id",
             "epsilon": 0.5}), 400, "policy_violation")
    err = check(client.post("/v1/queries", data='{"sql": ', headers=bearer(key)),
                400, "invalid_request")
    assert "line 1" in err["message"]
    check(client.post("/v1/queries", data="[1, 2]", headers=bearer(key)), 400, "invalid_request")
    check(client.post("/v1/queries", data='{"epsilon": NaN}', headers=bearer(key)),
          400, "invalid_request")
    check(q({"sql": COUNT, "epsilon": 0.1}, **{"Idempotency-Key": "bad key!"}),
          400, "invalid_request")

    check(client.get("/v1/budget"), 401, "unauthorized")
    check(client.get("/v1/budget", headers=bearer("dpq_000000000000_" + "x" * 43)),
          401, "unauthorized")
    check(client.get("/v1/budget", headers={"Authorization": "Basic abc"}), 401, "unauthorized")

    assert q({"sql": COUNT, "epsilon": 2.0}).status_code == 200
    before = epsilon_spent(ledger, pid)
    err = check(q({"sql": COUNT.replace(" n", " rows"), "epsilon": 2.0}), 403, "budget_exhausted")
    assert err["requested"]["epsilon"] == "2" and err["remaining"]["epsilon"] == "1"
    assert err["limit"] == "partner"
    assert epsilon_spent(ledger, pid) == before  # a refused query charges nothing

    check(client.get("/v1/admin/partners", headers=bearer(key)), 403, "forbidden")
    check(q({"sql": COUNT, "epsilon": 0.1, "purpose": "marketing"}), 403, "forbidden")

    check(client.get("/v1/nowhere"), 404, "not_found")
    check(client.get("/v1/queries/999", headers=bearer(key)), 404, "not_found")
    check(client.get("/v1/admin/partners/nobody", headers=bearer(admin_key)), 404, "not_found")
    check(client.delete("/v1/budget", headers=bearer(key)), 405, "method_not_allowed")

    assert q({"sql": COUNT, "epsilon": 0.2}, **{"Idempotency-Key": "k1"}).status_code == 200
    check(q({"sql": COUNT, "epsilon": 0.3}, **{"Idempotency-Key": "k1"}),
          409, "idempotency_conflict")

    huge = {"sql": "SELECT 1 " + "x" * settings.server["max_body_bytes"], "epsilon": 0.1}
    err = check(q(huge), 413, "too_large")
    assert err["limit_bytes"] == settings.server["max_body_bytes"]

    spent = epsilon_spent(ledger, pid)
    ledger.suspend(pid, "test", "walk")
    check(q({"sql": COUNT, "epsilon": 0.1}), 403, "forbidden")
    ledger.resume(pid, "test")
    assert epsilon_spent(ledger, pid) == spent  # nothing above was charged


def test_rate_limit(settings, ledger, partner):
    app = create_app({"SETTINGS": settings, "LEDGER": ledger, "RATE_LIMIT_PER_MINUTE": 2})
    client = app.test_client()
    for _ in range(2):
        assert client.get("/v1/budget", headers=bearer(partner[1])).status_code == 200
    response = client.get("/v1/budget", headers=bearer(partner[1]))
    err = check(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1 and err["retry_after_seconds"] >= 1


def test_unexpected_error_is_logged_not_leaked(app, client, partner, caplog, monkeypatch):
    def broken():
        raise RuntimeError("secret value 4242")
    monkeypatch.setattr(app.extensions["dpquery"].service, "datasets", broken)
    with caplog.at_level(logging.ERROR, logger="dpquery.http.app"):
        response = client.get("/v1/datasets", headers=bearer(partner[1]))
    err = check(response, 500, "internal")
    assert "4242" not in response.get_data(as_text=True)
    assert err["request_id"] == response.headers["X-Request-Id"]
    assert "secret value 4242" in caplog.text  # the traceback stays in the server log
