"""Python client: queries in, pandas DataFrames out.

    from dpquery.client import Client
    dp = Client("http://127.0.0.1:8000", key)
    df = dp.query("SELECT region, COUNT(*) AS n FROM purchases GROUP BY region", epsilon=0.5)
    df.attrs["charged"], df.attrs["remaining"], df.attrs["data_version"], df.attrs["notes"]
    plan = dp.batch([sql1, sql2], epsilon=0.1, dry_run=True)   # spend of each, and the total
    answers = dp.batch([sql1, sql2], epsilon=0.1)              # one frame, a `query` column

Numbers come back with stable dtypes: every aggregate's value and interval
columns are float64 (a median's missing interval is NaN); counts are int64
(nullable Int64 in a batch frame, where other queries' rows leave them empty).
Errors from the service raise a `DPQueryClientError` subclass chosen by the
error code, carrying `code`, `message`, `status` and `details`.

Every query is sent with an `Idempotency-Key` (a new UUID unless given). A
retry after a lost connection, a 429 or a 503 reuses it, so the service
charges the query once.
"""
from __future__ import annotations

import time
import uuid
from fractions import Fraction

import pandas as pd
import requests

from dpquery.present import amount_text

COUNTS = ("count", "count_customers")
ATTRS = ("dataset", "cost", "charged", "remaining", "repeat", "query_id", "data_version",
         "notes", "bounding", "auto_bounds", "derived_from", "confidence", "aggregates", "bounds")


