"""How dpquery finds and opens its ledger: never a silent new one.

The ledger is the SQLite file ``[ledger] path`` or, when set, the PostgreSQL
database ``[ledger] url``. Its id is recorded in ``ledger-id`` in the var
directory (the folder of ``[ledger] path``) the first time this installation
uses it; afterwards a missing ledger, or one with another id, stops start-up
(and makes a running worker answer 503 ``ledger_unavailable``).

A ledger is created only by ``dpquery admin init``, or by the demo's first
``dpquery serve --demo`` (a SQLite ledger, when no file and no id exist yet).
"""
from __future__ import annotations

import time
from pathlib import Path

from budget.errors import LedgerUnavailable
from budget.identity import init_ledger, open_ledger, recorded_id
from budget.ledger import Ledger

IDENTITY_FILE = "ledger-id"
#: How long a worker starting while PostgreSQL restarts keeps trying to reach it.
OPEN_RETRY_SECONDS = 20.0


def location(settings) -> str | Path:
    """The configured ledger: the PostgreSQL URL if set, else the SQLite path."""
    return settings.ledger_url or settings.ledger_path


def identity_file(settings) -> Path:
    return settings.ledger_path.parent / IDENTITY_FILE


def open_configured(settings, retry_seconds: float = OPEN_RETRY_SECONDS) -> Ledger:
    """The existing ledger with this installation's id (``LedgerMissing``/``LedgerMismatch``).

    An unreachable database is retried for ``retry_seconds`` (a worker
    started while PostgreSQL restarts), then ``LedgerUnavailable``.
    """
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            return open_ledger(location(settings), identity_file(settings))
        except LedgerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def init_configured(settings) -> tuple[Ledger, bool]:
    """``dpquery admin init``: create the configured ledger (or open it): (ledger, created)."""
    settings.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    return init_ledger(location(settings), identity_file(settings))


def is_first_start(settings) -> bool:
    """The demo's first start: a SQLite ledger with no file and no id recorded yet."""
    return (settings.ledger_url is None and not settings.ledger_path.exists()
            and recorded_id(identity_file(settings)) is None)
