"""`dpquery serve` with a Spark-engine dataset: a real server, a real local Spark.

The worker prepares the dataset with a Spark job on start-up and answers over
HTTP with Spark's exact aggregates plus OpenDP's noise; the ledger is charged
once and the same query repeats for free.
"""
from __future__ import annotations

import re
from fractions import Fraction

import pytest
import requests

from budget import Ledger
from server_helpers import Server, write_config

pytestmark = pytest.mark.slow

RATE_SQL = ("SELECT region, PURCHASE_RATE(category = 'snacks') AS snack_rate "
            "FROM purchases GROUP BY region")


def spark_config(tmp):
    path = write_config(tmp, customers=2000)
    text = path.read_text()
    text, n = re.subn(r'(?m)^engine = ".*$', 'engine = "spark"', text)  # the purchases dataset's
    if n == 0:
        text = text.replace("\n[datasets.purchases]\n", '\n[datasets.purchases]\nengine = "spark"\n')
    assert text.count('engine = "spark"') == 1
    text += '\n[spark]\nmaster = "local[2]"\napp_name = "dpquery-e2e"\n' \
            '[spark.conf]\n"spark.driver.memory" = "1g"\n'
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spark-server")
    srv = Server(tmp, workers=1, config=spark_config(tmp))
    try:
        srv.wait_ready(timeout=300)  # the worker starts a JVM and runs the prepare job first
        srv.partner_key, srv.admin_key = srv.keys()
        yield srv
    finally:
        srv.stop()


def _spent(server, partner_id: str) -> Fraction:
    with Ledger(server.var / "ledger.db") as ledger:
        return ledger.spent(partner_id, "purchases").epsilon


def test_purchase_rate_by_region_is_charged_once_and_repeats_for_free(server):
    r = requests.post(server.url + "/v1/admin/partners",
                      headers={"Authorization": f"Bearer {server.admin_key}"},
                      json={"name": "Spark partner", "budgets": {"purchases": {"epsilon": "2"}}})
    assert r.status_code == 201, r.text
    pid, key = r.json()["id"], r.json()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    first = requests.post(server.url + "/v1/queries", headers=auth, timeout=300,
                          json={"sql": RATE_SQL, "epsilon": 0.5})
    assert first.status_code == 200, first.text + server.output()[-3000:]
    body = first.json()
    assert body["repeat"] is False
    rows = body["rows"]
    assert len(rows) == 12 and all(0 <= r["snack_rate"] <= 1 for r in rows
                                   if r["snack_rate"] is not None)
    assert all(r["snack_rate_ci_low"] <= r["snack_rate_ci_high"] for r in rows)
    assert _spent(server, pid) == Fraction(1, 2)
    again = requests.post(server.url + "/v1/queries", headers=auth, timeout=300,
                          json={"sql": RATE_SQL, "epsilon": 0.5})
    assert again.status_code == 200 and again.json()["repeat"] is True
    assert again.json()["rows"] == rows
    assert _spent(server, pid) == Fraction(1, 2)
    assert any((server.var / "prepared").glob("spark-purchases-*/part-*.parquet"))