class DPQueryClientError(Exception):
    """An error answer from the service (or no answer at all: status 0)."""

    def __init__(self, code: str, message: str, status: int, details: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status
        self.details = details or {}


class InvalidQueryError(DPQueryClientError):
    """400: the query is wrong (invalid_query, policy_violation, accuracy_unreachable)."""


class InvalidRequestError(InvalidQueryError):
    """400 invalid_request: the body is malformed (not JSON, unknown field, no spend)."""


class AuthError(DPQueryClientError):
    """401 unauthorized or 403 forbidden (bad key, suspended partner, wrong role)."""


class BudgetExhaustedError(DPQueryClientError):
    """403 budget_exhausted: `details` has requested, remaining and limit."""


class NotFoundError(DPQueryClientError):
    """404."""


class ConflictError(DPQueryClientError):
    """409: a conflict with what the service already holds."""


class IdempotencyConflictError(ConflictError):
    """409 idempotency_conflict: the Idempotency-Key was used for another query."""


class QueryInterruptedError(ConflictError):
    """409 query_interrupted: an identical earlier request was charged, its answer lost.

    Send it again with a new Idempotency-Key to be answered (and charged) afresh.
    """


class PartnerExistsError(ConflictError):
    """409 partner_exists: a partner with that name exists (see `partner show`)."""


class TooLargeError(InvalidQueryError):
    """413 too_large, 414 uri_too_long or 431 header_too_large: over the service's limits."""


class RateLimitedError(DPQueryClientError):
    """429: `details["retry_after_seconds"]` says when to try again."""


class ServerError(DPQueryClientError):
    """5xx, or a response that is not the service's JSON."""


class QueryTimeoutError(ServerError):
    """504 query_timeout: the query ran longer than the service allows."""


class LedgerUnavailableError(ServerError):
    """503 ledger_unavailable: the budget ledger cannot be reached; nothing was charged."""


class ConnectionFailed(DPQueryClientError):
    """The service could not be reached."""


BY_CODE = {
    "invalid_query": InvalidQueryError, "policy_violation": InvalidQueryError,
    "accuracy_unreachable": InvalidQueryError, "invalid_request": InvalidRequestError,
    "too_large": TooLargeError, "unauthorized": AuthError, "forbidden": AuthError,
    "budget_exhausted": BudgetExhaustedError, "not_found": NotFoundError,
    "method_not_allowed": InvalidRequestError,
    "idempotency_conflict": IdempotencyConflictError, "query_interrupted": QueryInterruptedError,
    "partner_exists": PartnerExistsError, "rate_limited": RateLimitedError,
    "query_timeout": QueryTimeoutError, "ledger_unavailable": LedgerUnavailableError,
    "internal": ServerError, "uri_too_long": TooLargeError, "header_too_large": TooLargeError,
}
RETRIED = (429, 503)


class Client:
    """A partner's (or administrator's) connection to a dpquery service.

    `retries` is how many times a 429 (rate limited), a 503 or a lost
    connection is retried, waiting `Retry-After` seconds when the service says
    so, else `backoff` seconds doubling each time (at most `max_wait`).
    """

    def __init__(self, url: str, key: str, timeout: float = 120.0,
                 session: requests.Session | None = None, retries: int = 4,
                 backoff: float = 0.5, max_wait: float = 30.0, sleep=time.sleep):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.auth = {"Authorization": f"Bearer {key}"}
        self.retries, self.backoff, self.max_wait, self._sleep = retries, backoff, max_wait, sleep

    def query(self, sql: str | None = None, epsilon: float | str | None = None, *,
              query: dict | None = None, accuracy: dict | None = None,
              rho: float | str | None = None, confidence: float | None = None,
              weights: dict | None = None, bounding_report: bool | None = None,
              bounds: str | None = None, idempotency_key: str | None = None,
              purpose: str | None = None) -> pd.DataFrame:
        """Run a query (charged unless a repeat): its rows as a DataFrame.

        Columns are the answer's `columns`: group keys, then for each aggregate
        its value, `<alias>_ci_low` and `<alias>_ci_high`. `df.attrs` holds
        cost, charged, remaining, repeat, query_id, data_version, notes and
        bounding (with `bounding_report=True`) and auto_bounds (with `bounds="auto"`: the
        row bound chosen for this query); `df.attrs["answer"]` the whole answer.
        """
        body = request_body(sql, epsilon, query=query, accuracy=accuracy, rho=rho,
                            confidence=confidence, purpose=purpose, weights=weights,
                            bounding_report=bounding_report, bounds=bounds)
        return to_frame(self.run(body, idempotency_key))

    def preview(self, sql: str | None = None, epsilon: float | str | None = None, *,
                query: dict | None = None, accuracy: dict | None = None,
                rho: float | str | None = None, confidence: float | None = None,
                weights: dict | None = None) -> dict:
        """Spend and expected accuracy of a query; free, reads no data."""
        body = request_body(sql, epsilon, query=query, accuracy=accuracy, rho=rho,
                            confidence=confidence, weights=weights)
        return self.preview_body(body)

    def batch(self, queries: list, epsilon: float | str | None = None, *,
              rho: float | str | None = None, dry_run: bool = False,
              progress: bool = True, **options) -> pd.DataFrame:
        """Several queries (SQL text, or JSON query forms) at one spend each.

        With `dry_run=True` nothing is charged: one row per query with its
        spend and the total in `attrs["total"]`. Otherwise one DataFrame of all
        answers with a `query` column (1, 2, ...) and `attrs["answers"]`. Stops
        at the first refused query, raising its error; `error.details["done"]`
        holds the frame of the answers received until then.
        """
        bodies = [request_body(q if isinstance(q, str) else None, epsilon, rho=rho,
                               query=None if isinstance(q, str) else q, **options)
                  for q in queries]
        if dry_run:
            return _dry_run_frame([self.preview_body(b) for b in bodies], queries)
        answers = []
        for body in _progress(bodies, progress):
            try:
                answers.append(self.run(body))
            except DPQueryClientError as exc:
                exc.details["done"] = batch_frame(answers)
                raise
        return batch_frame(answers)

    def run(self, body: dict, idempotency_key: str | None = None) -> dict:
        """Send a ready-made request body; the answer as a dict (charged unless a repeat)."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return self._call("POST", "/v1/queries", body, headers)

    def preview_body(self, body: dict) -> dict:
        return self._call("POST", "/v1/queries/preview", body)

    def budget(self, epsilon: float | str | None = None, rho: float | str | None = None) -> dict:
        """Budget, spent and remaining per dataset, with the limit that binds and why.

        With `epsilon` (or `rho`), each dataset's `queries_left` says how many
        more queries of that spend fit.
        """
        params = {k: str(v) for k, v in (("epsilon", epsilon), ("rho", rho)) if v is not None}
        return self._call("GET", "/v1/budget", params=params)

    def datasets(self) -> list[dict]:
        return self._call("GET", "/v1/datasets")["datasets"]

    def history(self) -> list[dict]:
        return self._call("GET", "/v1/queries")["queries"]

    def answer(self, query_id: int) -> pd.DataFrame:
        """A stored answer, as a DataFrame (no charge)."""
        return to_frame(self._call("GET", f"/v1/queries/{int(query_id)}"))

    def _call(self, method: str, path: str, body: dict | None = None,
              headers: dict | None = None, params: dict | None = None) -> dict:
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, self.url + path, json=body,
                                                params=params, timeout=self.timeout,
                                                headers={**self.auth, **(headers or {})})
            except requests.RequestException as exc:
                if attempt == self.retries:
                    raise ConnectionFailed("connection_failed",
                                           f"cannot reach {self.url}: {exc}", 0) from None
                self._sleep(self._wait(attempt, None))
                continue
            if response.status_code not in RETRIED or attempt == self.retries:
                return _decode(response)
            self._sleep(self._wait(attempt, response.headers.get("Retry-After")))
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After (seconds) when given, else exponential backoff; capped at max_wait."""
        try:
            wait = float(retry_after) if retry_after is not None else None
        except ValueError:
            wait = None
        if wait is None or wait < 0:
            wait = self.backoff * 2 ** attempt
        return min(wait, self.max_wait)


def request_body(sql=None, epsilon=None, *, query=None, accuracy=None, rho=None,
                 confidence=None, purpose=None, weights=None, bounding_report=None,
                 bounds=None) -> dict:
    """The JSON body `POST /v1/queries` takes (None fields are left out)."""
    fields = {"sql": sql, "query": query, "epsilon": epsilon, "rho": rho, "accuracy": accuracy,
              "confidence": confidence, "purpose": purpose, "weights": weights,
              "bounding_report": bounding_report, "bounds": bounds}
    return {k: v for k, v in fields.items() if v is not None}


def to_frame(answer: dict) -> pd.DataFrame:
    """An answer's rows with stable dtypes; its metadata in `attrs`."""
    frame = pd.DataFrame(answer.get("rows", []), columns=answer.get("columns"))
    for agg in answer.get("aggregates", []):
        a = agg["alias"]
        for col in (a, f"{a}_ci_low", f"{a}_ci_high"):
            if col in frame:
                frame[col] = _numeric(frame[col], agg["kind"] in COUNTS)
    frame.attrs.update({k: answer[k] for k in ATTRS if k in answer})
    frame.attrs["answer"] = answer
    return frame


def _numeric(column: pd.Series, count: bool) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    if count and values.notna().all():
        return values.round().astype("int64")
    return values


def batch_frame(answers: list[dict]) -> pd.DataFrame:
    """Answers of a batch as one frame: a `query` column (1, 2, ...) then each answer's columns."""
    frames = []
    for i, answer in enumerate(answers, 1):
        frame = to_frame(answer)
        frame.insert(0, "query", i)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"query": []})
    out["query"] = out["query"].astype("int64")
    for column in _count_columns(answers):  # absent from other queries' rows: nullable ints
        out[column] = out[column].astype("Int64")
    out.attrs = {"answers": answers, "charged": _total([a.get("charged") for a in answers])}
    return out


