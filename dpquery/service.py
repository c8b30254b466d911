"""The query pipeline, in one readable place.

    parse -> policy check -> plan -> cache lookup -> ledger.reserve
          -> execute (noise) -> ledger.commit + store answer -> answer

`preview` stops after plan. Nothing here knows about HTTP: api.py, cli.py and
the web console all call these methods.
"""
from __future__ import annotations

import hashlib
import math
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction

from budget.amounts import Amount
from budget.ledger import Ledger
from dpquery import derive
from dpquery.engine import accuracy_plan, autobound, catalog, execute, plan as planner, postprocess
from dpquery.config import Settings
from dpquery.deadline import call_within
from dpquery.errors import IdempotencyConflict, NotFound, QueryInterrupted
from dpquery.ledger_access import open_configured
from dpquery.ledger_errors import map_ledger_errors
from dpquery.engine.query import Request, canonical
from dpquery.engine.request import parse_body
from dpquery.present import amount_json, exact, remaining_json, spend_amount
from dpquery.spend import aggregate_shares, exact_cost, statistic_shares

REPEAT_WAIT_SECONDS = 30.0


@dataclass
class Service:
    """Tables opened once per process (data is not reloaded per query)."""

    settings: Settings
    ledger: Ledger
    tables: dict

    @classmethod
    def open(cls, settings: Settings, ledger: Ledger | None = None) -> "Service":
        tables = {name: catalog.open_table(ds, settings.prepared_dir, settings.engine)
                  for name, ds in settings.datasets.items()}
        return cls(settings, ledger or open_configured(settings), tables)

    # -- reading ----------------------------------------------------------------

    def datasets(self) -> list[dict]:
        return [catalog.describe(t) for t in self.tables.values()]

    def parse(self, body) -> Request:
        """Body -> request, refused with a clear error before any data is read."""
        return parse_body(body, max_sql_chars=self.settings.server["max_sql_chars"],
                          datasets=self.settings.datasets)

    def preview(self, body) -> dict:
        """Spend and expected accuracy of a query. Reads no data, charges nothing."""
        _may_derive, body = derive.option(body)
        request = self.parse(body)
        plan = planner.build(request, catalog.check_query(request.query, self.tables))
        return _describe_plan(plan)

    # -- answering --------------------------------------------------------------

    def run(self, partner_id: str, body, idempotency_key: str | None = None,
            purpose: str | None = None) -> dict:
        """Answer a partner's query, charging the ledger before any noise is drawn.

        Privacy contract: if two datasets differ in one customer, the answer is
        ε-DP with ε = the amount charged (ρ-zCDP on zCDP datasets). A repeat of
        the same canonical query on the same data version returns the stored
        answer and charges nothing, so asking again cannot average noise away.
        """
        may_derive, body = derive.option(body)
        request = self.parse(body)
        table = catalog.check_query(request.query, self.tables)
        plan = planner.build(request, table)
        query_text, cache_id = identify(request, table)
        request_id = f"k-{idempotency_key}" if idempotency_key else cache_id
        with map_ledger_errors():
            stored = self._stored(partner_id, request_id, query_text)
            if stored is not None:
                return self._as_repeat(stored, partner_id, table.name)
            actor = f"partner:{partner_id}" + (f" purpose:{purpose}" if purpose else "")
            derived = derive.find(self.ledger, partner_id, request, table, plan,
                                  _describe_plan) if may_derive and plan.auto is None else None
            if derived is not None:
                return self._derived(derived, partner_id, table, (request_id, query_text,
                                                                  cache_id), actor)
            reservation = self.ledger.reserve(partner_id, table.name, _amount(plan),
                                              request_id, query_text, actor=actor)
            if reservation.replayed:
                return self._as_repeat(self._wait_for_answer(reservation),
                                       partner_id, table.name)
        return self._release(plan, reservation, partner_id, cache_id)

    def _derived(self, answer: dict, partner_id: str, table, ids: tuple, actor: str) -> dict:
        """Record a derived answer (derive.py) as a zero-cost reservation holding it:
        no noise is drawn and the partner's spend does not change."""
        request_id, query_text, cache_id = ids
        sources = ",".join(str(i) for i in answer["derived_from"])
        reservation = self.ledger.reserve(partner_id, table.name, Amount(), request_id,
                                          query_text, actor=f"{actor} derived-from:{sources}"[:200])
        if reservation.replayed:
            return self._as_repeat(self._wait_for_answer(reservation), partner_id, table.name)
        answer.update(data_version=table.version, query_id=reservation.id,
                      request_id=reservation.request_id, cache_id=cache_id, repeat=False)
        self.ledger.commit(reservation.id, json.dumps(answer))
        answer["remaining"] = self._remaining(partner_id, table.name)
        answer["charged"] = answer["cost"]
        return answer

    def _release(self, plan, reservation, partner_id: str, cache_id: str) -> dict:
        try:
            # noise is drawn here: the charge stays from now on, also past the deadline
            answer = call_within(self.settings.server["query_timeout_seconds"],
                                 release_answer, plan)
            answer.update(data_version=plan.table.version,
                          query_id=reservation.id, request_id=reservation.request_id,
                          cache_id=cache_id, repeat=False)
        except BaseException:
            self.ledger.commit(reservation.id)  # charged, with no answer: retries are told so
            raise
        with map_ledger_errors():
            self.ledger.commit(reservation.id, json.dumps(answer))
            answer["remaining"] = self._remaining(partner_id, plan.table.name, _amount(plan))
        answer["charged"] = answer["cost"]
        return answer

    def _stored(self, partner_id: str, request_id: str, query_text: str):
        """A committed answer to this canonical query (under any request id), if any."""
        reservation = self.ledger.get_reservation(partner_id, request_id)
        if reservation is not None and reservation.query_text != query_text:
            raise IdempotencyConflict("this Idempotency-Key was already used for a "
                                      "different query; use a new key for a new query")
        return self.ledger.find_answer(partner_id, query_text)

    def _wait_for_answer(self, reservation) -> str:
        """An identical request was charged before: wait for its answer, or say it is lost."""
        deadline = time.monotonic() + REPEAT_WAIT_SECONDS
        while time.monotonic() < deadline:
            current = self.ledger.get_reservation(reservation.partner_id, reservation.request_id)
            stored = self.ledger.get_answer(reservation.partner_id, reservation.request_id)
            if stored is not None:
                return stored
            if current.status == "COMMITTED" or self._abandoned(current):
                break
            time.sleep(0.05)
        raise QueryInterrupted(
            "an earlier identical request was interrupted after it was charged; its charge "
            "stays and its answer was not kept. Send it again with a new Idempotency-Key, "
            "or rephrase it, to be answered (and charged) afresh")

    def _abandoned(self, reservation) -> bool:
        """A hold older than any query may run belongs to a process that died."""
        limit = self.settings.server["query_timeout_seconds"] + 30
        started = datetime.fromisoformat(reservation.created_at)
        return (datetime.now(timezone.utc) - started).total_seconds() > limit

    def _as_repeat(self, stored: str, partner_id: str, dataset: str) -> dict:
        answer = json.loads(stored)
        answer.update(repeat=True, charged=amount_json(Amount()),
                      remaining=self._remaining(partner_id, dataset, _cost_of(answer)))
        return answer

    def _remaining(self, partner_id: str, dataset: str, spend: Amount | None = None) -> dict:
        """What remains (the global cap included), its limit, and how many more such queries fit."""
        rows = [b for b in self.ledger.budget_summary(partner_id) if b.dataset == dataset]
        return remaining_json(rows[0], spend) if rows else amount_json(Amount())

    # -- history ----------------------------------------------------------------

    def history(self, partner_id: str) -> list[dict]:
        with map_ledger_errors():
            rows = self.ledger.reservations(partner_id)
        return [_summary(r) for r in rows]

    def stored_answer(self, partner_id: str, query_id: int) -> dict:
        """A partner's own stored answer; another partner's is reported as not found."""
        with map_ledger_errors():
            for r in self.ledger.reservations(partner_id):
                if r.id == query_id:
                    stored = self.ledger.get_answer(partner_id, r.request_id)
                    if stored is not None:
                        return json.loads(stored)
        raise NotFound(f"no stored answer with id {query_id}")


