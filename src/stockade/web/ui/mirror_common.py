"""What the mirror, run and policy pages share: addresses, views of runs, who may do what.

The pages read mirrors and runs through the mirroring services (which check the principal's
rights) and show them through the small frozen views below, built while the session is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request

from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.channels.service import channel_ref
from stockade.container import Container
from stockade.core.errors import InvalidInputError, NotFoundError
from stockade.mirroring.errors import RunNotFoundError
from stockade.mirroring.models import ACTIVE_STATES, Mirror, MirrorRun, MirrorRunLog, RunState
from stockade.mirroring.preview import PreviewService
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService
from stockade.mirroring.throttle import take_preview_turn
from stockade.web.ui.forms import path_part

MIRRORS = "/mirrors"
POLICIES = "/policies"
# The counts a run records, in the order the pages show them.
COUNT_LABELS = {
    "upstream": "Upstream records",
    "kept": "Kept",
    "excluded": "Excluded",
    "added": "Added",
    "removed": "Removed",
    "changed": "Changed",
    "unchanged": "Unchanged",
    "files_downloaded": "Files downloaded",
    "files_present": "Files already stored",
    "bytes_downloaded": "Bytes downloaded",
    "failed_files": "Failed files",
    "conflicts": "Name conflicts",
}
HISTORY_COUNTS = ("added", "removed", "changed", "excluded", "failed_files")


def mirror_url(name: str) -> str:
    return f"{MIRRORS}/{path_part(name)}"


def run_url(mirror: str, run_id: int) -> str:
    return f"{mirror_url(mirror)}/runs/{run_id}"


def policy_url(name: str) -> str:
    return f"{POLICIES}/{path_part(name)}"


def run_number(value: str) -> int:
    """A run id from an address (anything else is a page that does not exist)."""
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 18):
        raise NotFoundError("there is nothing at this address")
    return int(value)


def run_of(
    session: Session, container: Container, principal: Principal, mirror: str, run_id: int
) -> tuple[Mirror, MirrorRun]:
    """A run of the named mirror, as the principal may read it (another mirror's run: 404)."""
    runs = RunService(session, container.secrets)
    found = runs.mirrors.get(principal, mirror, Permission.MIRROR_READ)
    run = runs.get(principal, run_id)
    if run.mirror_id != found.id:
        raise RunNotFoundError(f"mirror {mirror!r} has no run {run_id}")
    return found, run


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = max(0, int((end - start).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(frozen=True)
class StepView:
    name: str
    label: str
    state: str
    done: int
    total: int | None


@dataclass(frozen=True)
class RunView:
    id: int
    mirror: str
    state: str
    trigger: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration: str
    summary: str | None
    error: str | None
    stop_requested: bool
    counts: dict[str, Any]
    steps: list[StepView]

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def url(self) -> str:
        return run_url(self.mirror, self.id)


@dataclass(frozen=True)
class LogView:
    id: int
    at: datetime
    level: str
    message: str


def run_view(run: MirrorRun, mirror: str) -> RunView:
    steps = [
        StepView(
            str(s.get("name", "")),
            str(s.get("label", s.get("name", ""))),
            str(s.get("state", "")),
            int(s.get("done") or 0),
            int(s["total"]) if s.get("total") is not None else None,
        )
        for s in run.steps or []
    ]
    return RunView(
        id=run.id,
        mirror=mirror,
        state=run.state,
        trigger=run.trigger,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration=duration(run.started_at, run.finished_at),
        summary=run.summary,
        error=run.error,
        stop_requested=run.stop_requested,
        counts=dict(run.counts or {}),
        steps=steps,
    )


def log_views(lines: list[MirrorRunLog]) -> list[LogView]:
    return [LogView(ln.id, ln.at, ln.level, ln.message) for ln in lines]


def last_completed(session: Session, mirror_ids: list[int]) -> dict[int, MirrorRun]:
    """The newest completed run of each mirror (its counts are what the mirror holds)."""
    if not mirror_ids:
        return {}
    newest = (
        select(func.max(MirrorRun.id))
        .where(MirrorRun.mirror_id.in_(mirror_ids), MirrorRun.state == RunState.COMPLETED.value)
        .group_by(MirrorRun.mirror_id)
    )
    runs = session.scalars(select(MirrorRun).where(MirrorRun.id.in_(newest))).all()
    return {r.mirror_id: r for r in runs}


@dataclass(frozen=True)
class Rights:
    """What the principal may do with one mirror (the pages hide what they cannot use)."""

    run: bool
    manage: bool
    policies: bool  # read policies (link to them, preview)


def rights_on(principal: Principal, channel: Channel) -> Rights:
    access = AccessService()
    ref = channel_ref(channel)
    return Rights(
        run=access.can(principal, Permission.MIRROR_WRITE, ref),
        manage=access.can(principal, Permission.MIRROR_MANAGE, ref),
        policies=access.allowed(principal, Permission.POLICY_READ),
    )


def may_create_mirror(principal: Principal) -> bool:
    """Creating a mirror makes its channel (an author may) or needs to manage an existing one."""
    if principal.is_anonymous:
        return False
    access = AccessService()
    return access.allowed(principal, Permission.CHANNEL_CREATE) or access.allowed(
        principal, Permission.MIRROR_MANAGE
    )


def mirrored_channels(session: Session, container: Container, principal: Principal) -> list[str]:
    """The channels the principal can see that have a mirror (where policies mean something)."""
    service = MirrorService(session, container.secrets)
    names = {service.channel_of(m).name for m in service.list_visible(principal)}
    return sorted(names)


def visible_mirrors(session: Session, container: Container, principal: Principal) -> list[Mirror]:
    return MirrorService(session, container.secrets).list_visible(principal)


def preview_service(
    session: Session, container: Container, request: Request | None = None
) -> PreviewService:
    """With ``request``: previews are counted per caller, as over the API (429 over)."""
    ip = request.client.host if request is not None and request.client else None
    return PreviewService(
        session,
        container.blobs,
        container.secrets,
        container.vulnerabilities,
        throttle=(lambda p: take_preview_turn(container.factory, p, ip, container.settings.mirror))
        if request
        else None,
    )


def whole_number(value: str, field: str, *, low: int, high: int) -> int | None:
    """A number typed in a form (blank: not given); errors name the field."""
    text = value.strip()
    if not text:
        return None
    try:
        number = int(text)
    except ValueError:
        raise InvalidInputError(
            f"{field}: write a whole number from {low} to {high}", field=field
        ) from None
    if not low <= number <= high:
        raise InvalidInputError(f"{field}: a whole number from {low} to {high}", field=field)
    return number
