"""Property tests from /openapi.json (schemathesis): no 5xx, no 2xx without a valid key,
and no query body the spec accepts is refused as malformed (`invalid_request`)."""
from __future__ import annotations

import pytest

import schemathesis  # noqa: E402  (a declared test dependency: fail loudly if missing)
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from dpquery.http.app import create_app  # noqa: E402

from .conftest import bearer  # noqa: E402
from .contract import errors  # noqa: E402
from dpquery.http.openapi import QUERY_BODY  # noqa: E402

PUBLIC = {"/healthz", "/openapi.json"}


@pytest.fixture
def api_schema(settings, ledger):
    app = create_app({"SETTINGS": settings, "LEDGER": ledger, "TIME_QUANTUM_SECONDS": 0,
                      "RATE_LIMIT_PER_MINUTE": 0})
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.fixture
def keys(ledger, partner, admin_key):
    return {"partner": partner[1], "admin": admin_key}


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms(case, keys):
    anonymous = case.call()
    if case.path not in PUBLIC:
        assert not 200 <= anonymous.status_code < 300, (case.method, case.path)
    assert anonymous.status_code < 500
    role = "admin" if case.path.startswith("/v1/admin") else "partner"
    response = case.call_and_validate(headers=bearer(keys[role]), checks=[not_a_server_error])
    if case.path.startswith("/v1/queries") and case.method == "POST" and \
            response.status_code == 400 and not errors(QUERY_BODY, case.body) and \
            "Idempotency-Key" not in response.text:  # a body the spec accepts is well-formed
        assert response.json()["error"]["code"] != "invalid_request", (case.body, response.text)
