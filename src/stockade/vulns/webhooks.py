"""Channel webhooks (SPEC §7 notifications): the endpoints a channel's owners register.

Whoever may manage the channel (its owner, a ``manage`` grant, an admin) may list, add, change,
remove and ping its webhooks and read their deliveries; to anyone else who can read the channel
it is 403, to those who cannot it does not exist (404).

A webhook has an ``http(s)`` URL (no credentials in it, at most :data:`URL_MAX` characters) whose
host the outbound policy allows (:func:`check_destination`, ``stockade.core.outbound``: not a
loopback, link-local, unspecified, multicast or private address, nor a name resolving to one;
loopback is allowed with ``webhooks.allow_loopback``, private ones with ``outbound.allow_private``
or ``outbound.allowed_hosts``), the events
it wants (``vulnerability.matched``, ``vulnerability.active``) and a secret that signs each call.
The secret is given or generated, stored encrypted (``SecretBox``), returned once when set and
never again; audit events record that it changed, never its value. The secret only signs the
calls (receivers get a signature, never the secret), so it is not bound to the URL: moving the
webhook to another URL sends signatures there, which is what the channel's managers asked for.

The outbox itself (what a match writes, claiming and retrying) is ``vulns.webhook_outbox``.
"""

from __future__ import annotations

import secrets as random_secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.channels.service import ChannelService
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError
from stockade.core.outbound import OutboundPolicy, RefusedDestinationError, refused_destination
from stockade.core.secrets import SecretBox
from stockade.core.urls import URLParseError, parse_url, redact_url
from stockade.vulns.errors import DeliveryNotFoundError, WebhookNotFoundError
from stockade.vulns.models import DeliveryState, Webhook, WebhookDelivery, WebhookEvent
from stockade.vulns.webhook_outbox import new_delivery, ping_payload

__all__ = [
    "EVENTS",
    "WebhookService",
    "WebhookSpec",
    "check_destination",
    "check_events",
    "check_secret",
    "check_url",
]

URL_MAX = 2048
DESCRIPTION_MAX = 1000
SECRET_MIN, SECRET_MAX = 16, 256
DELIVERIES_MAX = 500
#: What a webhook may subscribe to (``ping`` is sent on request only).
EVENTS = (
    WebhookEvent.MATCHED.value,
    WebhookEvent.ACTIVE.value,
    WebhookEvent.QUARANTINED.value,
    WebhookEvent.HELD.value,
)


def check_url(url: str) -> str:
    """An absolute ``http``/``https`` URL with a host, no user or password, no fragment."""
    value = (url or "").strip()
    if not value:
        raise InvalidInputError("a webhook needs a url", code="webhook:bad-url", field="url")
    if len(value) > URL_MAX:
        raise InvalidInputError(
            f"the url is longer than {URL_MAX} characters", code="webhook:bad-url", field="url"
        )
    if not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidInputError(
            "the url has spaces or control characters", code="webhook:bad-url", field="url"
        )
    try:
        parts = parse_url(value, max_length=URL_MAX)  # parsed once, decided on the parsed form
    except URLParseError:
        raise InvalidInputError(
            "the url cannot be parsed", code="webhook:bad-url", field="url"
        ) from None
    host = parts.host
    if parts.scheme not in ("http", "https"):
        raise InvalidInputError(
            "the url must start with http:// or https://", code="webhook:bad-url", field="url"
        )
    if not host:
        raise InvalidInputError("the url names no host", code="webhook:bad-url", field="url")
    if parts.has_userinfo:
        raise InvalidInputError(
            "the url must not carry credentials (user:password@): the calls are signed instead",
            code="webhook:bad-url",
            field="url",
        )
    if parts.fragment:
        raise InvalidInputError(
            "the url must not have a #fragment", code="webhook:bad-url", field="url"
        )
    return value


def check_destination(
    url: str,
    *,
    allow_loopback: bool = False,
    policy: OutboundPolicy | None = None,
    detail: bool = False,
) -> str:
    """A checked URL (:func:`check_url`) whose host the outbound policy allows.

    A literal IP address is checked as it is; a name is resolved and refused if any of its
    addresses is. A name that does not resolve (yet) is accepted: every call resolves it again
    and checks the addresses it connects to. ``detail``: say why (to an administrator); others
    learn only that it is refused, not which address an internal name resolves to.
    """
    chosen = (policy or OutboundPolicy()).with_loopback(allow_loopback)
    reason = refused_destination(parse_url(url).host, chosen)
    if reason is not None:
        why = reason if detail else RefusedDestinationError.public
        raise InvalidInputError(
            f"webhooks may not call this host: {why}",
            code="webhook:refused-destination",
            field="url",
        )
    return url