def _count_columns(answers: list[dict]) -> list[str]:
    names = {f"{a['alias']}{suffix}" for answer in answers for a in answer.get("aggregates", [])
             if a["kind"] in COUNTS for suffix in ("", "_ci_low", "_ci_high")}
    return sorted(names)


def _dry_run_frame(previews: list[dict], queries: list) -> pd.DataFrame:
    total = _total([p["cost"] for p in previews])
    frame = pd.DataFrame({
        "query": range(1, len(previews) + 1),
        "text": [q if isinstance(q, str) else str(q) for q in queries],
        "spend": [p["cost"]["text"] for p in previews],
        "epsilon": [float(Fraction(p["cost"].get("epsilon", "0"))) for p in previews],
        "rho": [float(Fraction(p["cost"].get("rho", "0"))) for p in previews]})
    frame.attrs = {"total": total, "previews": previews}
    return frame


def _total(amounts: list) -> dict:
    """The exact sum of amounts in their JSON form, in the same form."""
    sums = {k: sum((Fraction(a.get(k, "0")) for a in amounts if a), Fraction(0))
            for k in ("epsilon", "delta", "rho")}
    return {**{k: str(v) for k, v in sums.items()}, "text": amount_text(sums)}


def _progress(items: list, wanted: bool):
    """A tqdm progress bar when tqdm is installed and wanted; else the items as they are."""
    if not wanted:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="queries", unit="query")


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
    if "Retry-After" in response.headers:
        details.setdefault("retry_after_seconds", response.headers["Retry-After"])
    cls = BY_CODE.get(error.get("code"), ServerError)
    raise cls(error.get("code", "unknown"), error.get("message", ""), response.status_code,
              details)
