"""The analyst corpus: every query is answered or refused with a reason, none crashes.

tests/fixtures/analyst_corpus.sql holds realistic queries; those after the
`-- refused` line must be refused (with a DPQueryError naming the problem),
the ones before it answered. Any other exception is a crash and fails.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dpquery.engine import catalog, execute, plan as planner
from dpquery.engine.request import parse_body
from dpquery.errors import DPQueryError

LINES = (Path(__file__).parent / "fixtures" / "analyst_corpus.sql").read_text().splitlines()
SPLIT = next(i for i, line in enumerate(LINES) if line.startswith("-- refused"))
ANSWERED = [line for line in LINES[:SPLIT] if line.strip() and not line.startswith("--")]
REFUSED = [line for line in LINES[SPLIT:] if line.strip() and not line.startswith("--")]


def run(sql: str, settings, tables) -> tuple[str, str]:
    """('answered', '') or ('refused', the error's code and message)."""
    try:
        request = parse_body({"sql": sql, "epsilon": 1.0}, datasets=settings.datasets)
        plan = planner.build(request, catalog.check_query(request.query, tables))
        execute.answer_rows(plan, execute.release(plan))
    except DPQueryError as err:
        return "refused", f"{err.code}: {err.message}"
    return "answered", ""


@pytest.fixture(scope="module")
def corpus_results(tmp_path_factory, demo_data):
    from settings_helpers import make_settings
    settings = make_settings(tmp_path_factory.mktemp("corpus"), demo_data)
    tables = {"purchases": catalog.open_table(settings.datasets["purchases"])}
    return {sql: run(sql, settings, tables) for sql in ANSWERED + REFUSED}


def test_corpus_is_large_and_varied():
    assert len(ANSWERED) + len(REFUSED) >= 100
    assert len(REFUSED) >= 30 and len(ANSWERED) >= 60


def test_every_corpus_query_is_answered_or_refused_with_a_reason(corpus_results, capsys):
    counts = Counter(outcome for outcome, _ in corpus_results.values())
    with capsys.disabled():
        print(f"\nanalyst corpus: {counts['answered']} answered, {counts['refused']} refused "
              f"with a reason, of {len(corpus_results)}")
    wrong = [sql for sql in ANSWERED if corpus_results[sql][0] != "answered"]
    assert not wrong, [(sql, corpus_results[sql][1]) for sql in wrong]
    unexplained = [sql for sql in REFUSED if corpus_results[sql][0] != "refused"
                   or len(corpus_results[sql][1]) < 30]
    assert not unexplained
