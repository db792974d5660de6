"""Channel webhooks in the UI: ``/admin/webhooks`` (all those of the channels one manages, a new
one) and ``/admin/webhooks/{id}`` (edit, try it, its recent deliveries, send one again, delete).

The same :class:`~stockade.vulns.webhooks.WebhookService` calls as ``/api/v1/…/webhooks``: whoever
may manage a channel (its owner, a ``manage`` grant, an admin) manages its webhooks; a webhook of
another channel does not exist for them. A secret is shown once, in the answer to the form that
set it (no redirect, no URL), and never again; URLs and errors are shown redacted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.access import AccessService
from stockade.auth.errors import AccessDeniedError
from stockade.auth.permissions import Level, Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.channels.privacy import refs_for
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.core.handoff import hand_off
from stockade.core.urls import redact_text, redact_url
from stockade.db.engine import transaction
from stockade.vulns.errors import WebhookNotFoundError
from stockade.vulns.models import Webhook, WebhookDelivery
from stockade.vulns.webhooks import EVENTS, WebhookService, WebhookSpec
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import admin_context, confirmed
from stockade.web.ui.forms import FormError, FormList, FormText, clean, done, notice_of, submit
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
WEBHOOKS = "/admin/webhooks"
DELIVERIES_SHOWN = 25


def hook_url(hook_id: int) -> str:
    return f"{WEBHOOKS}/{hook_id}"


def hook_number(value: str) -> int:
    """A webhook id from the path: a positive whole number, else 'not found'."""
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 18):
        raise WebhookNotFoundError(f"webhook {value[:40]!r} not found")
    return int(value)


def service(session: Session, container: Container) -> WebhookService:
    return WebhookService(
        session,
        container.secrets,
        allow_loopback=container.settings.webhooks.allow_loopback,
        outbound=container.settings.outbound.policy(),
    )


def managed_channels(session: Session, principal: Principal) -> list[Channel]:
    """The channels whose webhooks the principal may manage (403 when there is none, unless they
    may manage every channel: an admin before the first channel)."""
    if principal.is_anonymous:
        AccessService().require(principal, Permission.CHANNEL_MANAGE)  # sign-in first
    channels = ChannelService(session).list_visible(principal)
    refs, access = refs_for(session, channels), AccessService()
    managed = [
        c
        for c in channels
        if access.channel_level(principal, refs[c.id], Permission.CHANNEL_MANAGE) >= Level.MANAGE
    ]
    if not managed and not access.allowed(principal, Permission.CHANNEL_MANAGE):
        raise AccessDeniedError("you manage no channel, so no webhook either")
    return managed


def channel_of(session: Session, principal: Principal, hook_id: int) -> str:
    """The name of the channel a webhook belongs to (the service then checks the principal).
    A webhook of a channel the principal cannot read is not found, without naming the channel."""
    query = select(Channel).join(Webhook, Webhook.channel_id == Channel.id)
    channel = session.scalar(query.where(Webhook.id == hook_id))
    readable = channel is not None and (
        AccessService().channel_level(principal, refs_for(session, [channel])[channel.id])
        >= Level.READ
    )
    if channel is None or not readable:
        raise WebhookNotFoundError(f"webhook {hook_id} not found")
    return channel.name


def hook_row(channel: str, hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "channel": channel,
        "url": redact_url(hook.url),
        "events": list(hook.events or []),
        "enabled": hook.enabled,
        "description": hook.description,
        "created_at": hook.created_at,
        "updated_at": hook.updated_at,
    }


def delivery_row(row: WebhookDelivery) -> dict[str, Any]:
    return {
        "delivery_id": row.delivery_id,
        "event": row.event,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at,
        "last_status_code": row.last_status_code,
        "last_error": redact_text(row.last_error) if row.last_error else "",
        "created_at": row.created_at,
        "delivered_at": row.delivered_at,
    }


@dataclass(frozen=True)
class NewSecret:
    """A secret set by the form just sent: shown in this answer only."""

    hook_id: int
    secret: str


# --------------------------------------------------------------------------------------- the list


def webhooks_page(
    request: Request,
    container: Container,
    principal: Principal,
    *,
    error: FormError | None = None,
) -> Response:
    with container.read_factory() as session:
        managed = managed_channels(session, principal)
        hooks: list[dict[str, Any]] = []
        wanted = clean(request.query_params.get("channel", ""), 512)
        webhooks = service(session, container)
        hooked = set(session.scalars(select(Webhook.channel_id).distinct()))
        for channel in managed:  # the service lists (and checks) those that have any
            if channel.id not in hooked or (wanted and channel.name != wanted):
                continue
            _, rows = webhooks.list(principal, channel.name)
            hooks.extend(hook_row(channel.name, h) for h in rows)
    context = {
        "title": "Webhooks",
        "hooks": hooks,
        "channels": [c.name for c in managed],
        "channel_filter": wanted,
        "events": EVENTS,
        "error": error,
        "notice": None if error else notice_of(request),
        **admin_context(principal, "webhooks"),
    }
    return render(request, "webhooks.html", context, status=error.status if error else 200)


@router.get(WEBHOOKS)
def list_webhooks(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: webhooks_page(request, container, principal))


def spec_of(
    url: str, events: Sequence[str], description: str, enabled: str, secret: str
) -> WebhookSpec:
    return WebhookSpec(
        url=clean(url, 4096),
        events=[clean(e, 64) for e in events[:8]],
        description=description.strip()[:4000],
        enabled=enabled == "yes",
        secret=secret if secret else None,  # as typed: the service refuses spaces around it
    )


@router.post(WEBHOOKS)
def create_webhook(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    channel: FormText = "",
    url: FormText = "",
    events: FormList = [],  # noqa: B006 (FastAPI copies defaults)
    description: FormText = "",
    enabled: FormText = "",
    secret: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def change() -> Response:
        if not events:
            raise InvalidInputError("tick at least one event", field="events")
        spec = spec_of(url, events, description, enabled, secret)
        with transaction(container.factory) as session:
            hook, given = service(session, container).create(principal, clean(channel, 512), spec)
            hook_id = hook.id
        # the secret is in this answer only: no redirect, no URL, never shown again
        return hook_page(request, container, principal, hook_id, new=NewSecret(hook_id, given))

    def redraw(error: FormError) -> Response:
        return webhooks_page(request, container, principal, error=error)

    values = {
        "channel": channel,
        "url": redact_url(url),  # a password typed into it is not shown back
        "events": " ".join(events),
        "description": description,
        "enabled": enabled,
    }
    return submit(
        request,
        principal,
        csrf_token,
        back=WEBHOOKS,
        change=change,
        redraw=redraw,
        form="create",
        values=values,
    )


# ------------------------------------------------------------------------------------ one webhook


def hook_page(
    request: Request,
    container: Container,
    principal: Principal,
    hook_id: int,
    *,
    error: FormError | None = None,
    new: NewSecret | None = None,
) -> Response:
    with container.read_factory() as session:
        webhooks = service(session, container)
        name = channel_of(session, principal, hook_id)
        _, hook = webhooks.get(principal, name, hook_id)
        rows = webhooks.deliveries(principal, name, hook_id, limit=DELIVERIES_SHOWN)
        context = {
            "title": f"Webhook {hook_id}",
            "hook": hook_row(name, hook),
            "deliveries": [delivery_row(r) for r in rows],
            "events": EVENTS,
            "new_secret": new.secret if new else None,
            "error": error,
            "notice": None if error or new else notice_of(request),
            **admin_context(principal, "webhooks"),
        }
    status = error.status if error else 201 if new else 200
    return render(request, "webhook.html", context, status=status)


@router.get(WEBHOOKS + "/{webhook_id}")
def show_webhook(
    request: Request, webhook_id: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    def build() -> Response:
        if principal.is_anonymous:  # sign in first: whether a webhook exists is not for everyone
            AccessService().require(principal, Permission.CHANNEL_MANAGE)
        return hook_page(request, container, principal, hook_number(webhook_id))

    return guarded(request, principal, build)


Change = Callable[[WebhookService, str, int, list[int]], "str | NewSecret"]


def hook_change(
    request: Request,
    principal: Principal,
    container: Container,
    webhook_id: str,
    csrf_token: str,
    act: Change,
    *,
    form: str,
    values: dict[str, str] | None = None,
) -> Response:
    """Run one change from a webhook's page: ``act`` returns the notice to show after it, or the
    new secret to show once; the deliveries it adds to ``queued`` are sent after the commit."""
    number = int(webhook_id) if webhook_id.isascii() and webhook_id.isdigit() else 0

    def change() -> Response:
        queued: list[int] = []
        with transaction(container.factory) as session:
            channel = channel_of(session, principal, hook_number(webhook_id))
            outcome = act(service(session, container), channel, number, queued)
        if queued:
            hand_off(container.dispatch_webhooks, queued, "webhook deliveries")
        if isinstance(outcome, NewSecret):
            return hook_page(request, container, principal, number, new=outcome)
        if outcome == "webhook-deleted":
            return done(WEBHOOKS, outcome)
        return done(hook_url(number), outcome)

    def redraw(error: FormError) -> Response:
        return hook_page(request, container, principal, number, error=error)

    return submit(
        request,
        principal,
        csrf_token,
        back=hook_url(number),
        change=change,
        redraw=redraw,
        form=form,
        values=values,
    )


@router.post(WEBHOOKS + "/{webhook_id}")
def update_webhook(
    request: Request,
    webhook_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    url: FormText = "",
    events: FormList = [],  # noqa: B006 (FastAPI copies defaults)
    description: FormText = "",
    enabled: FormText = "",
    secret: FormText = "",
    rotate_secret: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def act(webhooks: WebhookService, channel: str, number: int, _q: list[int]) -> str | NewSecret:
        if not events:
            raise InvalidInputError("tick at least one event", field="events")
        spec = spec_of(url, events, description, enabled, secret)
        spec.rotate_secret = rotate_secret == "yes"  # noqa: S105 (a checkbox)
        current = webhooks.get(principal, channel, number)[1]
        if spec.url == redact_url(current.url):
            spec.url = None  # shown redacted and sent back as it was: the stored URL stays
        changed = webhooks.update(principal, channel, number, spec)[1]
        return NewSecret(number, changed) if changed else "webhook-updated"

    values = {"url": redact_url(url), "events": " ".join(events), "description": description}
    values["enabled"] = enabled
    return hook_change(
        request, principal, container, webhook_id, csrf_token, act, form="edit", values=values
    )


@router.post(WEBHOOKS + "/{webhook_id}/ping")
def ping_webhook(
    request: Request,
    webhook_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    def act(webhooks: WebhookService, channel: str, number: int, queued: list[int]) -> str:
        queued.append(webhooks.ping(principal, channel, number).id)
        return "webhook-pinged"

    return hook_change(request, principal, container, webhook_id, csrf_token, act, form="ping")


@router.post(WEBHOOKS + "/{webhook_id}/deliveries/{delivery_id}/redeliver")
def redeliver(
    request: Request,
    webhook_id: str,
    delivery_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    def act(webhooks: WebhookService, channel: str, number: int, queued: list[int]) -> str:
        queued.append(webhooks.redeliver(principal, channel, number, clean(delivery_id, 64)).id)
        return "webhook-redelivered"

    return hook_change(request, principal, container, webhook_id, csrf_token, act, form="redeliver")


@router.post(WEBHOOKS + "/{webhook_id}/delete")
def delete_webhook(
    request: Request,
    webhook_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    confirm: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def act(webhooks: WebhookService, channel: str, number: int, _: list[int]) -> str:
        confirmed(confirm, "this webhook")
        webhooks.delete(principal, channel, number)
        return "webhook-deleted"

    return hook_change(request, principal, container, webhook_id, csrf_token, act, form="delete")
