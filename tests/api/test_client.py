"""dpquery.client against the app, through a requests adapter over Flask's test client."""
from __future__ import annotations

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from dpquery import client as dpclient

from .conftest import COUNT, SNACKS


class FlaskAdapter(BaseAdapter):
    """Send requests' requests to a Flask test client (no sockets)."""

    def __init__(self, app):
        super().__init__()
        self.test_client = app.test_client()

    def send(self, request, **kwargs):
        path = request.path_url
        r = self.test_client.open(path, method=request.method, headers=dict(request.headers),
                                  data=request.body)
        response = requests.Response()
        response.status_code = r.status_code
        response.headers = CaseInsensitiveDict(r.headers)
        response._content = r.get_data()
        response.url, response.request = request.url, request
        return response

    def close(self):
        pass


@pytest.fixture
def dp(app, partner):
    session = requests.Session()
    session.mount("http://dpquery.test", FlaskAdapter(app))
    return dpclient.Client("http://dpquery.test", partner[1], session=session)


def test_query_returns_a_dataframe_with_the_answer(dp):
    df = dp.query(SNACKS, epsilon=0.5, purpose="pricing research")
    assert list(df.columns) == ["region", "snack_rate", "snack_rate_ci_low", "snack_rate_ci_high"]
    assert len(df) == 12 and (df["snack_rate_ci_low"] <= df["snack_rate_ci_high"]).all()
    answer = df.attrs["answer"]
    assert answer["charged"] == {"epsilon": 0.5} and answer["remaining"]["epsilon"] == "5/2"
    assert dp.answer(answer["query_id"]).equals(df)


def test_json_query_accuracy_and_idempotency(dp):
    query = {"dataset": "purchases", "group_by": ["age_band"], "aggregates": [{"kind": "count"}]}
    first = dp.query(query=query, accuracy={"within": 3000}, idempotency_key="abc")
    again = dp.query(query=query, accuracy={"within": 3000}, idempotency_key="abc")
    assert again.attrs["answer"]["repeat"] is True and again.equals(first)


def test_preview_budget_datasets_history(dp):
    assert dp.preview(COUNT, epsilon=0.3)["cost"] == {"epsilon": 0.3}
    assert dp.budget()["datasets"][0]["spent"]["epsilon"] == "0"
    assert dp.datasets()[0]["name"] == "purchases"
    dp.query(COUNT, epsilon=0.3)
    assert [h["status"] for h in dp.history()] == ["COMMITTED"]


def test_typed_errors(dp, app):
    with pytest.raises(dpclient.InvalidQueryError) as info:
        dp.query("SELECT nonsense FROM purchases", epsilon=0.5)
    assert info.value.status == 400 and info.value.code == "invalid_query"
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


def test_unreachable_service():
    with pytest.raises(dpclient.ConnectionFailed):
        dpclient.Client("http://127.0.0.1:9", "k", timeout=2).budget()
