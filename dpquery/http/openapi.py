"""The OpenAPI 3.1 description of the HTTP API, built as a Python dict.

Served at GET /openapi.json. It is the contract: `tests/api/test_contract.py`
validates every README example and every response the API tests see against
it, and schemathesis checks that a body the spec accepts is never refused as
`invalid_request` (the body's envelope: fields, types, one query, one spend).
"""
from __future__ import annotations

from functools import lru_cache

from dpquery.engine.query import AGGREGATES, COMPARISONS, MAX_WEIGHT
from dpquery.engine.request import DECIMAL_TEXT

STRING = {"type": "string"}
TEXT = {"type": "string", "minLength": 1}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
FRACTION = {"type": "string", "pattern": r"^[0-9]+(/[0-9]+)?$", "examples": ["1/10"]}
AMOUNT = {"type": "object", "required": ["epsilon", "delta", "rho", "text"],
          "description": "exact amounts: fractions as strings ('1/10'), plus a readable text",
          "properties": {"epsilon": FRACTION, "delta": FRACTION, "rho": FRACTION,
                         "text": STRING, "implied": {"type": "object", "properties": {
                             "epsilon": {"type": "number"}, "delta": {"type": "number"}}}}}
AMOUNT_REF = {"$ref": "#/components/schemas/Amount"}
MAYBE_AMOUNT = {"oneOf": [AMOUNT_REF, {"type": "null"}]}
REMAINING = {"allOf": [AMOUNT_REF, {"type": "object", "properties": {
    "limit": {"enum": ["partner", "global"]},
    "queries_like_this": {"type": "integer", "minimum": 0}}}]}
ERROR_CODES = [
    "invalid_query", "policy_violation", "accuracy_unreachable", "invalid_request",
    "unauthorized", "forbidden", "budget_exhausted", "not_found", "method_not_allowed",
    "idempotency_conflict", "query_interrupted", "partner_exists", "too_large", "rate_limited",
    "internal", "ledger_unavailable", "query_timeout", "uri_too_long", "header_too_large"]
ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "enum": ERROR_CODES}, "message": STRING},
        "additionalProperties": True}},
}
SPEND_IN = {"oneOf": [POSITIVE, {"type": "string", "pattern": f"^({DECIMAL_TEXT.pattern})$",
                                 "description": "exact decimal text, e.g. \"0.1\""}]}
WEIGHT = {"type": "integer", "minimum": 1, "maximum": MAX_WEIGHT,
          "description": "this aggregate's share of the spend relative to the others (default 1)"}
SCALAR = {"type": ["string", "number"]}
CONDITION = {"type": "object", "description": "{column, op, value}, {column, in}, "
             "{column, between}, {and: [...]}, {or: [...]} or {not: {...}}",
             "properties": {"column": TEXT, "op": {"enum": list(COMPARISONS)}, "value": SCALAR,
                            "in": {"type": "array", "items": SCALAR},
                            "between": {"type": "array", "items": SCALAR}}}
AGGREGATE_IN = {"type": "object", "required": ["kind"], "additionalProperties": False,
                "properties": {"kind": {"enum": list(AGGREGATES)}, "alias": TEXT,
                               "column": TEXT, "quantile": {"type": "number"},
                               "condition": CONDITION, "weight": WEIGHT}}
QUERY_FORM = {"type": "object", "required": ["aggregates"], "additionalProperties": False,
              "properties": {
                  "dataset": TEXT, "group_by": {"type": "array", "items": TEXT},
                  "aggregates": {"type": "array", "items": AGGREGATE_IN},
                  "where": {"oneOf": [CONDITION, {"type": "null"}]},
                  "order_by": {"type": "array"}, "limit": {"type": ["integer", "null"]},
                  "derived": {"type": "object", "additionalProperties": TEXT,
                              "description": "row-level expressions by name, in SQL, e.g. "
                                             "{\"bucket\": \"FLOOR(amount / 10) * 10\"}"}}}
ACCURACY = {"type": "object", "required": ["within"], "additionalProperties": False,
            "properties": {"within": POSITIVE, "confidence": {"type": "number"},
                           "aggregate": STRING, "assumed_group_size": {"type": "integer"},
                           "at_most": {**POSITIVE, "description": "the most this query may "
                                       "spend (epsilon, or rho); a target costing more is "
                                       "refused, free"}}}