def check_events(events: Iterable[str] | None) -> list[str]:
    """Known subscribable events, deduplicated in a stable order; at least one."""
    chosen = [e.strip() for e in (events if events is not None else EVENTS)]
    unknown = sorted({e for e in chosen if e not in EVENTS})
    if unknown:
        raise InvalidInputError(
            f"unknown event {unknown[0]!r} (one of {', '.join(EVENTS)})",
            code="webhook:bad-event",
            field="events",
        )
    if not chosen:
        raise InvalidInputError(
            "a webhook needs at least one event", code="webhook:bad-event", field="events"
        )
    return [e for e in EVENTS if e in chosen]


def check_secret(secret: str) -> str:
    if not (SECRET_MIN <= len(secret) <= SECRET_MAX) or not secret.isprintable():
        raise InvalidInputError(
            f"a secret is {SECRET_MIN} to {SECRET_MAX} printable characters",
            code="webhook:bad-secret",
            field="secret",
        )
    if secret != secret.strip():
        raise InvalidInputError(
            "a secret has no leading or trailing spaces", code="webhook:bad-secret", field="secret"
        )
    return secret


def _check_description(text: str | None) -> str:
    value = (text or "").strip()
    if len(value) > DESCRIPTION_MAX:
        raise InvalidInputError(
            f"the description is longer than {DESCRIPTION_MAX} characters", field="description"
        )
    return value


@dataclass
class WebhookSpec:
    """Fields of a create or an update; ``None`` leaves a field as it is (update)."""

    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None
    secret: str | None = None  # given; with ``rotate_secret`` a new one is generated
    rotate_secret: bool = False


