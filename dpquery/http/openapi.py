"""The OpenAPI 3.1 description of the HTTP API, built as a Python dict.

Served at GET /openapi.json; schemathesis tests the server against it.
"""
from __future__ import annotations

from functools import lru_cache

NUMBER = {"type": "number", "exclusiveMinimum": 0}
STRING = {"type": "string"}
AMOUNT = {"type": "object", "description": "exact amounts: fractions as strings ('1/10')",
          "properties": {"epsilon": STRING, "delta": STRING, "rho": STRING, "text": STRING}}
ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "enum": [
            "invalid_query", "policy_violation", "accuracy_unreachable", "invalid_request",
            "unauthorized", "forbidden", "budget_exhausted", "not_found", "method_not_allowed",
            "idempotency_conflict", "too_large", "rate_limited", "query_timeout", "internal"]},
            "message": STRING},
        "additionalProperties": True}},
}
QUERY_BODY = {
    "type": "object", "additionalProperties": False,
    "description": "exactly one of sql/query; exactly one of epsilon/rho/accuracy",
    "properties": {
        "sql": {"type": "string", "examples": [
            "SELECT region, PURCHASE_RATE(category = 'snacks') AS snack_rate "
            "FROM purchases GROUP BY region"]},
        "query": {"type": "object", "properties": {
            "dataset": STRING, "group_by": {"type": "array", "items": STRING},
            "aggregates": {"type": "array", "items": {"type": "object"}},
            "where": {"type": "object"}, "order_by": {"type": "array"},
            "limit": {"type": "integer"}}},
        "epsilon": NUMBER, "rho": NUMBER, "confidence": {"type": "number"},
        "accuracy": {"type": "object", "required": ["within"], "properties": {
            "within": NUMBER, "confidence": {"type": "number"}, "aggregate": STRING,
            "assumed_group_size": {"type": "integer"}}},
        "purpose": {"type": "string", "description": "one of the partner's approved purposes"},
        "bounding_report": {"type": "boolean", "description": "also estimate the share of "
                            "customers the row bound cuts, with 10% of the spend"},
        "dataset": STRING},
}
ANSWER = {"type": "object", "properties": {
    "dataset": STRING, "columns": {"type": "array", "items": STRING},
    "rows": {"type": "array", "items": {"type": "object"}},
    "cost": {"type": "object"}, "charged": {"type": "object"}, "remaining": AMOUNT,
    "repeat": {"type": "boolean"}, "query_id": {"type": "integer"},
    "confidence": {"type": "number"}, "aggregates": {"type": "array"}, "notes": {"type": "array"},
    "bounding": {"type": "object", "description": "present when bounding_report was asked"}}}
REASON = {"type": "object", "required": ["reason"], "properties": {"reason": STRING}}
AMOUNT_IN = {"oneOf": [NUMBER, {"type": "string", "pattern": r"^[0-9.eE+-]+$"}]}
SET_BUDGET = {"type": "object", "required": ["dataset", "reason"], "additionalProperties": False,
              "properties": {"dataset": STRING, "reason": STRING, "epsilon": AMOUNT_IN,
                             "rho": AMOUNT_IN, "delta": AMOUNT_IN}}
NEW_PARTNER = {"type": "object", "required": ["name"], "additionalProperties": False,
               "properties": {"name": STRING, "reason": STRING,
                              "purposes": {"type": "array", "items": STRING},
                              "budgets": {"type": "object", "additionalProperties": {
                                  "type": "object", "properties": {"epsilon": AMOUNT_IN}}},
                              "per_query_cap": {"type": ["object", "null"]}}}
GLOBAL_CAP = {"type": "object", "required": ["reason"], "properties": {
    "reason": STRING, "epsilon": AMOUNT_IN, "rho": AMOUNT_IN, "delta": AMOUNT_IN,
    "cap": {"type": "null", "description": "send null to remove the cap"}}}

ERRORS = {
    "400": "invalid_query, policy_violation, accuracy_unreachable or invalid_request",
    "401": "unauthorized: missing, unknown or revoked key",
    "403": "forbidden (suspended partner, wrong role, purpose not approved) or budget_exhausted",
    "404": "not_found", "409": "idempotency_conflict or query_interrupted (an identical earlier "
           "request was charged but its answer was lost)", "413": "too_large",
    "429": "rate_limited (per key, per worker)", "500": "internal: a bug", "504": "query_timeout",
}


