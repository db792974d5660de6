"""After-commit work, declared by the code that makes the change (ARCHITECTURE: "after-commit work
is declared, not remembered").

A service that changes something other processes or threads must react to (a publication asked
for, a scan queued) calls :func:`changed` in its transaction; once that transaction commits, the
session factory's ``on_change`` callback runs (the composition root wires it to wake the publisher
and the scanner), and on rollback nothing runs. The work itself is never lost if the process dies
between the commit and the callback: it is an intent row, picked up by the next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("stockade.db")

ON_CHANGE = "stockade.on_change"  # in a session factory's info: the callback
_PENDING = "stockade.after_commit"  # in a session's info: callbacks for this transaction


def set_on_change(factory: sessionmaker[Session], callback: Callable[[], None]) -> None:
    """Sessions of ``factory`` run ``callback`` after a commit that declared a change."""
    if not event.contains(Session, "after_commit", _run):
        event.listen(Session, "after_commit", _run)
        event.listen(Session, "after_rollback", _drop)
    info = factory.kw.setdefault("info", {})
    info[ON_CHANGE] = callback


def changed(session: Session) -> None:
    """Declare that this transaction changes what the background workers act on."""
    callback = session.info.get(ON_CHANGE)
    if callback is not None:
        session.info.setdefault(_PENDING, {})[ON_CHANGE] = callback


def after_commit(session: Session, key: str, callback: Callable[[], None]) -> None:
    """Run ``callback`` once after this session's transaction commits (``key`` deduplicates)."""
    session.info.setdefault(_PENDING, {})[key] = callback


def _run(session: Session) -> None:
    for callback in session.info.pop(_PENDING, {}).values():
        try:
            callback()
        except Exception:  # the commit stands; a failed wake-up only delays the work
            log.exception("after-commit callback failed")


def _drop(session: Session) -> None:
    session.info.pop(_PENDING, None)