def describe_plan(plan) -> dict:
    """What a plan promises (spend, noise, expected accuracy): no data is read."""
    return _describe_plan(plan)


def release_answer(plan) -> dict:
    """Draw the plan's noise and build the answer: rows first, then the plan.

    Privacy contract: as `execute.release`; the caller has charged the plan's
    cost (the CLI's --local mode is data-owner use with no ledger).
    """
    chosen = None
    if plan.auto is not None:  # "bounds": "auto": stage 1's noise chooses the row bound
        cost = exact_cost(plan)
        plan, chosen = autobound.release(plan)
        spent = spend_amount(plan.measure, cost * exact(plan.table.dataset.auto_share))
        chosen = {**chosen, "spend": amount_json(spent)}
    noisy = execute.release(plan)
    answer = {"rows": execute.answer_rows(plan, noisy), **_describe_plan(plan)}
    parts = derive.released_parts(plan, noisy)
    if parts is not None:  # a ratio's released numerators and denominators (derive.py)
        answer["released_parts"] = parts
    if chosen is not None:
        answer["auto_bounds"] = chosen
    report = execute.bounding_report(plan)
    if report is not None:
        spent = exact_cost(plan) * exact(planner.REPORT_SHARE)
        answer["bounding"] = {**report, "spend": amount_json(spend_amount(plan.measure, spent))}
    return answer


