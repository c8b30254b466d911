"""Limits enforced as documented, security headers, and demo data only when asked."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from fractions import Fraction

import pytest

from dpquery import service
from dpquery.errors import ConfigError
from dpquery.http import server as server_mod
from dpquery.http.app import create_app
from dpquery.http.headers import SECURITY_HEADERS

from .conftest import COUNT, bearer, epsilon_spent


def _with_server(settings, **server):
    return dataclasses.replace(settings, server={**settings.server, **server})


# -- query timeout -------------------------------------------------------------------

def test_a_query_past_its_timeout_gets_504_and_keeps_its_charge(settings, ledger, partner,
                                                                monkeypatch):
    pid, key = partner
    original = service.execute.answer_rows

    def slow(plan, noisy):
        time.sleep(1.5)  # noise already drawn: a runaway engine
        return original(plan, noisy)
    monkeypatch.setattr(service.execute, "answer_rows", slow)
    app = create_app({"TESTING": True, "SETTINGS": _with_server(settings,
                      query_timeout_seconds=0.3), "LEDGER": ledger, "TIME_QUANTUM_SECONDS": 0})
    client = app.test_client()
    r = client.post("/v1/queries", json={"sql": COUNT, "epsilon": 0.5}, headers=bearer(key))
    assert r.status_code == 504 and r.json["error"]["code"] == "query_timeout", r.json
    assert r.json["error"]["limit_seconds"] == 0.3
    assert epsilon_spent(ledger, pid).epsilon == Fraction(1, 2)
    assert [x.status for x in ledger.reservations(pid)] == ["COMMITTED"]
    again = client.post("/v1/queries", json={"sql": COUNT, "epsilon": 0.5}, headers=bearer(key))
    assert again.status_code == 409 and again.json["error"]["code"] == "query_interrupted"
    assert epsilon_spent(ledger, pid).epsilon == Fraction(1, 2)
    monkeypatch.setattr(service.execute, "answer_rows", original)
    fine = client.post("/v1/queries", json={"sql": "SELECT COUNT(*) AS n FROM purchases",
                                            "epsilon": 0.5}, headers=bearer(key))
    assert fine.status_code == 200  # the same process keeps answering


# -- rate limit shared by the workers --------------------------------------------------

def test_the_rate_limit_holds_across_processes_sharing_the_store(settings, ledger, partner):
    _, key = partner
    workers = [create_app({"TESTING": True, "SETTINGS": settings, "LEDGER": ledger,
                           "RATE_LIMIT_PER_MINUTE": 6}) for _ in range(3)]
    clients = [w.test_client() for w in workers]
    codes = [clients[i % 3].get("/v1/budget", headers=bearer(key)).status_code
             for i in range(12)]
    assert codes.count(200) in (6, 7)  # the bucket refills 0.1 per second
    refused = clients[0].get("/v1/budget", headers=bearer(key))
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


# -- security headers -----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/healthz", "/v1/budget", "/nowhere", "/login",
                                  "/transparency", "/web/static/style.css"])
def test_every_response_carries_the_security_headers(client, path):
    with client.get(path) as response:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, name)
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    secure = client.get("/healthz", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    client.application.config["SESSION_COOKIE_SECURE"] = True  # secure_cookies: a TLS proxy
    try:
        assert client.get("/healthz").headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        client.application.config["SESSION_COOKIE_SECURE"] = False


def test_pages_have_no_inline_script_or_style_blocks():
    from pathlib import Path
    import dpquery.web
    for page in (Path(dpquery.web.__file__).parent / "templates").glob("*.html"):
        html = page.read_text()
        assert "<style" not in html, page
        assert "<script>" not in html and " on" + "click=" not in html, page


# -- demo data only for the demo dataset, only when asked ---------------------------

def test_missing_data_stops_start_up_naming_the_dataset(settings, tmp_path, monkeypatch):
    writes = []
    monkeypatch.setattr(server_mod, "_write_demo_elsewhere", lambda *a: writes.append(a))
    ds = dataclasses.replace(settings.datasets["purchases"], path=tmp_path / "purchses")
    broken = dataclasses.replace(settings, datasets={"purchases": ds})
    for demo in (False, True):  # a mistyped path is not the demo location, even with --demo
        with pytest.raises(ConfigError) as err:
            server_mod.check_data(broken, demo=demo)
        assert "datasets.purchases.path" in str(err.value) and "purchses" in str(err.value)
    assert writes == []


def test_demo_data_is_written_only_with_demo_for_the_demo_location(settings, monkeypatch):
    writes = []
    monkeypatch.setattr(server_mod, "_write_demo_elsewhere", lambda *a: writes.append(a))
    demo_path = settings.ledger_path.parent / "demo" / "purchases"
    ds = dataclasses.replace(settings.datasets["purchases"], path=demo_path)
    fresh = dataclasses.replace(settings, datasets={"purchases": ds})
    with pytest.raises(ConfigError, match="--demo"):
        server_mod.check_data(fresh, demo=False)
    server_mod.check_data(fresh, demo=True)
    assert [w[0] for w in writes] == [demo_path]
    other = dataclasses.replace(ds, name="receipts")
    with pytest.raises(ConfigError, match="datasets.receipts.path"):
        server_mod.check_data(dataclasses.replace(fresh, datasets={"receipts": other}), demo=True)


def test_serve_with_a_mistyped_path_stops_and_writes_nothing(tmp_path):
    from server_helpers import free_port, write_config
    config = write_config(tmp_path, data=tmp_path / "data" / "purchses")
    done = subprocess.run([sys.executable, "-m", "dpquery.cli", "--config", str(config), "serve",
                           "--port", str(free_port())], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "datasets.purchases.path" in done.stderr and "purchses" in done.stderr
    assert not (tmp_path / "data").exists()


# -- gunicorn's own refusals in the JSON shape ---------------------------------------

def test_gunicorn_refusals_are_rendered_as_json():
    import json
    from types import SimpleNamespace
    from gunicorn.http.errors import InvalidRequestLine, LimitRequestHeaders, LimitRequestLine
    from dpquery.http.worker import json_response, refusal
    cfg = SimpleNamespace(limit_request_field_size=8190, limit_request_fields=100,
                          limit_request_line=8190)
    cases = {LimitRequestHeaders("x" * 9000): (431, "header_too_large"),
             LimitRequestLine(9000, 8190): (414, "uri_too_long"),
             InvalidRequestLine("secret-ish"): (400, "invalid_request"),
             RuntimeError("bug"): (500, "internal")}
    for exc, (status, code) in cases.items():
        got = refusal(exc, cfg)
        assert got[0] == status and got[2] == code
        raw = json_response(*got)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert json.loads(body)["error"]["code"] == code and b"x" * 20 not in raw
        assert b"secret-ish" not in raw and b"Content-Type: application/json" in head
