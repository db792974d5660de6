"""The webhook outbox (SPEC §7 notifications): deliveries written with the change they announce.

A new match, or a match turning ``active``, in a channel with webhooks subscribed to the event
adds one :class:`~stockade.vulns.models.WebhookDelivery` per (webhook, event, advisory, channel)
in the transaction that writes the match, grouping the artifacts concerned. The edges hand the
new deliveries to the job queue after the commit; a housekeeper hands over the due ones left
behind (retries, lost queue messages).

Sending is the job's (``stockade.vulns.webhook_delivery``); what it needs of the database is here:
:func:`claim` takes a due delivery with a conditional update (one sender per attempt, even with
many workers), :func:`record_outcome` stores what the call gave and when to try again.
:func:`refused_address` is the destination policy: loopback, link-local, unspecified and multicast
addresses are never called (loopback only with ``webhooks.allow_loopback`` or
``outbound.allow_loopback``); private LAN addresses only with ``outbound.allow_private`` or
``outbound.allowed_hosts`` (docs/adr/0010, which replaces 0009's "private addresses are allowed").

The body is signed as ``sha256=HMAC-SHA256(secret, f"{timestamp}.{body}")`` (:func:`signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stockade.channels.models import Channel
from stockade.core.clock import utcnow
from stockade.core.outbound import OutboundPolicy
from stockade.vulns.aliases import group_spellings, merged_aliases
from stockade.vulns.display import display_summary
from stockade.vulns.models import DeliveryState, Webhook, WebhookDelivery, WebhookEvent
from stockade.vulns.models import Vulnerability as VulnRow

__all__ = [
    "ArtifactLike",
    "Claimed",
    "WebhookIndex",
    "claim",
    "due_deliveries",
    "enqueue_events",
    "new_delivery",
    "record_outcome",
    "refused_address",
    "retry_delay",
    "signature",
]

#: Headers of every call (documented in docs/user-guide.md, "Webhooks").
USER_AGENT = "Stockade-Webhook/1"
SIGNATURE_PREFIX = "sha256="
ERROR_MAX = 500


class ArtifactLike(Protocol):
    """What a delivery says of an artifact (the matcher's ``ArtifactRef`` fits)."""

    @property
    def channel_id(self) -> int: ...
    @property
    def subdir(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def build(self) -> str: ...


@dataclass(frozen=True)
class WebhookIndex:
    """Enabled webhooks by channel, with their events: loaded once per matcher, not per match."""

    by_channel: dict[int, list[tuple[int, frozenset[str]]]]

    @classmethod
    def load(cls, session: Session) -> WebhookIndex:
        found: dict[int, list[tuple[int, frozenset[str]]]] = defaultdict(list)
        query = select(Webhook.id, Webhook.channel_id, Webhook.events).where(
            Webhook.enabled.is_(True)
        )
        for hook_id, channel_id, events in session.execute(query):
            found[channel_id].append((hook_id, frozenset(events or ())))
        return cls(dict(found))

    def __bool__(self) -> bool:
        return bool(self.by_channel)

    def subscribed(self, channel_id: int, event: str) -> list[int]:
        return [hid for hid, events in self.by_channel.get(channel_id, ()) if event in events]


def enqueue_events(
    session: Session,
    hooks: WebhookIndex,
    event: WebhookEvent,
    items: Iterable[tuple[int, ArtifactLike, str]],
) -> list[int]:
    """Deliveries of ``event`` for ``(advisory row id, artifact, status)`` items; their row ids.

    One delivery per webhook subscribed to the event on the artifact's channel and per advisory,
    listing every artifact of that channel concerned. Nothing is read when no webhook listens.
    """
    if not hooks:
        return []
    groups: dict[tuple[int, int], list[tuple[ArtifactLike, str]]] = defaultdict(list)
    for vuln_row_id, artifact, status in items:
        if hooks.subscribed(artifact.channel_id, event.value):
            groups[(artifact.channel_id, vuln_row_id)].append((artifact, status))
    if not groups:
        return []
    channels = _channel_names(session, {c for c, _ in groups})
    vulns = _vulnerabilities(session, {v for _, v in groups})
    rows: list[WebhookDelivery] = []
    for (channel_id, vuln_row_id), members in sorted(groups.items(), key=lambda g: g[0]):
        vuln = vulns.get(vuln_row_id)
        if vuln is None or channel_id not in channels:
            continue
        for hook_id in hooks.subscribed(channel_id, event.value):
            payload = partial(
                _vuln_payload, event=event, channel=channels[channel_id], vuln=vuln, members=members
            )
            rows.append(new_delivery(hook_id, event, payload))
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def new_delivery(
    webhook_id: int,
    event: WebhookEvent,
    payload: Callable[[str, datetime], dict[str, Any]],
    *,
    now: datetime | None = None,
) -> WebhookDelivery:
    """A pending delivery, due now; ``payload(delivery_id, now)`` builds its body."""
    now = now or utcnow()
    delivery_id = str(uuid.uuid4())
    return WebhookDelivery(
        webhook_id=webhook_id,
        delivery_id=delivery_id,
        event=event.value,
        payload=payload(delivery_id, now),
        state=DeliveryState.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def _channel_names(session: Session, ids: set[int]) -> dict[int, str]:
    query = select(Channel.id, Channel.name).where(Channel.id.in_(sorted(ids)))
    return dict(session.execute(query).all())


def _vulnerabilities(session: Session, ids: set[int]) -> dict[int, dict[str, Any]]:
    """The merged view of each advisory's alias group (``vulns.aliases``)."""
    rows = session.scalars(select(VulnRow).where(VulnRow.id.in_(sorted(ids)))).all()
    spelled = group_spellings(session, {r.alias_group for r in rows})
    return {
        row.id: {
            "id": row.vuln_id,
            "aliases": merged_aliases(
                row.vuln_id, row.aliases or [], spelled.get(row.alias_group, [])
            ),
            "summary": display_summary(row.summary, row.details),
            "severity": row.group_severity,
            "score": row.group_score,
            "score_source": row.score_source,
            "kev": bool(row.kev),
        }
        for row in rows
    }


#: Statuses from least to most severe (as ``MatchStatus.rank``), for a group's headline status.
_SEVERITY_ORDER = ("cleared", "mitigated", "disputed", "reported", "active")


def _vuln_payload(
    delivery_id: str,
    now: datetime,
    *,
    event: WebhookEvent,
    channel: str,
    vuln: dict[str, Any],
    members: Sequence[tuple[ArtifactLike, str]],
) -> dict[str, Any]:
    ordered = sorted(members, key=lambda m: (m[0].subdir, m[0].filename))
    statuses = {status for _, status in ordered}
    worst = max(statuses, key=lambda s: _SEVERITY_ORDER.index(s) if s in _SEVERITY_ORDER else -1)
    return {
        "event": event.value,
        "delivery_id": delivery_id,
        "created_at": now.isoformat(),
        "channel": channel,
        "vulnerability": dict(vuln),
        "status": worst,
        "artifacts": [
            {
                "subdir": a.subdir,
                "filename": a.filename,
                "name": a.name,
                "version": a.version,
                "build": a.build,
                "status": status,
            }
            for a, status in ordered
        ],
    }


def ping_payload(delivery_id: str, now: datetime, channel: str, webhook_id: int) -> dict[str, Any]:
    return {
        "event": WebhookEvent.PING.value,
        "delivery_id": delivery_id,
        "created_at": now.isoformat(),
        "channel": channel,
        "webhook": webhook_id,
    }


# -- sending -------------------------------------------------------------------------------------


def refused_address(
    address: str, *, allow_loopback: bool = False, allow_private: bool = False
) -> str | None:
    """Why a webhook may not call this IP address, or None when it may: the outbound policy
    (:class:`stockade.core.outbound.OutboundPolicy`, docs/adr/0010) with these allowances.

    Refused: loopback (127.0.0.0/8, ::1; allowed with ``allow_loopback``), link-local
    (169.254.0.0/16 with the cloud metadata services, fe80::/10), unspecified and "this network"
    (0.0.0.0/8, ::), multicast, and private and other non-global addresses (allowed with
    ``allow_private``), also when written as IPv4-mapped IPv6 (``::ffff:127.0.0.1``).
    A value that is not an IP address is refused.
    """
    policy = OutboundPolicy(allow_loopback=allow_loopback, allow_private=allow_private)
    return policy.refused(address)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``b"{timestamp}." + body`` keyed by the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def retry_delay(attempt: int, backoff_s: Sequence[float]) -> float:
    """The wait after failed attempt number ``attempt`` (1-based); the last wait repeats."""
    return float(backoff_s[min(max(attempt, 1), len(backoff_s)) - 1])


def due_deliveries(session: Session, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pending deliveries whose time has come (new ones, retries, abandoned claims)."""
    now = now or utcnow()
    query = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.state == DeliveryState.PENDING.value,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class Claimed:
    """One attempt at a delivery, owned by the caller until ``record_outcome``."""

    id: int
    delivery_id: str
    event: str
    payload: dict[str, Any]
    attempt: int
    url: str
    secret_encrypted: str
    enabled: bool
    #: The lease the claim wrote (``next_attempt_at``): the claim's token. A redelivery, or a later
    #: claim, writes another value, so the outcome of this attempt is then no longer recorded.
    lease_until: datetime | None = None


def claim(
    session: Session, row_id: int, *, lease_s: float, now: datetime | None = None
) -> Claimed | None:
    """Take a due pending delivery for one attempt, or None (not due, done, or taken by another).

    The update is conditional on the attempt count read, so of two workers racing for the same
    attempt exactly one changes the row; the winner pushes ``next_attempt_at`` past the call's
    timeout, so a worker that dies mid-call leaves it due again later. That lease is the claim's
    token (:attr:`Claimed.lease_until`).
    """
    now = now or utcnow()
    lease_until = now + timedelta(seconds=lease_s)
    row = session.execute(
        select(
            WebhookDelivery.attempts,
            WebhookDelivery.state,
            WebhookDelivery.next_attempt_at,
            WebhookDelivery.delivery_id,
            WebhookDelivery.event,
            WebhookDelivery.payload,
            Webhook.url,
            Webhook.secret_encrypted,
            Webhook.enabled,
        )
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id == row_id)
    ).first()
    if row is None or row.state != DeliveryState.PENDING.value:
        return None
    if row.next_attempt_at is not None and row.next_attempt_at > now:
        return None
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == row_id,
            WebhookDelivery.state == DeliveryState.PENDING.value,
            WebhookDelivery.attempts == row.attempts,
        )
        .values(attempts=row.attempts + 1, next_attempt_at=lease_until)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
        return None
    return Claimed(
        row_id,
        row.delivery_id,
        row.event,
        dict(row.payload or {}),
        row.attempts + 1,
        row.url,
        row.secret_encrypted,
        row.enabled,
        lease_until,
    )


def record_outcome(
    session: Session,
    claimed: Claimed,
    *,
    status_code: int | None,
    error: str | None,
    max_attempts: int,
    backoff_s: Sequence[float],
    now: datetime | None = None,
    give_up: bool = False,
) -> str:
    """Store an attempt's result: ``delivered`` (2xx), ``pending`` again later, or ``failed``.

    Conditional on the attempt still being ours: the attempt count and the lease the claim wrote
    are unchanged. A redelivery meanwhile (which counts attempts afresh and makes the row due now)
    or a later claim changes the lease, so a stale attempt never records over a newer one. Returns
    the state written, or ``""`` when the row moved on meanwhile.
    """
    now = now or utcnow()
    ok = status_code is not None and 200 <= status_code < 300 and error is None
    values: dict[str, Any] = {
        "last_status_code": status_code,
        "last_error": (error or None) and error[:ERROR_MAX],
    }
    if ok:
        values.update(state=DeliveryState.DELIVERED.value, delivered_at=now, next_attempt_at=None)
    elif give_up or claimed.attempt >= max_attempts:
        values.update(state=DeliveryState.FAILED.value, next_attempt_at=None)
    else:
        wait = retry_delay(claimed.attempt, backoff_s)
        values.update(next_attempt_at=now + timedelta(seconds=wait))
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claimed.id,
            WebhookDelivery.state == DeliveryState.PENDING.value,
            WebhookDelivery.attempts == claimed.attempt,
            WebhookDelivery.next_attempt_at == claimed.lease_until,
        )
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return ""
    return str(values.get("state", DeliveryState.PENDING.value))
