"""The web console and transparency page through Flask's test client."""
from __future__ import annotations

import csv
import io
import re
from types import SimpleNamespace

import pytest

from budget.amounts import Amount
from dpquery.web import fmt, sessions

from web_helpers import login, post

COUNT_SQL = "SELECT region, COUNT(*) AS purchases FROM purchases GROUP BY region"
QUERY = {"dataset": "purchases", "sql": COUNT_SQL, "mode": "spend", "spend": "0.5",
         "confidence": "0.95", "purpose": "pricing research on healthy eating"}


def ask(client, action="preview", **changes):
    return post(client, "/console/query", "/console", {**QUERY, **changes, "action": action})


def text(response) -> str:
    return response.get_data(as_text=True)


# -- public pages and signing in ----------------------------------------------------------

@pytest.mark.parametrize("url", ["/", "/login", "/transparency"])
def test_public_pages_need_no_login(client, url):
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("url", ["/console", "/console/answers/1", "/console/answers/1.csv", "/admin"])
def test_private_pages_send_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response.location.endswith("/login")


def test_partner_signs_in_and_out(client, stack):
    response = login(client, stack.partner_key)
    assert response.status_code == 302 and response.location.endswith("/console")
    page = text(client.get("/console"))
    assert "IFA Insurance" in page and stack.partner_key not in page
    response = post(client, "/logout", "/console", {})
    assert response.location.endswith("/login")
    assert client.get("/console").status_code == 302


def test_admin_signs_in_to_admin(client, stack):
    assert login(client, stack.admin_key).location.endswith("/admin")
    assert client.get("/admin").status_code == 200
    assert client.get("/console").status_code == 403


def test_partner_cannot_open_admin(client, stack):
    login(client, stack.partner_key)
    assert client.get("/admin").status_code == 403


def test_state_without_ledger_uses_the_services_ledger(stack):
    from flask import Flask
    from dpquery.web import web_bp
    app = Flask(__name__)
    app.secret_key = "test"
    app.extensions["dpquery"] = SimpleNamespace(service=stack.service)
    app.register_blueprint(web_bp)
    client = app.test_client()
    assert login(client, stack.partner_key).location.endswith("/console")
    assert client.get("/console").status_code == 200


def test_a_bad_key_is_refused_without_echoing_it(client):
    wrong = "dpq_000000000000_" + "x" * 43
    response = login(client, wrong)
    assert response.status_code == 401
    assert "not valid" in text(response) and wrong not in text(response)


def test_a_suspended_partner_cannot_sign_in(client, stack):
    stack.ledger.suspend(stack.partner_id, actor="test", reason="audit")
    response = login(client, stack.partner_key)
    assert response.status_code == 403 and "suspended" in text(response)


def test_the_session_holds_the_key_id_never_the_key(app, client, stack):
    login(client, stack.partner_key)
    cookie = client.get_cookie("session").value
    data = app.session_interface.get_signing_serializer(app).loads(cookie)
    assert data["partner_id"] == stack.partner_id and data["role"] == "partner"
    assert stack.partner_key not in repr(data)
    assert data["key_id"] in stack.partner_key


# -- CSRF and expiry -------------------------------------------------------------------

def test_post_without_csrf_token_is_refused(client, stack):
    login(client, stack.partner_key)
    response = client.post("/console/query", data={**QUERY, "action": "run"})
    assert response.status_code == 400 and "Reload the page" in text(response)
    response = client.post("/console/query", data={**QUERY, "action": "run", "csrf_token": "forged"})
    assert response.status_code == 400
    assert stack.ledger.spent(stack.partner_id, "purchases").is_zero()


def test_login_post_without_csrf_token_is_refused(client, stack):
    assert client.post("/login", data={"api_key": stack.partner_key}).status_code == 400


def test_admin_post_without_csrf_token_is_refused(client, stack):
    login(client, stack.admin_key)
    response = client.post(f"/admin/partners/{stack.partner_id}/suspend", data={"reason": "x"})
    assert response.status_code == 400
    assert stack.ledger.get_partner(stack.partner_id).active


