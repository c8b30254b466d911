"""Which ledger an installation uses: opened only if it exists and is the expected one.

A ledger gets a random id when it is created (stored in its ``ledger_meta``
table). The installation records that id in an *identity file* (for dpquery,
``ledger-id`` in the var directory) the first time it uses the ledger. From
then on:

* a missing or uninitialised ledger is an error (``LedgerMissing``), never a
  silent new, empty one: every key and all spending history would be lost;
* a ledger with another id (a swapped file, another database) is an error
  (``LedgerMismatch``).

Only :func:`init_ledger` (``dpquery admin init``, or the demo's first start)
creates a ledger.
"""

from __future__ import annotations

import os
from pathlib import Path

from budget.errors import LedgerMismatch, LedgerMissing
from budget.ledger import Ledger
from budget.store import describe

PathLike = str | os.PathLike[str]


def recorded_id(identity_file: PathLike | None) -> str | None:
    """The ledger id an installation recorded, or None if it never used one."""
    if identity_file is None:
        return None
    try:
        return Path(identity_file).read_text().strip() or None
    except FileNotFoundError:
        return None


def record_id(identity_file: PathLike, ledger_id: str) -> None:
    """Record ``ledger_id`` (atomically: the first writer wins; a different one is refused)."""
    path = Path(identity_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(ledger_id + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    if recorded_id(path) != ledger_id:
        raise LedgerMismatch(f"{path} already records ledger {recorded_id(path)!r}, "
                             f"not {ledger_id}; remove it to record another ledger")


def open_ledger(location: PathLike, identity_file: PathLike | None = None) -> Ledger:
    """Open an existing, initialised ledger whose id matches the recorded one.

    With no id recorded yet (an installation's first use of an existing
    ledger, or one made before ids existed) the ledger's id is recorded.
    Raises ``LedgerMissing``, ``LedgerMismatch`` or ``LedgerUnavailable``.
    """
    try:
        ledger = Ledger(location, create=False)
    except LedgerMissing as exc:
        expected = recorded_id(identity_file)
        if expected is None:
            raise
        raise LedgerMissing(describe(location), f"this installation's ledger {expected} "
                            f"(recorded in {identity_file}) is gone") from exc
    try:
        if identity_file is not None:
            _check(identity_file, ledger.ledger_id, describe(location))
    except BaseException:
        ledger.close()
        raise
    return ledger


def init_ledger(location: PathLike, identity_file: PathLike | None = None) -> tuple[Ledger, bool]:
    """Create the ledger (schema and id) and record its id: ``(ledger, created)``.

    An existing ledger is opened instead (``created`` False) when it is the
    recorded one or none is recorded. Refused when the installation recorded
    another ledger: starting over must be deliberate (remove the identity file).
    """
    expected = recorded_id(identity_file)
    try:
        return open_ledger(location, identity_file), False
    except LedgerMissing:
        if expected is not None:
            raise LedgerMismatch(
                f"{identity_file} records ledger {expected}, which is not at "
                f"{describe(location)}; restore that ledger, or remove {identity_file} to "
                f"start a new, empty ledger on purpose") from None
    ledger = Ledger(location, create=True)
    if identity_file is not None:
        record_id(identity_file, ledger.ledger_id)
    return ledger, True


def _check(identity_file: PathLike, ledger_id: str, where: str) -> None:
    expected = recorded_id(identity_file)
    if expected is None:
        record_id(identity_file, ledger_id)
    elif expected != ledger_id:
        raise LedgerMismatch(
            f"the ledger at {where} is ledger {ledger_id}, but {identity_file} records "
            f"ledger {expected}: this is not the ledger this installation used. Point the "
            f"configuration at the right ledger (or remove {identity_file} if this one is "
            f"meant to replace it)")

