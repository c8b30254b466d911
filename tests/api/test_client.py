"""dpquery.client against the app, through a requests adapter over Flask's test client."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from dpquery import client as dpclient

from .conftest import COUNT, SNACKS

MEDIAN = "SELECT region, MEDIAN(amount) AS med, COUNT(*) AS n FROM purchases GROUP BY region"


class FlaskAdapter(BaseAdapter):
    """Send requests' requests to a Flask test client (no sockets)."""

    def __init__(self, app):
        super().__init__()
        self.test_client = app.test_client()
        self.sent = []  # (method, path, headers) of every request

    def send(self, request, **kwargs):
        self.sent.append((request.method, request.path_url, dict(request.headers)))
        r = self.test_client.open(request.path_url, method=request.method,
                                  headers=dict(request.headers), data=request.body)
        return _response(request, r.status_code, r.headers, r.get_data())

    def close(self):
        pass


class Throttled(FlaskAdapter):
    """The first `n` requests get 429 with Retry-After (or a 503 ledger_unavailable)."""

    def __init__(self, app, n: int, status: int = 429, retry_after: str | None = "2"):
        super().__init__(app)
        self.n, self.status, self.retry_after = n, status, retry_after

    def send(self, request, **kwargs):
        if self.n > 0:
            self.n -= 1
            self.sent.append((request.method, request.path_url, dict(request.headers)))
            code = "rate_limited" if self.status == 429 else "ledger_unavailable"
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            body = ('{"error": {"code": "%s", "message": "slow down"}}' % code).encode()
            return _response(request, self.status, headers, body)
        return super().send(request, **kwargs)


def _response(request, status: int, headers, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers)
    response._content = body
    response.url, response.request = request.url, request
    return response


def _client(adapter, key: str, **kwargs) -> dpclient.Client:
    session = requests.Session()
    session.mount("http://dpquery.test", adapter)
    return dpclient.Client("http://dpquery.test", key, session=session, **kwargs)


@pytest.fixture
def dp(app, partner):
    return _client(FlaskAdapter(app), partner[1])


def test_query_returns_a_dataframe_with_the_answer(dp):
    df = dp.query(SNACKS, epsilon=0.5, purpose="pricing research")
    assert list(df.columns) == ["region", "snack_rate", "snack_rate_ci_low", "snack_rate_ci_high"]
    assert len(df) == 12 and (df["snack_rate_ci_low"] <= df["snack_rate_ci_high"]).all()
    assert df.attrs["charged"]["epsilon"] == "1/2" and df.attrs["remaining"]["epsilon"] == "5/2"
    assert df.attrs["remaining"]["limit"] == "partner"
    assert df.attrs["remaining"]["queries_like_this"] == 5
    assert df.attrs["data_version"] and df.attrs["notes"] and df.attrs["repeat"] is False
    assert dp.answer(df.attrs["query_id"]).equals(df)


def test_dtypes_are_numeric_and_stable(dp):
    df = dp.query(MEDIAN, epsilon=0.5)
    assert df["med"].dtype == "float64"
    assert df["med_ci_low"].dtype == "float64" and df["med_ci_low"].isna().all()
    assert df["n"].dtype == "int64" and df["n_ci_low"].dtype == "int64"


def test_bounding_report_in_attrs(dp):
    df = dp.query(COUNT, epsilon=0.5, bounding_report=True)
    assert df.attrs["bounding"]["spend"]["epsilon"] == "1/20"


def test_auto_bounds_in_attrs(dp):
    df = dp.query(COUNT, epsilon=0.5, bounds="auto")
    chosen = df.attrs["auto_bounds"]
    assert chosen["spend"]["epsilon"] == "1/20"
    assert df.attrs["bounds"]["rows_per_customer"] == chosen["rows_per_customer"]


def test_json_query_accuracy_and_idempotency(dp):
    query = {"dataset": "purchases", "group_by": ["age_band"], "aggregates": [{"kind": "count"}]}
    first = dp.query(query=query, accuracy={"within": 3000}, idempotency_key="abc")
    again = dp.query(query=query, accuracy={"within": 3000}, idempotency_key="abc")
    assert again.attrs["repeat"] is True and again.equals(first)
    assert again.attrs["charged"]["text"] == "ε=0"