QUERY_BODY = {
    "type": "object", "additionalProperties": False,
    "description": "exactly one of sql/query; exactly one of epsilon/rho/accuracy",
    "allOf": [{"oneOf": [{"required": ["sql"]}, {"required": ["query"]}]},
              {"oneOf": [{"required": ["epsilon"]}, {"required": ["rho"]},
                         {"required": ["accuracy"]}]}],
    "properties": {
        "sql": {"type": "string", "examples": [
            "SELECT region, PURCHASE_RATE(category = 'snacks') AS snack_rate "
            "FROM purchases GROUP BY region"]},
        "query": QUERY_FORM, "epsilon": SPEND_IN, "rho": SPEND_IN,
        "confidence": {"type": "number"}, "accuracy": ACCURACY,
        "weights": {"type": "object", "additionalProperties": WEIGHT,
                    "description": "aggregate alias -> weight: shares of the spend"},
        "purpose": {"type": "string", "description": "one of the partner's approved purposes"},
        "bounding_report": {"type": "boolean", "description": "also estimate the share of "
                            "customers the row bound cuts, with 10% of the spend"},
        "bounds": {"enum": ["auto"], "description": "the rows-per-customer bound chosen for "
                   "this query from a noisy histogram (datasets with bounds.auto = true)"},
        "derive": {"type": "boolean", "description": "false: always a fresh (charged) answer, "
                   "never one derived for free from answers already held (default true)"},
        "dataset": STRING},
}
NOISE = {"type": "object", "required": ["statistic", "mechanism", "scale", "spend"],
         "properties": {"statistic": STRING, "mechanism": STRING, "scale": {"type": "number"},
                        "spend": AMOUNT_REF,
                        "center": {"type": "number", "description":
                                   "a ratio's numerator: what its values were summed minus "
                                   "(ratio = center + numerator / denominator)"}}}
AGGREGATE_OUT = {"type": "object", "required": ["alias", "kind", "weight", "spend", "noise"],
                 "properties": {
                     "alias": STRING, "kind": {"enum": list(AGGREGATES)}, "weight": WEIGHT,
                     "spend": AMOUNT_REF, "noise": {"type": "array", "items": NOISE},
                     "clamp": {"type": "array", "items": {"type": "number"}},
                     "expected_halfwidth": {"type": ["number", "null"]},
                     "expected_halfwidth_for_group_size": {"type": "integer"}}}
CELL = {"type": ["string", "number", "integer", "null"]}
PREVIEW = {"type": "object", "required": ["dataset", "cost", "confidence", "group_by",
                                          "columns", "aggregates", "bounds", "notes"],
           "properties": {
               "dataset": STRING, "cost": AMOUNT_REF, "confidence": {"type": "number"},
               "group_by": {"type": "array", "items": STRING},
               "columns": {"type": "array", "items": STRING},
               "aggregates": {"type": "array", "items": AGGREGATE_OUT},
               "bounds": {"type": "object"}, "notes": {"type": "array", "items": STRING}}}
STORED = {"allOf": [PREVIEW, {
    "type": "object", "required": ["rows", "query_id", "data_version", "repeat"],
    "properties": {
        "rows": {"type": "array", "items": {"type": "object", "additionalProperties": CELL}},
        "query_id": {"type": "integer"}, "data_version": STRING, "repeat": {"type": "boolean"},
        "request_id": STRING, "cache_id": STRING,
        "derived_from": {"type": "array", "items": {"type": "integer"}, "description":
                         "present when the answer was derived for free from these earlier "
                         "answers of the same partner"},
        "bounding": {"type": "object", "description": "present when bounding_report was asked"},
        "released_parts": {"type": "array", "items": {"type": "object"}, "description":
                           "present with a ratio (AVG, PURCHASE_RATE): per group, its keys and "
                           "each ratio's released numerator and denominator (<alias>.num, "
                           "<alias>.den) in column units; the release the ratio is computed from "
                           "(ratio = center + numerator / denominator, center in the numerator's "
                           "noise entry)"},
        "auto_bounds": {"type": "object", "description": "present with \"bounds\": \"auto\": "
                        "the bound chosen, its spend, the rows it is estimated to leave out"}}}]}
ANSWER = {"allOf": [STORED, {"type": "object", "required": ["charged", "remaining"],
                             "properties": {"charged": AMOUNT_REF, "remaining": REMAINING}}]}
GLOBAL = {"oneOf": [{"type": "null"}, {"type": "object", "required": ["cap", "spent", "remaining"],
                                       "properties": {"cap": AMOUNT_REF, "spent": AMOUNT_REF,
                                                      "remaining": AMOUNT_REF}}]}