def test_idle_session_expires(app, client, stack, monkeypatch):
    app.config["WEB_SESSION_IDLE_SECONDS"] = 60
    login(client, stack.partner_key)
    assert client.get("/console").status_code == 200
    later = sessions.time.time() + 61
    monkeypatch.setattr(sessions, "time", SimpleNamespace(time=lambda: later))
    response = client.get("/console")
    assert response.status_code == 302 and response.location.endswith("/login")
    assert "session expired" in text(client.get("/login"))


def test_activity_keeps_the_session_alive(app, client, stack, monkeypatch):
    app.config["WEB_SESSION_IDLE_SECONDS"] = 60
    login(client, stack.partner_key)
    start = sessions.time.time()
    for step in (50, 100, 150):
        monkeypatch.setattr(sessions, "time", SimpleNamespace(time=lambda s=step: start + s))
        assert client.get("/console").status_code == 200


def test_revoking_the_key_ends_the_session(client, stack):
    login(client, stack.partner_key)
    key_id = stack.partner_key.split("_")[1]
    stack.ledger.revoke_key(key_id, actor="test", reason="leaked")
    assert client.get("/console").status_code == 302


# -- the analyst console -------------------------------------------------------------

def test_console_lists_columns_public_keys_and_budget(client, stack):
    login(client, stack.partner_key)
    page = text(client.get("/console"))
    for expected in ("region", "Washtenaw", "age_band", "amount", "ε 1 left of 1", "Preview (free)"):
        assert expected in page
    assert "customer_id, opted_in" in page  # named as never queryable


def test_preview_is_free_and_shows_cost_and_accuracy(client, stack):
    login(client, stack.partner_key)
    response = ask(client, "preview")
    page = text(response)
    assert response.status_code == 200
    assert "nothing was charged" in page and "ε=0.5" in page and "expected within ±" in page
    assert stack.ledger.spent(stack.partner_id, "purchases").is_zero()


def test_accuracy_target_preview(client, stack):
    login(client, stack.partner_key)
    page = text(ask(client, "preview", mode="accuracy", within="2000", spend=""))
    assert "nothing was charged" in page and "Running this query costs" in page
    capped = text(ask(client, "run", mode="accuracy", within="2000", spend="", at_most="0.0001"))
    assert "your at_most 0.0001" in capped
    assert stack.ledger.spent(stack.partner_id, "purchases").is_zero()


def test_the_console_can_ask_for_the_row_bound_to_be_chosen(client, stack):
    login(client, stack.partner_key)
    assert "Choose the row bound for this query" in text(client.get("/console"))
    response = ask(client, "run", auto_bounds="on")
    assert response.status_code == 302
    page = text(client.get(response.location))
    assert "Row bound chosen for this query:" in page and "rows per customer" in page


def test_run_charges_and_shows_table_chart_and_csv(client, stack):
    login(client, stack.partner_key)
    response = ask(client, "run")
    assert response.status_code == 302
    answer_url = response.location
    page = text(client.get(answer_url))
    assert "Charged ε=0.5" in page and "ε=0.5 remains" in page
    assert page.count('class="bar-plot"') == 12 and 'class="err"' in page
    assert stack.ledger.spent(stack.partner_id, "purchases") == Amount(epsilon=0.5)
    download = client.get(answer_url + ".csv")
    assert download.mimetype == "text/csv" and "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(text(download))))
    assert len(rows) == 12
    assert set(rows[0]) == {"region", "purchases", "purchases_ci_low", "purchases_ci_high"}


def test_repeating_a_query_is_free(client, stack):
    login(client, stack.partner_key)
    first = ask(client, "run").location
    again = ask(client, "run")
    assert again.location == first
    assert "nothing was charged" in text(client.get(again.location))
    assert stack.ledger.spent(stack.partner_id, "purchases") == Amount(epsilon=0.5)


def test_history_reopens_stored_answers(client, stack):
    login(client, stack.partner_key)
    answer_url = ask(client, "run").location
    page = text(client.get("/console"))
    assert answer_url.split("localhost")[-1] in page and "COUNT(*) by region" in page
    assert client.get(answer_url).status_code == 200
    assert stack.ledger.spent(stack.partner_id, "purchases") == Amount(epsilon=0.5)


