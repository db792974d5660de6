"""Write, query and verify the audit log.

Events are written in the same transaction as the change they describe, so a change and its event
commit or vanish together. The chain needs one writer at a time: PostgreSQL takes a transaction
advisory lock, SQLite already serialises writers (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from stockade.audit.models import AuditEvent
from stockade.core.clock import utcnow
from stockade.core.context import current_origin
from stockade.core.errors import InvalidInputError

GENESIS = "0" * 64
# What the columns hold (``audit/models.py``): names made of what people and upstreams chose (a
# channel, subdir and file name together; a typed account name) are kept cut to them.
MAX_ACTOR_NAME = 256  # AuditEvent.actor_name
MAX_TARGET_ID = 64  # AuditEvent.target_id
MAX_TARGET_NAME = 512  # AuditEvent.target_name
_LOCK_KEY = 0x5354_4B41_5544  # "STKAUD"


class Actor(Protocol):
    """What the log needs of a principal (``stockade.auth.principal.Principal`` fits)."""

    @property
    def user_id(self) -> int | None: ...
    @property
    def username(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def token_id(self) -> int | None: ...
    @property
    def via(self) -> str: ...


@dataclass(frozen=True)
class SystemActor:
    user_id: int | None = None
    username: str = "system"
    kind: str = "system"
    token_id: int | None = None
    via: str = "system"


SYSTEM = SystemActor()


@dataclass(frozen=True)
class Target:
    type: str
    name: str | None = None
    id: str | int | None = None


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return value


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Values that survive every backend's JSON storage unchanged (JSONB rewrites floats):
    floats become strings, everything else stays as plain JSON."""
    if value is None:
        return None

    def clean(item: Any) -> Any:
        if isinstance(item, float):
            return repr(item)
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple | set | frozenset):
            return [clean(v) for v in item]
        if isinstance(item, datetime):
            return item.isoformat()
        return item

    result: dict[str, Any] = clean(dict(value))
    return result


def _utc(value: datetime | None) -> datetime | None:
    """Filters: a time without a zone is UTC; one outside the representable range is refused."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise InvalidInputError(f"{value.isoformat()} is out of range", field="since") from None


def event_digest(prev_hash: str, fields: Mapping[str, Any]) -> str:
    body = orjson.dumps(
        {k: _canonical(v) for k, v in fields.items()},
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


HASHED_FIELDS = (
    "seq",
    "occurred_at",
    "event_type",
    "outcome",
    "actor_id",
    "actor_name",
    "actor_kind",
    "token_id",
    "via",
    "ip",
    "user_agent",
    "request_id",
    "target_type",
    "target_id",
    "target_name",
    "before",
    "after",
    "details",
)


def _target_columns(target: Target | None) -> dict[str, str | None]:
    if target is None:
        return {"target_type": None, "target_id": None, "target_name": None}
    return {
        "target_type": target.type,
        "target_id": None if target.id is None else str(target.id)[:MAX_TARGET_ID],
        "target_name": None if target.name is None else target.name[:MAX_TARGET_NAME],
    }


def _fields_of(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in HASHED_FIELDS}


class AuditLog:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(
        self,
        event_type: str,
        actor: Actor | None,
        target: Target | None = None,
        *,
        outcome: str = "success",
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        who = actor or SYSTEM
        where = current_origin()
        self._lock_chain()
        last = self.session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        ).first()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        event = AuditEvent(
            seq=seq,
            occurred_at=utcnow(),
            event_type=event_type,
            outcome=outcome,
            actor_id=who.user_id,
            actor_name=who.username[:MAX_ACTOR_NAME],
            actor_kind=who.kind if who.user_id is not None or who.kind == "system" else "anonymous",
            token_id=who.token_id,
            via=who.via,
            ip=where.ip,
            user_agent=(where.user_agent or None) and where.user_agent[:512],
            request_id=where.request_id,
            **_target_columns(target),
            before=_plain(before),
            after=_plain(after),
            details=_plain(details),
            prev_hash=prev,
            hash="",
        )
        event.hash = event_digest(prev, _fields_of(event))
        self.session.add(event)
        self.session.flush()
        return event

    def _lock_chain(self) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})

    def query(self, filters: AuditFilter, *, limit: int = 100) -> list[AuditEvent]:
        query = select(AuditEvent)
        if filters.actor:
            query = query.where(AuditEvent.actor_name == filters.actor)
        if filters.event_type:
            if filters.event_type.endswith("."):
                query = query.where(
                    AuditEvent.event_type.startswith(filters.event_type, autoescape=True)
                )
            else:
                query = query.where(AuditEvent.event_type == filters.event_type)
        if filters.target_type:
            query = query.where(AuditEvent.target_type == filters.target_type)
        if filters.target:
            query = query.where(AuditEvent.target_name == filters.target)
        if filters.outcome:
            query = query.where(AuditEvent.outcome == filters.outcome)
        since, until = _utc(filters.since), _utc(filters.until)
        if since:
            query = query.where(AuditEvent.occurred_at >= since)
        if until:
            query = query.where(AuditEvent.occurred_at < until)
        if filters.before_seq:
            query = query.where(AuditEvent.seq < filters.before_seq)
        query = query.order_by(AuditEvent.seq.desc()).limit(limit)
        return list(self.session.scalars(query).all())

    def verify(self, *, batch: int = 5000) -> ChainReport:
        """Walk the whole chain in order; report the first break."""
        prev = GENESIS
        expected_seq = None
        checked = 0
        first: int | None = None
        for event in self._walk(batch):
            if expected_seq is None:
                if event.seq == 1 and event.prev_hash != GENESIS:
                    return ChainReport(False, 0, 1, "the first event does not start the chain")
                expected_seq = event.seq  # retention may have cut older events: start there
                prev = event.prev_hash
                first = event.seq
            if event.seq != expected_seq:
                return ChainReport(False, checked, event.seq, f"event {expected_seq} is missing")
            if event.prev_hash != prev:
                return ChainReport(False, checked, event.seq, "previous hash does not match")
            if event_digest(prev, _fields_of(event)) != event.hash:
                return ChainReport(False, checked, event.seq, "event content was changed")
            prev = event.hash
            expected_seq += 1
            checked += 1
        return ChainReport(True, checked, None, None, head=prev, first_seq=first)

    def _walk(self, batch: int) -> Iterator[AuditEvent]:
        after = 0
        while True:
            rows = self.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(batch)
            ).all()
            if not rows:
                return
            yield from rows
            after = rows[-1].seq
            self.session.expunge_all()


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    event_type: str | None = None  # exact, or a prefix ending in "." (``auth.``)
    target_type: str | None = None
    target: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_seq: int | None = None  # cursor: events older than this one


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_at: int | None
    problem: str | None
    head: str | None = None
    first_seq: int | None = None  # > 1 when retention removed the oldest events