def _op(summary: str, ok: dict | None = None, body: dict | None = None, errors=(),
        status: str = "200", params=(), public: bool = False) -> dict:
    op = {"summary": summary, "responses": {
        status: {"description": "OK", "content": {"application/json": {"schema": ok or {
            "type": "object"}}}}}}
    codes = set(errors) | ({"405"} if public else {"401", "403", "405", "429"})
    for code in sorted(codes):
        op["responses"][code] = {"description": ERRORS.get(code, "method not allowed"),
                                 "content": {"application/json": {"schema": {
                                     "$ref": "#/components/schemas/Error"}}}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = list(params)
    op["security"] = [] if public else [{"bearer": []}]
    return op


def _path(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or STRING}


def _query(name: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": STRING}


IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
               "description": "a retry with the same key returns the same answer, charged once"}
PID = _path("partner_id")


@lru_cache(maxsize=1)
def spec() -> dict:
    """The OpenAPI 3.1 document."""
    q = ["400", "404", "409", "413", "500", "504"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "dpquery", "version": "1",
                 "description": "Differentially private aggregate queries with a privacy "
                                "budget. Every error has the shape {\"error\": {\"code\", "
                                "\"message\", ...}}."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": ERROR, "QueryBody": QUERY_BODY, "Answer": ANSWER,
                                   "Amount": AMOUNT}},
        "paths": {
            "/healthz": {"get": _op("liveness", public=True)},
            "/openapi.json": {"get": _op("this document", public=True)},
            "/v1/queries": {
                "post": _op("answer a query; charged unless a repeat", ANSWER, QUERY_BODY, q,
                            params=[IDEMPOTENCY]),
                "get": _op("this partner's queries", {"type": "object", "properties": {
                    "queries": {"type": "array"}}})},
            "/v1/queries/preview": {"post": _op("spend and expected accuracy; free", None,
                                                QUERY_BODY, ["400", "404", "413"])},
            "/v1/queries/{query_id}": {"get": _op("a stored answer", ANSWER, errors=["404"],
                                                  params=[_path("query_id", {"type": "integer"})])},
            "/v1/budget": {"get": _op("budget, spent, remaining per dataset")},
            "/v1/datasets": {"get": _op("datasets: schema, public keys, bounds, policy")},
            "/v1/admin/partners": {
                "get": _op("list partners"),
                "post": _op("create a partner; its key is shown once", None, NEW_PARTNER,
                            ["400", "404", "413"], status="201")},
            "/v1/admin/partners/{partner_id}": {"get": _op("a partner", errors=["404"],
                                                           params=[PID])},
            "/v1/admin/partners/{partner_id}/budget": {"post": _op(
                "set a budget", None, SET_BUDGET, ["400", "404", "413"], params=[PID])},
            "/v1/admin/partners/{partner_id}/suspend": {"post": _op(
                "suspend", None, REASON, ["400", "404", "413"], params=[PID])},
            "/v1/admin/partners/{partner_id}/resume": {"post": _op(
                "resume", errors=["400", "404", "413"], params=[PID])},
            "/v1/admin/partners/{partner_id}/keys": {"post": _op(
                "rotate: a new key, shown once", errors=["404"], status="201", params=[PID])},
            "/v1/admin/keys": {"post": _op("a new administrator key", status="201")},
            "/v1/admin/keys/{key_id}": {"delete": _op(
                "revoke a key", errors=["404"], params=[_path("key_id"), _query("reason")])},
            "/v1/admin/global-cap/{dataset}": {"put": _op(
                "cap all partners on a dataset", None, GLOBAL_CAP, ["400", "404", "413"],
                params=[_path("dataset")])},
            "/v1/admin/ledger": {"get": _op("charges", errors=["400"],
                                            params=[_query("partner"), _query("since")])},
            "/v1/admin/audit": {"get": _op("the audit log", errors=["400"], params=[
                _query("partner"), _query("since"), _query("outcome")])},
        },
    }