def test_budget_refusal_shows_the_numbers(client, stack):
    login(client, stack.partner_key)
    ask(client, "run")
    response = ask(client, "run", sql="SELECT age_band, COUNT(*) FROM purchases GROUP BY age_band",
                   spend="0.7")
    page = text(response)
    assert response.status_code == 403
    assert "Not enough privacy budget: this query needs ε=0.7 but only ε=0.5 remains" in page
    assert '"error"' not in page and "budget_exhausted" not in page


def test_sql_errors_are_readable(client, stack):
    login(client, stack.partner_key)
    response = ask(client, "preview", sql="SELECT region, MEDIAN_PRICE(x) FROM purchases GROUP BY region")
    page = text(response)
    assert response.status_code == 400 and "unknown function MEDIAN_PRICE" in page
    assert "Traceback" not in page


def test_a_non_number_spend_is_explained(client, stack):
    login(client, stack.partner_key)
    response = ask(client, "preview", spend="lots")
    assert response.status_code == 400 and "must be a number such as 0.5" in text(response)


def test_an_unapproved_purpose_is_refused(client, stack):
    login(client, stack.partner_key)
    response = ask(client, "run", purpose="marketing")
    assert response.status_code == 400
    assert stack.ledger.spent(stack.partner_id, "purchases").is_zero()


def test_another_partners_answer_is_not_found(app, client, stack):
    login(client, stack.partner_key)
    answer_url = ask(client, "run").location
    _, other_key = stack.ledger.create_partner("Other Co", {"purchases": Amount(epsilon=1)},
                                               actor="test", reason="test")
    other = app.test_client()
    login(other, other_key)
    assert other.get(answer_url).status_code == 404
    assert other.get(answer_url + ".csv").status_code == 404


def test_csv_cells_that_look_like_formulas_are_quoted():
    from dpquery.web.console import answer_to_csv
    out = answer_to_csv({"columns": ["k", "v"], "rows": [{"k": "=cmd()", "v": -1.5}]})
    assert out.splitlines() == ["k,v", "'=cmd(),-1.5"]


# -- the administrator console -----------------------------------------------------------

def admin_client(client, stack):
    login(client, stack.admin_key)
    return client


def test_admin_page_shows_partners_budgets_caps_and_audit(client, stack):
    page = text(admin_client(client, stack).get("/admin"))
    for expected in ("IFA Insurance", "spent ε 0 of 1", "no global cap", "partner created",
                     "pricing research on healthy eating", "Create partner"):
        assert expected in page


def test_admin_raises_a_budget_with_a_reason(client, stack):
    admin_client(client, stack)
    url = f"/admin/partners/{stack.partner_id}/budget"
    refused = post(client, url, "/admin", {"dataset": "purchases", "amount": "3", "reason": ""})
    assert refused.status_code == 400 and "Give a reason" in text(refused)
    done = post(client, url, "/admin", {"dataset": "purchases", "amount": "3", "reason": "study 2"})
    assert done.status_code == 302
    assert stack.ledger.remaining(stack.partner_id, "purchases") == Amount(epsilon=3)
    page = text(client.get("/admin"))
    assert "is now ε=3" in page and "study 2" in page


def test_admin_bad_amount_is_explained(client, stack):
    admin_client(client, stack)
    response = post(client, f"/admin/partners/{stack.partner_id}/budget", "/admin",
                    {"dataset": "purchases", "amount": "-1", "reason": "x"})
    assert response.status_code == 400 and "epsilon must be" in text(response)


def test_admin_suspends_and_resumes(client, stack):
    admin_client(client, stack)
    post(client, f"/admin/partners/{stack.partner_id}/suspend", "/admin", {"reason": "audit"})
    assert not stack.ledger.get_partner(stack.partner_id).active
    post(client, f"/admin/partners/{stack.partner_id}/resume", "/admin", {"reason": "ok"})
    assert stack.ledger.get_partner(stack.partner_id).active


