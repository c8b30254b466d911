"""Python client: queries in, pandas DataFrames out.

    from dpquery.client import Client
    dp = Client("http://127.0.0.1:8000", key)
    df = dp.query("SELECT region, COUNT(*) AS n FROM purchases GROUP BY region", epsilon=0.5)
    df.attrs["answer"]["remaining"]        # the full answer: cost, remaining, intervals...

Errors from the service raise a `DPQueryClientError` subclass chosen by the
error code, carrying `code`, `message`, `status` and `details`.
"""
from __future__ import annotations

import pandas as pd
import requests


class DPQueryClientError(Exception):
    """An error answer from the service (or no answer at all: status 0)."""

    def __init__(self, code: str, message: str, status: int, details: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status
        self.details = details or {}


class InvalidQueryError(DPQueryClientError):
    """400: the query or request is wrong (invalid_query, policy_violation, ...)."""


class AuthError(DPQueryClientError):
    """401 unauthorized or 403 forbidden (bad key, suspended partner, wrong role)."""


class BudgetExhaustedError(DPQueryClientError):
    """403 budget_exhausted: `details` has requested, remaining and limit."""


class NotFoundError(DPQueryClientError):
    """404."""


class IdempotencyConflictError(DPQueryClientError):
    """409: the Idempotency-Key was used for another query."""


class RateLimitedError(DPQueryClientError):
    """429: `details["retry_after_seconds"]` says when to try again."""


class ServerError(DPQueryClientError):
    """5xx, or a response that is not the service's JSON."""


class ConnectionFailed(DPQueryClientError):
    """The service could not be reached."""


BY_CODE = {
    "invalid_query": InvalidQueryError, "policy_violation": InvalidQueryError,
    "accuracy_unreachable": InvalidQueryError, "invalid_request": InvalidQueryError,
    "too_large": InvalidQueryError, "unauthorized": AuthError, "forbidden": AuthError,
    "budget_exhausted": BudgetExhaustedError, "not_found": NotFoundError,
    "idempotency_conflict": IdempotencyConflictError, "rate_limited": RateLimitedError,
}


class Client:
    """A partner's (or administrator's) connection to a dpquery service."""

    def __init__(self, url: str, key: str, timeout: float = 120.0,
                 session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.auth = {"Authorization": f"Bearer {key}"}

    def query(self, sql: str | None = None, epsilon: float | None = None, *,
              query: dict | None = None, accuracy: dict | None = None, rho: float | None = None,
              confidence: float | None = None, idempotency_key: str | None = None,
              purpose: str | None = None) -> pd.DataFrame:
        """Run a query (charged unless a repeat): its rows as a DataFrame.

        Columns are the answer's `columns`: group keys, then for each aggregate
        its value, `<alias>_ci_low` and `<alias>_ci_high`. The whole answer
        (cost, charged, remaining, repeat, query_id, ...) is `df.attrs["answer"]`.
        """
        body = request_body(sql, epsilon, query=query, accuracy=accuracy, rho=rho,
                            confidence=confidence, purpose=purpose)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return to_frame(self._call("POST", "/v1/queries", body, headers))

    def preview(self, sql: str | None = None, epsilon: float | None = None, *,
                query: dict | None = None, accuracy: dict | None = None,
                rho: float | None = None, confidence: float | None = None) -> dict:
        """Spend and expected accuracy of a query; free, reads no data."""
        body = request_body(sql, epsilon, query=query, accuracy=accuracy, rho=rho,
                            confidence=confidence)
        return self._call("POST", "/v1/queries/preview", body)

    def run(self, body: dict, idempotency_key: str | None = None) -> dict:
        """Send a ready-made request body; the answer as a dict."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/queries", body, headers)

    def preview_body(self, body: dict) -> dict:
        return self._call("POST", "/v1/queries/preview", body)

    def budget(self) -> dict:
        return self._call("GET", "/v1/budget")

    def datasets(self) -> list[dict]:
        return self._call("GET", "/v1/datasets")["datasets"]

    def history(self) -> list[dict]:
        return self._call("GET", "/v1/queries")["queries"]

    def answer(self, query_id: int) -> pd.DataFrame:
        """A stored answer, as a DataFrame (no charge)."""
        return to_frame(self._call("GET", f"/v1/queries/{int(query_id)}"))

    def _call(self, method: str, path: str, body: dict | None = None,
              headers: dict | None = None) -> dict:
        try:
            response = self.session.request(method, self.url + path, json=body,
                                            headers={**self.auth, **(headers or {})},
                                            timeout=self.timeout)
        except requests.RequestException as exc:
            raise ConnectionFailed("connection_failed", f"cannot reach {self.url}: {exc}",
                                   0) from None
        return _decode(response)


def request_body(sql=None, epsilon=None, *, query=None, accuracy=None, rho=None,
                 confidence=None, purpose=None) -> dict:
    """The JSON body `POST /v1/queries` takes (None fields are left out)."""
    fields = {"sql": sql, "query": query, "epsilon": epsilon, "rho": rho, "accuracy": accuracy,
              "confidence": confidence, "purpose": purpose}
    return {k: v for k, v in fields.items() if v is not None}


def to_frame(answer: dict) -> pd.DataFrame:
    frame = pd.DataFrame(answer.get("rows", []), columns=answer.get("columns"))
    frame.attrs["answer"] = answer
    return frame


def _decode(response: requests.Response) -> dict:
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if response.ok and isinstance(doc, dict):
        return doc
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        raise ServerError("bad_response", f"HTTP {response.status_code} without a dpquery "
                          "error body", response.status_code)
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    cls = BY_CODE.get(error.get("code"), ServerError)
    raise cls(error.get("code", "unknown"), error.get("message", ""), response.status_code,
              details)