BUDGET = {"type": "object", "required": ["partner", "purposes", "per_query_cap", "datasets"],
          "properties": {
              "partner": STRING, "purposes": {"type": "array", "items": STRING},
              "per_query_cap": MAYBE_AMOUNT,
              "datasets": {"type": "array", "items": {
                  "type": "object",
                  "required": ["dataset", "budget", "spent", "remaining", "limit", "why",
                               "partner_remaining", "global"],
                  "properties": {
                      "dataset": STRING, "budget": AMOUNT_REF, "spent": AMOUNT_REF,
                      "remaining": AMOUNT_REF, "partner_remaining": AMOUNT_REF,
                      "limit": {"enum": ["partner", "global"]}, "why": STRING, "global": GLOBAL,
                      "queries_left": {"type": "object", "required": ["spend", "count"],
                                       "properties": {"spend": AMOUNT_REF,
                                                      "count": {"type": "integer"}}}}}}}}
HISTORY = {"type": "object", "required": ["queries"], "properties": {"queries": {
    "type": "array", "items": {"type": "object", "required": ["query_id", "status", "amount"],
                               "properties": {"query_id": {"type": "integer"},
                                              "status": STRING, "amount": {"type": "object"}}}}}}
DATASETS = {"type": "object", "required": ["datasets"],
            "properties": {"datasets": {"type": "array", "items": {"type": "object"}}}}
DATASET_BUDGET = {"type": "object", "required": ["dataset", "budget", "spent", "remaining"],
                  "properties": {"dataset": STRING, "budget": AMOUNT_REF, "spent": AMOUNT_REF,
                                 "remaining": AMOUNT_REF, "global_cap": MAYBE_AMOUNT,
                                 "global_spent": AMOUNT_REF}}
PARTNER = {"type": "object", "required": ["id", "name", "status"], "properties": {
    "id": STRING, "name": STRING, "status": {"enum": ["active", "suspended"]},
    "purposes": {"type": "array", "items": STRING}, "per_query_cap": MAYBE_AMOUNT,
    "budgets": {"type": "array", "items": DATASET_BUDGET}, "keys": {"type": "array"},
    "key": STRING, "key_id": STRING, "warning": STRING}}
PARTNERS = {"type": "object", "required": ["partners"],
            "properties": {"partners": {"type": "array", "items": PARTNER}}}
NEW_KEY = {"type": "object", "required": ["key_id", "key", "warning"],
           "properties": {"key_id": STRING, "key": STRING, "warning": STRING}}
CAP = {"type": "object", "required": ["dataset", "cap", "spent"], "properties": {
    "dataset": STRING, "cap": MAYBE_AMOUNT, "spent": AMOUNT_REF}}
REASON = {"type": "object", "required": ["reason"], "properties": {"reason": TEXT}}
AMOUNT_IN = {"oneOf": [{"type": "number", "minimum": 0},
                       {"type": "string", "pattern": r"^[0-9.eE+-]+$"}]}
SET_BUDGET = {"type": "object", "required": ["dataset", "reason"], "additionalProperties": False,
              "properties": {"dataset": STRING, "reason": TEXT, "epsilon": AMOUNT_IN,
                             "rho": AMOUNT_IN, "delta": AMOUNT_IN}}
NEW_PARTNER = {"type": "object", "required": ["name"], "additionalProperties": False,
               "description": "a name already in use is refused (409 partner_exists); "
                              "`reason` is optional (recorded in the audit log)",
               "properties": {"name": TEXT, "reason": STRING,
                              "purposes": {"type": "array", "items": STRING},
                              "budgets": {"type": "object", "additionalProperties": {
                                  "type": "object", "properties": {"epsilon": AMOUNT_IN}}},
                              "per_query_cap": {"type": ["object", "null"]}}}
GLOBAL_CAP = {"type": "object", "required": ["reason"],
              "description": "a cap below what all partners already spent is refused (400)",
              "properties": {"reason": TEXT, "epsilon": AMOUNT_IN, "rho": AMOUNT_IN,
                             "delta": AMOUNT_IN,
                             "cap": {"type": "null", "description": "send null to remove the cap"}}}

ERRORS = {
    "400": "invalid_query, policy_violation, accuracy_unreachable or invalid_request",
    "401": "unauthorized: missing, unknown or revoked key",
    "403": "forbidden (suspended partner, wrong role, purpose not approved) or budget_exhausted",
    "404": "not_found", "405": "method_not_allowed",
    "409": "idempotency_conflict, query_interrupted (an identical earlier request was charged "
           "but its answer was lost) or partner_exists", "413": "too_large",
    "429": "rate_limited: over rate_limit_per_minute for this key, counted across all "
           "workers of the host; Retry-After says when to try again",
    "500": "internal: a bug", "503": "ledger_unavailable: nothing was charged; try again",
    "504": "query_timeout",
}