def identify(request: Request, table) -> tuple[str, str]:
    """(ledger query text, cache id): the canonical query on this data version."""
    text = f"{canonical(request)}|{table.version}"
    return text, "q-" + hashlib.sha256(text.encode()).hexdigest()[:32]


present_amount = amount_json  # the exact JSON form of an amount (dpquery.present)


def _amount(plan) -> Amount:
    """What the ledger charges: the stated spend, plus the configured δ for private keys."""
    return spend_amount(plan.measure, plan.cost, plan.delta)


def _cost_of(answer: dict) -> Amount | None:
    """A stored answer's cost as an Amount (None for answers stored before exact costs)."""
    cost = answer.get("cost") or {}
    try:
        return Amount(**{k: Fraction(cost[k]) for k in ("epsilon", "delta", "rho") if k in cost})
    except (TypeError, ValueError):
        return None


def _summary(r) -> dict:
    text, _, version = r.query_text.rpartition("|")
    return {"query_id": r.id, "request_id": r.request_id, "dataset": r.dataset,
            "status": r.status, "amount": r.amount.to_json(), "created_at": r.created_at,
            "request": json.loads(text) if text.startswith("{") else text,
            "data_version": version}


def _describe_plan(plan) -> dict:
    """What a plan promises: public quantities only (no data was read)."""
    ds = plan.table.dataset
    request = plan.request
    return {
        "dataset": ds.name,
        "cost": amount_json(_amount(plan)),
        "confidence": request.confidence,
        "group_by": list(request.query.group_by),
        "columns": _columns(request),
        "aggregates": [_aggregate_info(plan, a) for a in request.query.aggregates],
        "bounds": {"rows_per_customer": "auto" if plan.auto is not None else ds.rows_per_customer,
                   "groups_per_customer": catalog.groups_bound(ds, request.query.group_by)},
        "notes": plan.notes,
    }


def _columns(request: Request) -> list[str]:
    return postprocess.output_columns(request.query)


def _noise_entry(plan, sp, exact: dict) -> dict:
    """One released statistic's public noise law; a ratio's numerator also says what
    its values were summed minus (`center`: value = center + numerator / denominator)."""
    entry = {"statistic": sp.stat.role, "mechanism": sp.distribution,
             "scale": float(f"{sp.scale:.6g}"),
             "spend": amount_json(spend_amount(plan.measure, exact[sp.stat.column]))}
    if sp.stat.role == "num":
        entry["center"] = sp.stat.center
    return entry


def _aggregate_info(plan, agg) -> dict:
    stats = [sp for sp in plan.stats if sp.stat.aggregate == agg.alias]
    exact = statistic_shares(plan)
    info = {"alias": agg.alias, "kind": agg.kind, "weight": agg.weight,
            "spend": amount_json(spend_amount(plan.measure, aggregate_shares(plan)[agg.alias])),
            "noise": [_noise_entry(plan, sp, exact) for sp in stats]}
    if agg.column is not None and plan.table.column(agg.column).lower is not None:
        col = plan.table.column(agg.column)
        info["clamp"] = [col.lower, col.upper]
    if agg.kind != "quantile":
        assumed = getattr(plan.request.budget, "assumed_group_size", None)
        width = accuracy_plan.expected_halfwidth(plan, agg.alias, assumed)
        info["expected_halfwidth"] = width if math.isfinite(width) else None
        if agg.kind in planner.RATIOS:
            info["expected_halfwidth_for_group_size"] = accuracy_plan.group_size(agg.kind, assumed)
    return info