def test_admin_creates_a_partner_and_sees_the_key_once(client, stack):
    admin_client(client, stack)
    response = post(client, "/admin/partners", "/admin", {
        "name": "Acme Health", "purposes": "diet research\nstore planning",
        "budget_purchases": "0.5", "reason": "contract 12"})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    key = csrf_free_key(text(response))
    assert stack.ledger.authenticate(key).partner_id == "acme-health"
    assert key not in text(client.get("/admin"))
    assert stack.ledger.get_partner("acme-health").purposes == ("diet research", "store planning")


def csrf_free_key(page: str) -> str:
    import re
    return re.search(r'id="new-key"[^>]*value="([^"]+)"', page).group(1)


def test_admin_rotates_and_revokes_keys(client, stack):
    admin_client(client, stack)
    page = text(post(client, f"/admin/partners/{stack.partner_id}/keys", "/admin", {}))
    new_key = csrf_free_key(page)
    assert stack.ledger.authenticate(new_key).partner_id == stack.partner_id
    old_id = stack.partner_key.split("_")[1]
    post(client, f"/admin/keys/{old_id}/revoke", "/admin", {"reason": "rotated"})
    assert stack.ledger.authenticate(stack.partner_key) is None
    assert stack.ledger.authenticate(new_key) is not None


def test_admin_sets_a_global_cap(client, stack):
    admin_client(client, stack)
    post(client, "/admin/caps/purchases", "/admin", {"amount": "5", "reason": "board decision"})
    page = text(client.get("/admin"))
    assert "of the global cap ε 5" in page


def test_audit_log_filters(client, stack):
    other_id, _ = stack.ledger.create_partner("Other Co", actor="test", reason="other")
    admin_client(client, stack)
    page = text(client.get(f"/admin?partner={stack.partner_id}"))
    audit = page.split('id="audit-h"')[1].split("<tbody>")[1]
    assert stack.partner_id in audit and other_id not in audit
    page = text(client.get("/admin?since=2999-01-01"))
    assert "No entries match" in page
    page = text(client.get("/admin?since=yesterday"))
    assert "not ISO-8601" in page


# -- the transparency page -------------------------------------------------------------

def test_transparency_explains_policy_partners_and_spend(client, stack):
    login(client, stack.partner_key)
    ask(client, "run")
    page = text(client.get("/transparency"))
    for expected in ("What is never shared", "did not opt in", "pharmacy", "alcohol", "tobacco",
                     "IFA Insurance", "pricing research on healthy eating",
                     "ε 0.5 of its limit 1", "there is no shared limit", "<polyline"):
        assert expected in page


def test_transparency_shows_the_global_cap(client, stack):
    stack.ledger.set_global_cap("purchases", Amount(epsilon=4), actor="test", reason="cap")
    page = text(client.get("/transparency"))
    assert "out of a shared limit of ε 4" in page


def test_transparency_contains_no_data_values(app, client, stack, monkeypatch):
    login(client, stack.partner_key)
    answer_url = ask(client, "run").location
    answer = stack.service.stored_answer(stack.partner_id, int(answer_url.rsplit("/", 1)[1]))
    # the page must not even be able to read answers
    boom = lambda *a, **k: pytest.fail("the transparency page read a stored answer")  # noqa: E731
    monkeypatch.setattr(stack.ledger, "get_answer", boom)
    monkeypatch.setattr(stack.service, "stored_answer", boom)
    public = app.test_client()
    page = text(public.get("/transparency"))
    # chart geometry (viewBox="0 0 1000 1000", coordinates) is layout, not data
    page = re.sub(r'\s(viewBox|x|y|x1|x2|y1|y2|width|height|points|d|cx|cy|r)="[^"]*"', "", page)
    released = [v for row in answer["rows"] for k, v in row.items() if isinstance(v, float)]
    for value in released:
        if abs(value) >= 1000:  # smaller numbers also occur in dates and configuration
            for shown in (fmt.number(value), f"{value:.0f}", repr(value)):
                assert shown not in page, f"data value {shown} on the public page"
    assert "COUNT(*)" not in page  # partners' query texts stay between them and ShopSense
