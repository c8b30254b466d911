"""The analyst console: write a query, preview its spend, run it, read answers."""
from __future__ import annotations

import csv
import io

from flask import Response, flash, g, redirect, render_template, request, url_for

from dpquery.errors import DPQueryError, InvalidRequest
from dpquery.web import charts, fmt
from dpquery.web.blueprint import web_bp
from dpquery.web.sessions import deps, require
from dpquery.web.views import failure

CONFIDENCES = ("0.9", "0.95", "0.99")
HISTORY_ROWS = 50


@web_bp.get("/console")
@require("partner")
def console():
    return _page(_form_defaults())


@web_bp.post("/console/query")
@require("partner")
def console_query():
    form = {k: request.form.get(k, "").strip() for k in _form_defaults()}
    action = request.form.get("action", "preview")
    try:
        body, purpose = _body(form), _purpose(form)
        if action == "run":
            answer = deps().service.run(g.user.partner_id, body, purpose=purpose)
            flash(_charged_text(answer), "success")
            return redirect(url_for("web.answer", query_id=answer["query_id"]))
        return _page(form, preview=deps().service.preview(body))
    except DPQueryError as err:
        return _page(form, error=err), err.status
    except Exception:  # a bug: say so, log it, never show a traceback
        return _page(form, error=failure()), 500


@web_bp.get("/console/answers/<int:query_id>")
@require("partner")
def answer(query_id: int):
    try:
        stored = deps().service.stored_answer(g.user.partner_id, query_id)
    except DPQueryError as err:
        return render_template("error.html", title="Answer not found",
                               message=fmt.error_message(err)), err.status
    charts_ = [charts.bar_chart(stored, a["alias"]) for a in stored.get("aggregates", [])]
    return render_template("answer.html", answer=stored, query_id=query_id, charts=charts_,
                           budgets=_budgets())


@web_bp.get("/console/answers/<int:query_id>.csv")
@require("partner")
def answer_csv(query_id: int):
    try:
        stored = deps().service.stored_answer(g.user.partner_id, query_id)
    except DPQueryError as err:
        return Response(fmt.error_message(err) + "\n", status=err.status, mimetype="text/plain")
    return Response(answer_to_csv(stored), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="dpquery-answer-{query_id}.csv"'})


def answer_to_csv(answer: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = answer.get("columns", [])
    writer.writerow(columns)
    for row in answer.get("rows", []):
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def _cell(value):
    """Text that a spreadsheet would run as a formula is quoted with a leading '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


# -- the page -----------------------------------------------------------------------

def _form_defaults() -> dict:
    datasets = deps().service.datasets()
    first = datasets[0] if datasets else None
    return {"dataset": first["name"] if first else "", "sql": example_sql(first)[0][1] if first else "",
            "mode": "spend", "auto_bounds": "",
            "spend": "0.5", "within": "", "at_most": "", "confidence": "0.95", "purpose": ""}


def _page(form: dict, preview: dict | None = None, error: DPQueryError | None = None) -> str:
    service, user = deps().service, g.user
    datasets = service.datasets()
    chosen = next((d for d in datasets if d["name"] == form.get("dataset")), datasets[0])
    partner = deps().ledger.get_partner(user.partner_id)
    history = list(reversed(service.history(user.partner_id)))[:HISTORY_ROWS]
    return render_template(
        "console.html", form=form, datasets=datasets, chosen=chosen, preview=preview,
        error=fmt.error_message(error) if error else None, error_code=error and error.code,
        budgets=_budgets(), history=history, partner=partner, confidences=CONFIDENCES,
        examples={d["name"]: example_sql(d) for d in datasets},
        symbol=fmt.SYMBOLS[fmt.component(chosen["measure"])])


def _budgets() -> list[dict]:
    """Each dataset's budget as gauge data (the partner's own numbers only)."""
    measures = {d["name"]: d["measure"] for d in deps().service.datasets()}
    out = []
    for b in deps().ledger.budget_summary(g.user.partner_id):
        name = fmt.component(measures.get(b.dataset, "pure"))
        left = b.remaining.components()[name]
        if b.global_cap is not None:  # the shared cap may leave less than the own budget
            left = min(left, b.global_cap.saturating_sub(b.global_spent).components()[name])
        out.append({"dataset": b.dataset, "symbol": fmt.SYMBOLS[name],
                    "budget": fmt.amount_number(b.budget.components()[name]),
                    "spent": fmt.amount_number(b.spent.components()[name]),
                    "remaining": fmt.amount_number(left),
                    "capped": left < b.remaining.components()[name],
                    "gauge": charts.gauge(fmt.ratio(left, b.budget.components()[name]))})
    return out


def example_sql(dataset: dict) -> list[tuple[str, str]]:
    """Starter queries built from the dataset's public columns."""
    name = dataset["name"]
    keys = [c for c in dataset.get("columns", []) if c.get("values")]
    numbers = [c for c in dataset.get("columns", []) if c.get("bounds")]
    key = keys[0]["name"] if keys else None
    out = [("Suggested query", dataset["example_sql"])] if dataset.get("example_sql") else []
    out += [("Count rows per group",
            f"SELECT {key}, COUNT(*) AS n FROM {name} GROUP BY {key}" if key
            else f"SELECT COUNT(*) AS n FROM {name}")]
    if key and numbers:
        out.append(("Average of a number per group",
                    f"SELECT {key}, AVG({numbers[0]['name']}) AS avg_{numbers[0]['name']} "
                    f"FROM {name} GROUP BY {key}"))
    if key:
        out.append(("Distinct customers per group",
                    f"SELECT {key}, COUNT(DISTINCT {dataset['privacy_unit']}) "
                    f"AS customers FROM {name} GROUP BY {key}"))
    return out


# -- the request ----------------------------------------------------------------------

def _body(form: dict) -> dict:
    datasets = {d["name"]: d for d in deps().service.datasets()}
    measure = datasets.get(form["dataset"], {}).get("measure", "pure")
    if not form["sql"]:
        raise InvalidRequest("Write a query first, e.g. one of the examples below the editor.")
    confidence = _number(form["confidence"] or "0.95", "Confidence")
    if form["mode"] == "accuracy":
        within = _number(form["within"], "The accuracy target (“within”)")
        target = {"within": within, "confidence": confidence}
        if form["at_most"]:
            target["at_most"] = _number(form["at_most"], "The most to spend")
        return {"sql": form["sql"], "confidence": confidence, "accuracy": target}
    name = fmt.component(measure)
    body = {"sql": form["sql"], "confidence": confidence,
            name: _number(form["spend"], f"The privacy spend ({fmt.SYMBOLS[name]})")}
    if form.get("auto_bounds") == "on":
        body["bounds"] = "auto"
    return body


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidRequest(f"{what} must be a number such as 0.5; got “{text}”.") from None


def _purpose(form: dict) -> str | None:
    approved = deps().ledger.get_partner(g.user.partner_id).purposes
    if form["purpose"] and form["purpose"] not in approved:
        raise InvalidRequest("Choose one of your organisation's approved purposes.")
    return form["purpose"] or None


def _charged_text(answer: dict) -> str:
    name = fmt.measure_of(answer.get("cost"))
    left = fmt.amount(answer.get("remaining", {}), name)
    if answer.get("repeat"):
        return f"You asked this before: here is the stored answer, nothing was charged. {left} remains."
    return f"Charged {fmt.amount(answer['charged'], name)}. {left} remains on {answer['dataset']}."
