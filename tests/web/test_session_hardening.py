"""Web sessions end on the server, sign-ins are throttled, cookies can be Secure."""
from __future__ import annotations

from web_helpers import csrf_of, login, post


def test_logout_ends_the_session_for_a_copied_cookie(app, stack):
    victim, thief = app.test_client(), app.test_client()
    login(victim, stack.partner_key)
    cookie = victim.get_cookie("session")
    thief.set_cookie("session", cookie.value)
    assert thief.get("/console").status_code == 200  # the copy works while signed in
    assert post(victim, "/logout", "/console", {}).location.endswith("/login")
    response = thief.get("/console")
    assert response.status_code == 302 and response.location.endswith("/login")


def test_a_cookie_from_before_logout_cannot_be_replayed_by_the_same_browser(client, stack):
    login(client, stack.partner_key)
    old = client.get_cookie("session").value
    post(client, "/logout", "/console", {})
    client.set_cookie("session", old)
    assert client.get("/console").status_code == 302


def _attempt(client, key: str):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"api_key": key, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": client.address})


def _client(app, address: str):
    client = app.test_client()
    client.address = address
    return client


def test_failed_sign_ins_for_one_key_id_lock_that_key_out(app, stack):
    key_id = stack.partner_key.split("_")[1]
    wrong = f"dpq_{key_id}_" + "x" * 43
    for i in range(5):  # login_failures_per_key, from different addresses
        assert _attempt(_client(app, f"10.0.0.{i}"), wrong).status_code == 401
    locked = _attempt(_client(app, "10.0.1.1"), stack.partner_key)
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 900
    body = locked.get_data(as_text=True)
    assert "Too many failed sign-ins" in body and stack.partner_key not in body
    other = _attempt(_client(app, "10.0.1.1"), stack.admin_key)  # another key still signs in
    assert other.status_code == 302


def test_failed_sign_ins_from_one_address_lock_it_out(app, stack):
    client = _client(app, "10.9.9.9")
    for i in range(20):  # login_failures_per_ip, each for a different key id
        assert _attempt(client, f"dpq_{i:012x}_" + "y" * 43).status_code == 401
    assert _attempt(client, stack.partner_key).status_code == 429
    assert _attempt(_client(app, "10.9.9.8"), stack.partner_key).status_code == 302


def test_session_cookie_is_secure_when_configured(stack):
    from dpquery.http.app import create_app
    import dataclasses
    settings = stack.service.settings
    secure = dataclasses.replace(settings, server={**settings.server, "secure_cookies": True})
    app = create_app({"TESTING": True, "SETTINGS": secure, "LEDGER": stack.ledger})
    client = app.test_client()
    response = login(client, stack.partner_key)
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    plain = create_app({"TESTING": True, "SETTINGS": settings, "LEDGER": stack.ledger})
    assert "Secure" not in login(plain.test_client(), stack.partner_key).headers["Set-Cookie"]