def test_an_idempotency_key_is_sent_by_default_and_reused_on_retry(app, partner):
    adapter = Throttled(app, n=2)
    waits = []
    dp = _client(adapter, partner[1], sleep=waits.append)
    dp.query(COUNT, epsilon=0.2)
    keys = [headers.get("Idempotency-Key") for _m, _p, headers in adapter.sent]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", keys[0])
    assert waits == [2.0, 2.0]  # Retry-After honoured
    dp.query(SNACKS, epsilon=0.2)
    assert adapter.sent[-1][2]["Idempotency-Key"] != keys[0]  # a new query, a new key


def test_backoff_without_retry_after_and_giving_up(app, partner):
    waits = []
    dp = _client(Throttled(app, n=10, status=503, retry_after=None), partner[1],
                 sleep=waits.append, retries=3, backoff=0.5)
    with pytest.raises(dpclient.LedgerUnavailableError) as info:
        dp.budget()
    assert waits == [0.5, 1.0, 2.0] and info.value.status == 503
    dp = _client(Throttled(app, n=10), partner[1], sleep=waits.append, retries=1)
    with pytest.raises(dpclient.RateLimitedError) as info:
        dp.budget()
    assert info.value.details["retry_after_seconds"] == "2"


def test_batch_dry_run_and_run(dp):
    plan = dp.batch([COUNT, SNACKS], epsilon="0.1", dry_run=True)
    assert list(plan["query"]) == [1, 2] and plan.attrs["total"]["epsilon"] == "1/5"
    assert dp.budget()["datasets"][0]["spent"]["epsilon"] == "0"
    frame = dp.batch([COUNT, SNACKS], epsilon="0.1", progress=False)
    assert set(frame["query"]) == {1, 2} and frame["query"].dtype == "int64"
    assert frame.attrs["charged"]["epsilon"] == "1/5"
    assert frame.loc[frame["query"] == 1, "n"].notna().all()
    assert frame.loc[frame["query"] == 2, "n"].isna().all()


def test_batch_stops_at_a_refusal_with_the_answers_so_far(dp):
    with pytest.raises(dpclient.InvalidQueryError) as info:
        dp.batch([COUNT, "SELECT nonsense FROM purchases"], epsilon=0.1, progress=False)
    assert list(info.value.details["done"]["query"].unique()) == [1]


def test_preview_budget_datasets_history(dp):
    assert dp.preview(COUNT, epsilon=0.3)["cost"]["epsilon"] == "3/10"
    budget = dp.budget(epsilon=0.3)["datasets"][0]
    assert budget["spent"]["epsilon"] == "0" and budget["queries_left"]["count"] == 10
    assert dp.datasets()[0]["name"] == "purchases"
    dp.query(COUNT, epsilon=0.3)
    assert [h["status"] for h in dp.history()] == ["COMMITTED"]


def test_typed_errors(dp, app):
    with pytest.raises(dpclient.InvalidQueryError) as info:
        dp.query("SELECT nonsense FROM purchases", epsilon=0.5)
    assert info.value.status == 400 and info.value.code == "invalid_query"
    with pytest.raises(dpclient.InvalidRequestError) as info:
        dp.run({"sql": COUNT})
    assert info.value.code == "invalid_request"
    dp.query(COUNT, epsilon=2)
    with pytest.raises(dpclient.BudgetExhaustedError) as info:
        dp.query(SNACKS, epsilon=2)
    assert info.value.details["remaining"]["epsilon"] == "1" and info.value.status == 403
    with pytest.raises(dpclient.NotFoundError):
        dp.answer(12345)
    bad = dpclient.Client("http://dpquery.test", "dpq_nope", session=dp.session)
    with pytest.raises(dpclient.AuthError) as info:
        bad.budget()
    assert info.value.status == 401


def test_every_documented_code_has_a_typed_exception():
    from dpquery.http.openapi import ERROR_CODES
    for code in ERROR_CODES:
        assert dpclient.BY_CODE[code] is not dpclient.DPQueryClientError, code
    assert issubclass(dpclient.BY_CODE["query_timeout"], dpclient.ServerError)
    assert issubclass(dpclient.BY_CODE["query_interrupted"], dpclient.ConflictError)


def test_unreachable_service():
    waits = []
    with pytest.raises(dpclient.ConnectionFailed):
        dpclient.Client("http://127.0.0.1:9", "k", timeout=2, sleep=waits.append).budget()
    assert len(waits) == 4


def test_batch_frame_of_nothing_is_empty():
    assert dpclient.batch_frame([]).empty and isinstance(dpclient.batch_frame([]), pd.DataFrame)
