"""After-commit work runs once after a commit that declared a change, never after a rollback."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from stockade.db.unit_of_work import after_commit, changed, set_on_change


def _factory(calls: list[str]) -> sessionmaker[Session]:
    factory = sessionmaker(bind=create_engine("sqlite://"))
    set_on_change(factory, lambda: calls.append("changed"))
    return factory


def test_declared_changes_wake_once_after_commit() -> None:
    calls: list[str] = []
    factory = _factory(calls)
    with factory() as session, session.begin():
        session.execute(text("SELECT 1"))
        changed(session)
        changed(session)  # declared twice, run once
        after_commit(session, "other", lambda: calls.append("other"))
        assert calls == []  # not before the commit
    assert calls == ["changed", "other"]
    with factory() as session, session.begin():
        session.execute(text("SELECT 1"))
    assert calls == ["changed", "other"]  # nothing declared: nothing runs


def test_a_rollback_runs_nothing() -> None:
    calls: list[str] = []
    factory = _factory(calls)

    def failing_transaction() -> None:
        with factory() as session, session.begin():
            changed(session)
            raise RuntimeError("the transaction fails")

    with pytest.raises(RuntimeError):
        failing_transaction()
    with factory() as session, session.begin():
        session.execute(text("SELECT 1"))
    assert calls == []


def test_a_failing_callback_does_not_undo_the_commit() -> None:
    factory = sessionmaker(bind=create_engine("sqlite://"))

    def boom() -> None:
        raise RuntimeError("the wake-up failed")

    set_on_change(factory, boom)
    with factory() as session, session.begin():
        changed(session)
    # no exception escaped: the commit stands
