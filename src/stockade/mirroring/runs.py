"""Mirror runs as rows: ask for one, stop it, read it; and the lease a worker holds while running.

The queue only carries run ids. Everything else (state, progress, counts, log) is here, so any
replica can answer for any run, and a run outlives the worker that started it: a worker takes a
run with one conditional update (``claim``), renews its lease with each ``heartbeat``, and a run
whose heartbeat went stale is taken over by the next worker that claims it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.core.clock import utcnow
from stockade.core.cron import log_bad_schedule
from stockade.core.errors import AuthenticationError
from stockade.core.secrets import SecretBox
from stockade.mirroring.errors import (
    MirrorNotFoundError,
    RunActiveError,
    RunFinishedError,
    RunNotFoundError,
)
from stockade.mirroring.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    Mirror,
    MirrorRun,
    MirrorRunLog,
    RunState,
)
from stockade.mirroring.service import MirrorService, next_run, not_visible

LOG_PAGE = 500

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogLine:
    level: str
    message: str
    at: datetime


class RunService:
    def __init__(self, session: Session, secrets: SecretBox) -> None:
        self.session = session
        self.mirrors = MirrorService(session, secrets)

    # ------------------------------------------------------------------------- asked by users

    def request(self, principal: Principal, mirror_name: str) -> MirrorRun:
        """A new pending run (the caller enqueues its id after commit); 409 if one is active."""
        mirror = self.mirrors.get(principal, mirror_name, Permission.MIRROR_WRITE)
        run = self.create(mirror, trigger="manual", requested_by=principal.user_id)
        AuditLog(self.session).record(
            "mirror.run",
            principal,
            Target("mirror", mirror.name, mirror.id),
            details={"run": run.id},
        )
        return run

    def create(self, mirror: Mirror, *, trigger: str, requested_by: int | None = None) -> MirrorRun:
        active = self.active_run(mirror.id)
        if active is not None:
            raise RunActiveError(
                f"mirror {mirror.name!r} already has run {active.id} {active.state}",
                run=active.id,
            )
        run = MirrorRun(
            mirror_id=mirror.id,
            state=RunState.PENDING.value,
            trigger=trigger,
            requested_by_id=requested_by,
            counts={},
            steps=[],
        )
        self.session.flush()  # what came before, outside the savepoint
        try:
            # Added inside the savepoint: begin_nested() flushes pending rows first, and a
            # duplicate must roll back only the savepoint (PostgreSQL aborts the transaction).
            with self.session.begin_nested():
                self.session.add(run)
                self.session.flush()
        except IntegrityError:  # another request made one at the same moment
            winner = self.active_run(mirror.id)
            if winner is None:
                raise RunActiveError(
                    f"mirror {mirror.name!r} already has a run in progress"
                ) from None
            raise RunActiveError(
                f"mirror {mirror.name!r} already has run {winner.id} {winner.state}", run=winner.id
            ) from None
        return run

    def stop(self, principal: Principal, run_id: int) -> MirrorRun:
        """Stop a pending run at once; ask a running one to stop before its next step that
        changes anything (it ends ``stopped`` with nothing applied)."""
        run = self._visible(principal, run_id, Permission.MIRROR_WRITE)
        if run.state in FINAL_STATES:
            raise RunFinishedError(f"run {run_id} already ended ({run.state})")
        values: dict[str, Any] = {"stop_requested": True}
        if run.state == RunState.PENDING:
            values.update(
                state=RunState.STOPPED.value,
                finished_at=utcnow(),
                summary="stopped before it started",
            )
        # Conditional on the state read: a run that moved on meanwhile is not marked.
        marked = self.session.execute(
            update(MirrorRun)
            .where(MirrorRun.id == run.id, MirrorRun.state == run.state)
            .values(**values)
        ).rowcount  # type: ignore[attr-defined]
        self.session.refresh(run)
        if not marked:
            if run.state in FINAL_STATES:
                raise RunFinishedError(f"run {run_id} already ended ({run.state})")
            return self.stop(principal, run_id)  # pending became running: ask again
        mirror = self.session.get(Mirror, run.mirror_id)
        AuditLog(self.session).record(
            "mirror.stop",
            principal,
            Target("mirror", mirror.name if mirror else None, run.mirror_id),
            details={"run": run.id},
        )
        return run

    def get(self, principal: Principal, run_id: int) -> MirrorRun:
        return self._visible(principal, run_id, Permission.MIRROR_READ)

    def list_runs(
        self,
        principal: Principal,
        mirror_name: str,
        *,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[MirrorRun]:
        mirror = self.mirrors.get(principal, mirror_name, Permission.MIRROR_READ)
        query = select(MirrorRun).where(MirrorRun.mirror_id == mirror.id)
        if before_id:
            query = query.where(MirrorRun.id < before_id)
        return list(self.session.scalars(query.order_by(MirrorRun.id.desc()).limit(limit)).all())

    def logs(
        self, principal: Principal, run_id: int, *, after_id: int = 0, limit: int = LOG_PAGE
    ) -> list[MirrorRunLog]:
        run = self._visible(principal, run_id, Permission.MIRROR_READ)
        return list(
            self.session.scalars(
                select(MirrorRunLog)
                .where(MirrorRunLog.run_id == run.id, MirrorRunLog.id > after_id)
                .order_by(MirrorRunLog.id)
                .limit(limit)
            ).all()
        )

    def active_run(self, mirror_id: int) -> MirrorRun | None:
        return self.session.scalar(
            select(MirrorRun).where(
                MirrorRun.mirror_id == mirror_id, MirrorRun.state.in_(ACTIVE_STATES)
            )
        )

    def _visible(self, principal: Principal, run_id: int, permission: Permission) -> MirrorRun:
        """The run, if ``principal`` may do ``permission`` on its mirror. A run of a mirror you
        cannot see looks like one that does not exist: 401 anonymous, 404 signed in (run ids
        are sequential: any difference would list the hidden ones)."""
        run = self.session.get(MirrorRun, run_id)
        mirror = self.session.get(Mirror, run.mirror_id) if run is not None else None
        if run is not None and mirror is not None:
            try:
                self.mirrors.get(principal, mirror.name, permission)
                return run
            except (MirrorNotFoundError, AuthenticationError):
                pass
        raise not_visible(principal, f"run {run_id}", RunNotFoundError)


# ------------------------------------------------------------------------------ used by workers


def _update_held(run_id: int, owner: str, *more: ColumnElement[bool]) -> Update:
    """An update of the run that applies only while ``owner`` holds it running."""
    return update(MirrorRun).where(
        MirrorRun.id == run_id,
        MirrorRun.lease_owner == owner,
        MirrorRun.state == RunState.RUNNING.value,
        *more,
    )


def _silent_running(since: datetime) -> ColumnElement[bool]:
    """A running run whose worker has not sent a heartbeat since ``since`` (or never)."""
    return and_(
        MirrorRun.state == RunState.RUNNING.value,
        or_(MirrorRun.heartbeat_at.is_(None), MirrorRun.heartbeat_at < since),
    )


def claim(session: Session, run_id: int, owner: str, *, stale_after: timedelta) -> bool:
    """Take a pending run, or a running one whose worker went silent; False if not ours to run."""
    now = utcnow()
    result = session.execute(
        update(MirrorRun)
        .where(
            MirrorRun.id == run_id,
            MirrorRun.stop_requested.is_(False),
            or_(
                MirrorRun.state == RunState.PENDING.value,
                _silent_running(now - stale_after),
            ),
        )
        .values(
            state=RunState.RUNNING.value,
            lease_owner=owner,
            heartbeat_at=now,
            started_at=now,
            attempt=MirrorRun.attempt + 1,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def heartbeat(
    session: Session,
    run_id: int,
    owner: str,
    *,
    steps: list[dict[str, Any]],
    counts: dict[str, Any],
    logs: Sequence[tuple[str, str, datetime]] = (),
) -> bool | None:
    """Save progress and renew the lease. Returns whether a stop was asked, None if the lease is
    lost (another worker took the run over)."""
    result = session.execute(
        _update_held(run_id, owner).values(heartbeat_at=utcnow(), steps=steps, counts=counts)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    if logs:
        session.execute(
            insert(MirrorRunLog),
            [
                {"run_id": run_id, "level": lv, "message": msg[:4000], "at": at}
                for lv, msg, at in logs
            ],
        )
    return bool(session.scalar(select(MirrorRun.stop_requested).where(MirrorRun.id == run_id)))


def stop_asked(session: Session, run_id: int, owner: str) -> bool | None:
    """Whether a stop was asked for the run now (read from the database, not the last heartbeat);
    None if this worker no longer holds it."""
    row = session.execute(
        select(MirrorRun.stop_requested, MirrorRun.lease_owner, MirrorRun.state).where(
            MirrorRun.id == run_id
        )
    ).one_or_none()
    if row is None or row.lease_owner != owner or row.state != RunState.RUNNING.value:
        return None
    return bool(row.stop_requested)


def hold_for_apply(session: Session, run_id: int, owner: str) -> bool | None:
    """In the transaction that applies a run's result: renew the lease only if no stop was asked
    (the row stays locked until the commit on PostgreSQL, so a stop waits for it). True: go on;
    False: a stop was asked; None: the lease is lost."""
    result = session.execute(
        _update_held(run_id, owner, MirrorRun.stop_requested.is_(False)).values(
            heartbeat_at=utcnow()
        )
    )
    if result.rowcount:  # type: ignore[attr-defined]
        return True
    asked = stop_asked(session, run_id, owner)
    return None if asked is None else False


def finish(
    session: Session,
    run_id: int,
    owner: str,
    *,
    state: RunState,
    summary: str,
    error: str | None = None,
    steps: list[dict[str, Any]] | None = None,
    counts: dict[str, Any] | None = None,
) -> bool:
    values: dict[str, Any] = {
        "state": state.value,
        "finished_at": utcnow(),
        "summary": summary[:2000],
        "error": error[:8000] if error else None,
        "lease_owner": None,
    }
    if steps is not None:  # a step still pending when the run ends never ran: skipped
        values["steps"] = [
            {**s, "state": "skipped"} if s["state"] == "pending" else s for s in steps
        ]
    if counts is not None:
        values["counts"] = counts
    result = session.execute(_update_held(run_id, owner).values(**values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, run_id: int, owner: str) -> None:
    """Give a running run back (its worker is shutting down): claimable again at once."""
    session.execute(
        update(MirrorRun)
        .where(MirrorRun.id == run_id, MirrorRun.lease_owner == owner)
        .values(lease_owner=None, heartbeat_at=None)
    )


def runs_to_resume(
    session: Session, *, stale_after: timedelta, pending_after: timedelta
) -> list[int]:
    """Runs a worker should pick up again: running with a stale heartbeat (their worker died), and
    pending for a while (their queue message was lost, e.g. a crash between commit and enqueue)."""
    now = utcnow()
    return list(
        session.scalars(
            select(MirrorRun.id)
            .where(
                MirrorRun.stop_requested.is_(False),
                or_(
                    _silent_running(now - stale_after),
                    and_(
                        MirrorRun.state == RunState.PENDING.value,
                        MirrorRun.created_at < now - pending_after,
                    ),
                ),
            )
            .order_by(MirrorRun.id)
        ).all()
    )


def take_due_mirrors(session: Session, now: datetime | None = None) -> list[int]:
    """Mirrors whose schedule is due, each moved on to its next time by a conditional update
    (so each due time is taken by one replica). Returns their ids."""
    now = now or utcnow()
    due = session.execute(
        select(Mirror.id, Mirror.schedule, Mirror.next_run_at).where(
            Mirror.enabled.is_(True),
            Mirror.schedule.is_not(None),
            Mirror.next_run_at.is_not(None),
            Mirror.next_run_at <= now,
        )
    ).all()
    taken: list[int] = []
    for mirror_id, schedule, was in due:
        following = next_run(schedule, now)
        result = session.execute(
            update(Mirror)
            .where(Mirror.id == mirror_id, Mirror.next_run_at == was)
            .values(next_run_at=following)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            taken.append(mirror_id)
            if following is None:  # runs this once, then is off the schedule: say why
                log_bad_schedule(log, f"mirror {mirror_id}", schedule or "")
    return taken