class WebhookService:
    def __init__(
        self,
        session: Session,
        secrets: SecretBox,
        *,
        allow_loopback: bool = False,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.session = session
        self.secrets = secrets
        self.channels = ChannelService(session)
        # ``[outbound]``, with loopback also allowed by ``webhooks.allow_loopback``
        self.policy = (outbound or OutboundPolicy()).with_loopback(allow_loopback)

    def channel(self, principal: Principal, name: str) -> Channel:
        """The channel if the principal may manage it (404 hidden, 403 below manage)."""
        return self.channels.get(principal, name, Permission.CHANNEL_MANAGE)

    def _check_url(self, principal: Principal, url: str) -> str:
        return check_destination(check_url(url), policy=self.policy, detail=principal.is_admin)

    def list(self, principal: Principal, channel_name: str) -> tuple[Channel, Sequence[Webhook]]:
        channel = self.channel(principal, channel_name)
        query = select(Webhook).where(Webhook.channel_id == channel.id).order_by(Webhook.id)
        return channel, self.session.scalars(query).all()

    def get(self, principal: Principal, channel_name: str, hook_id: int) -> tuple[Channel, Webhook]:
        channel = self.channel(principal, channel_name)
        hook = self.session.get(Webhook, hook_id)
        if hook is None or hook.channel_id != channel.id:
            raise WebhookNotFoundError(f"webhook {hook_id} of channel {channel.name!r} not found")
        return channel, hook

    def create(
        self, principal: Principal, channel_name: str, spec: WebhookSpec
    ) -> tuple[Webhook, str]:
        """Add a webhook; returns it with its secret in clear (shown once)."""
        channel = self.channel(principal, channel_name)
        url = self._check_url(principal, spec.url or "")
        events = check_events(spec.events)
        description = _check_description(spec.description)
        secret = check_secret(spec.secret) if spec.secret is not None else _generate()
        hook = Webhook(
            channel_id=channel.id,
            url=url,
            secret_encrypted=self.secrets.encrypt(secret),
            events=events,
            enabled=True if spec.enabled is None else spec.enabled,
            description=description,
            created_by_id=principal.user_id,
        )
        self.session.add(hook)
        self.session.flush()
        AuditLog(self.session).record(
            "webhook.create",
            principal,
            _target(channel, hook),
            after=_state(hook),
            details={"secret": "given" if spec.secret is not None else "generated"},
        )
        return hook, secret

    def update(
        self, principal: Principal, channel_name: str, hook_id: int, spec: WebhookSpec
    ) -> tuple[Webhook, str | None]:
        """Change the fields given; returns the webhook and its new secret if it changed."""
        channel, hook = self.get(principal, channel_name, hook_id)
        before = _state(hook)
        if spec.url is not None:
            hook.url = self._check_url(principal, spec.url)
        if spec.events is not None:
            hook.events = check_events(spec.events)
        if spec.description is not None:
            hook.description = _check_description(spec.description)
        if spec.enabled is not None:
            hook.enabled = spec.enabled
        if spec.secret is not None and spec.rotate_secret:
            raise InvalidInputError(
                "give a secret or ask for a new one, not both", field="rotate_secret"
            )
        secret: str | None = None
        if spec.secret is not None:
            secret = check_secret(spec.secret)
        elif spec.rotate_secret:
            secret = _generate()
        if secret is not None:
            hook.secret_encrypted = self.secrets.encrypt(secret)
        after = _state(hook)
        if before != after or secret is not None:
            hook.updated_at = utcnow()
            self.session.flush()
            AuditLog(self.session).record(
                "webhook.update",
                principal,
                _target(channel, hook),
                before=before,
                after=after,
                details={"secret": "changed"} if secret is not None else None,
            )
        return hook, secret

    def delete(self, principal: Principal, channel_name: str, hook_id: int) -> None:
        """Remove a webhook with its deliveries (those pending are never sent)."""
        channel, hook = self.get(principal, channel_name, hook_id)
        AuditLog(self.session).record(
            "webhook.delete", principal, _target(channel, hook), before=_state(hook)
        )
        self.session.delete(hook)
        self.session.flush()

    def ping(self, principal: Principal, channel_name: str, hook_id: int) -> WebhookDelivery:
        """Queue a ``ping`` delivery (sent even to a disabled webhook, to try it)."""
        channel, hook = self.get(principal, channel_name, hook_id)
        row = new_delivery(
            hook.id,
            WebhookEvent.PING,
            lambda delivery_id, now: ping_payload(delivery_id, now, channel.name, hook.id),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def deliveries(
        self, principal: Principal, channel_name: str, hook_id: int, *, limit: int = 50
    ) -> Sequence[WebhookDelivery]:
        """The most recent deliveries first."""
        _, hook = self.get(principal, channel_name, hook_id)
        query = (
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == hook.id)
            .order_by(WebhookDelivery.id.desc())
            .limit(max(1, min(limit, DELIVERIES_MAX)))
        )
        return self.session.scalars(query).all()

    def redeliver(
        self, principal: Principal, channel_name: str, hook_id: int, delivery_id: str
    ) -> WebhookDelivery:
        """Send a delivery again (same id and body): pending now, its attempts counted afresh.

        The row is due now with a new ``next_attempt_at``; an attempt still in flight no longer
        owns the row (its claim's lease changed), so its outcome is not recorded over this one.
        """
        channel, hook = self.get(principal, channel_name, hook_id)
        # Locked as read: an attempt in flight that records its outcome between this read and
        # the write would otherwise stay ``delivered`` (the ORM writes only the columns that
        # differ from what it read, and ``state`` read ``pending``): the redelivery lost.
        row = self.session.scalar(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == hook.id,
                WebhookDelivery.delivery_id == delivery_id.strip(),
            )
            .with_for_update()
        )
        if row is None:
            raise DeliveryNotFoundError(
                f"delivery {delivery_id!r} of webhook {hook.id} not found", field="delivery_id"
            )
        before = {"state": row.state, "attempts": row.attempts}
        row.state = DeliveryState.PENDING.value
        row.attempts = 0
        row.next_attempt_at = utcnow()
        row.delivered_at = None
        self.session.flush()
        AuditLog(self.session).record(
            "webhook.redeliver",
            principal,
            _target(channel, hook),
            before=before,
            details={"delivery_id": row.delivery_id, "event": row.event},
        )
        return row


def _generate() -> str:
    return random_secrets.token_urlsafe(32)


def _target(channel: Channel, hook: Webhook) -> Target:
    return Target("webhook", f"{channel.name}#{hook.id}", hook.id)


def _state(hook: Webhook) -> dict[str, Any]:
    """What the audit log keeps of a webhook: never its secret, the URL redacted."""
    return {
        "url": redact_url(hook.url),
        "events": list(hook.events or []),
        "enabled": hook.enabled,
        "description": hook.description,
    }
