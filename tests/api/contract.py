"""The OpenAPI document as a test oracle: validate bodies and responses against it."""
from __future__ import annotations

import re

import jsonschema

from dpquery.http.openapi import spec

RULE_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def validator(schema: dict) -> jsonschema.Draft202012Validator:
    """A validator for one schema of the document (its $refs resolve in the document)."""
    return jsonschema.Draft202012Validator({**schema, "components": spec()["components"]})


def errors(schema: dict, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(schema).iter_errors(doc)]


def response_schema(rule: str, method: str, status: int) -> dict | None:
    """The documented schema of a response; AssertionError when the status is undocumented."""
    path = RULE_PARAM.sub(r"{\1}", rule)
    operation = spec()["paths"].get(path, {}).get(method.lower())
    if operation is None:
        return None
    documented = operation["responses"].get(str(status))
    assert documented is not None, f"{method} {path} answered {status}, not in the OpenAPI document"
    return documented["content"]["application/json"]["schema"]


def check_response(rule: str | None, method: str, response) -> None:
    """Fail when a JSON response of a documented operation breaks its documented schema."""
    if rule is None or response.mimetype != "application/json":
        return
    schema = response_schema(rule, method, response.status_code)
    if schema is None:
        return
    problems = errors(schema, response.get_json())
    assert not problems, f"{method} {rule} {response.status_code}: {problems[:3]}"


def install(app) -> None:
    """Check every response the app gives in a test against the document."""
    from flask import request

    @app.after_request
    def _validate(response):
        rule = request.url_rule.rule if request.url_rule is not None else None
        check_response(rule, request.method, response)
        return response