def _op(summary: str, ok: dict | None = None, body: dict | None = None, errors=(),
        status: str = "200", params=(), public: bool = False) -> dict:
    op = {"summary": summary, "responses": {
        status: {"description": "OK", "content": {"application/json": {"schema": ok or {
            "type": "object"}}}}}}
    codes = set(errors) | ({"405", "500"} if public else {"401", "403", "405", "429", "500",
                                                          "503"})
    if body is not None:
        codes |= {"400", "413"}
    for code in sorted(codes):
        op["responses"][code] = {"description": ERRORS[code],
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


def _query(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema or STRING}


IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
               "description": "a retry with the same key returns the same answer, charged once"}
PID = _path("partner_id")
SPEND_ARG = {"type": "string", "pattern": f"^({DECIMAL_TEXT.pattern})$"}


@lru_cache(maxsize=1)
def spec() -> dict:
    """The OpenAPI 3.1 document."""
    q = ["400", "404", "409", "413", "500", "504"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "dpquery", "version": "1",
                 "description": "Differentially private aggregate queries with a privacy "
                                "budget. Every error has the shape {\"error\": {\"code\", "
                                "\"message\", ...}}. Amounts are exact fractions as strings "
                                "with a readable `text`."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": ERROR, "QueryBody": QUERY_BODY, "Answer": ANSWER,
                                   "Amount": AMOUNT}},
        "paths": {
            "/healthz": {"get": _op("liveness", public=True)},
            "/openapi.json": {"get": _op("this document", public=True)},
            "/v1/queries": {
                "post": _op("answer a query; charged unless a repeat", ANSWER, QUERY_BODY, q,
                            params=[IDEMPOTENCY]),
                "get": _op("this partner's queries", HISTORY)},
            "/v1/queries/preview": {"post": _op("spend and expected accuracy; free", PREVIEW,
                                                QUERY_BODY, ["400", "404", "413"])},
            "/v1/queries/{query_id}": {"get": _op("a stored answer", STORED, errors=["404"],
                                                  params=[_path("query_id", {"type": "integer"})])},
            "/v1/budget": {"get": _op(
                "budget, spent, remaining (global cap included), the binding limit; "
                "with ?epsilon= how many more such queries fit", BUDGET, errors=["400"],
                params=[_query("epsilon", SPEND_ARG), _query("rho", SPEND_ARG)])},
            "/v1/datasets": {"get": _op("datasets: schema, public keys, bounds, policy",
                                        DATASETS)},
            "/v1/admin/partners": {
                "get": _op("list partners", PARTNERS),
                "post": _op("create a partner; its key is shown once", PARTNER, NEW_PARTNER,
                            ["404", "409"], status="201")},
            "/v1/admin/partners/{partner_id}": {"get": _op("a partner", PARTNER, errors=["404"],
                                                           params=[PID])},
            "/v1/admin/partners/{partner_id}/budget": {"post": _op(
                "set a budget", DATASET_BUDGET, SET_BUDGET, ["404"], params=[PID])},
            "/v1/admin/partners/{partner_id}/suspend": {"post": _op(
                "suspend", PARTNER, REASON, ["404"], params=[PID])},
            "/v1/admin/partners/{partner_id}/resume": {"post": _op(
                "resume", PARTNER, errors=["400", "404", "413"], params=[PID])},
            "/v1/admin/partners/{partner_id}/keys": {"post": _op(
                "rotate: a new key, shown once", NEW_KEY, errors=["404"], status="201",
                params=[PID])},
            "/v1/admin/keys": {"post": _op("a new administrator key", NEW_KEY, status="201")},
            "/v1/admin/keys/{key_id}": {"delete": _op(
                "revoke a key", errors=["404"], params=[_path("key_id"), _query("reason")])},
            "/v1/admin/global-cap/{dataset}": {"put": _op(
                "cap all partners on a dataset", CAP, GLOBAL_CAP, ["404"],
                params=[_path("dataset")])},
            "/v1/admin/ledger": {"get": _op("charges", errors=["400"],
                                            params=[_query("partner"), _query("since")])},
            "/v1/admin/audit": {"get": _op("the audit log", errors=["400"], params=[
                _query("partner"), _query("since"), _query("outcome")])},
        },
    }
