"""Channel webhooks: register endpoints, try them, follow their deliveries (SPEC §7).

Every route needs ``manage`` on the channel (its owner, a manage grant, an admin). The secret is in
the answer of a create (and of an update that changed it) only. Calls are made by jobs after the
commit that wrote them: ``ping`` and ``redeliver`` answer 202 with the delivery; follow it in
``…/deliveries``. Registered before the channels router, whose ``/channels/{channel:path}`` routes
would take these paths.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session

from stockade.auth.models import User
from stockade.channels.models import Channel
from stockade.container import Container
from stockade.core.handoff import hand_off
from stockade.db.engine import transaction
from stockade.vulns.models import Webhook, WebhookDelivery
from stockade.vulns.webhooks import WebhookService, WebhookSpec
from stockade.web.api import API
from stockade.web.api.webhook_schemas import (
    DeliveryPublic,
    WebhookCreate,
    WebhookPublic,
    WebhookUpdate,
    WebhookWithSecret,
)
from stockade.web.deps import ContainerDep, SignedIn

router = APIRouter(prefix=API, tags=["webhooks"])
HOOKS = "/channels/{channel:path}/webhooks"
HookId = Annotated[int, Path(ge=1, le=2**62)]
DeliveryId = Annotated[str, Path(min_length=1, max_length=64)]


def webhook_public(session: Session, channel: Channel, hook: Webhook) -> WebhookPublic:
    creator = session.get(User, hook.created_by_id) if hook.created_by_id else None
    return WebhookPublic(
        id=hook.id,
        channel=channel.name,
        url=hook.url,
        events=list(hook.events or []),
        enabled=hook.enabled,
        description=hook.description,
        created_by=creator.username if creator else None,
        created_at=hook.created_at,
        updated_at=hook.updated_at,
        href=f"{API}/channels/{channel.name}/webhooks/{hook.id}",
    )


def with_secret(public: WebhookPublic, secret: str | None) -> WebhookWithSecret:
    return WebhookWithSecret(**public.model_dump(), secret=secret)


def delivery_public(row: WebhookDelivery) -> DeliveryPublic:
    return DeliveryPublic(
        delivery_id=row.delivery_id,
        event=row.event,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        payload=dict(row.payload or {}),
    )


def _service(session: Session, container: Container) -> WebhookService:
    return WebhookService(
        session,
        container.secrets,
        allow_loopback=container.settings.webhooks.allow_loopback,
        outbound=container.settings.outbound.policy(),
    )


@router.get(HOOKS, response_model=list[WebhookPublic])
def list_webhooks(
    channel: str, principal: SignedIn, container: ContainerDep
) -> list[WebhookPublic]:
    with container.read_factory() as session:
        row, hooks = _service(session, container).list(principal, channel)
        return [webhook_public(session, row, h) for h in hooks]


@router.post(HOOKS, response_model=WebhookWithSecret, status_code=201)
def create_webhook(
    channel: str, body: WebhookCreate, principal: SignedIn, container: ContainerDep
) -> WebhookWithSecret:
    """Add a webhook. The answer holds its ``secret``: keep it, it is never shown again."""
    spec = WebhookSpec(
        url=body.url,
        events=list(body.events),
        description=body.description,
        enabled=body.enabled,
        secret=body.secret,
    )
    with transaction(container.factory) as session:
        service = _service(session, container)
        hook, secret = service.create(principal, channel, spec)
        return with_secret(
            webhook_public(session, service.channel(principal, channel), hook), secret
        )


@router.get(f"{HOOKS}/{{webhook_id}}", response_model=WebhookPublic)
def show_webhook(
    channel: str, webhook_id: HookId, principal: SignedIn, container: ContainerDep
) -> WebhookPublic:
    with container.read_factory() as session:
        row, hook = _service(session, container).get(principal, channel, webhook_id)
        return webhook_public(session, row, hook)


@router.patch(f"{HOOKS}/{{webhook_id}}", response_model=WebhookWithSecret)
def update_webhook(
    channel: str,
    webhook_id: HookId,
    body: WebhookUpdate,
    principal: SignedIn,
    container: ContainerDep,
) -> WebhookWithSecret:
    """Change the fields given; ``secret`` in the answer only when it changed."""
    spec = WebhookSpec(
        url=body.url,
        events=list(body.events) if body.events is not None else None,
        description=body.description,
        enabled=body.enabled,
        secret=body.secret,
        rotate_secret=body.rotate_secret,
    )
    with transaction(container.factory) as session:
        service = _service(session, container)
        hook, secret = service.update(principal, channel, webhook_id, spec)
        row = service.channel(principal, channel)
        return with_secret(webhook_public(session, row, hook), secret)


@router.delete(f"{HOOKS}/{{webhook_id}}", status_code=204)
def delete_webhook(
    channel: str, webhook_id: HookId, principal: SignedIn, container: ContainerDep
) -> Response:
    with transaction(container.factory) as session:
        _service(session, container).delete(principal, channel, webhook_id)
    return Response(status_code=204)


@router.post(f"{HOOKS}/{{webhook_id}}/ping", response_model=DeliveryPublic, status_code=202)
def ping_webhook(
    channel: str, webhook_id: HookId, principal: SignedIn, container: ContainerDep
) -> DeliveryPublic:
    """Queue a ``ping`` call; follow it in ``…/deliveries``."""
    with transaction(container.factory) as session:
        row = _service(session, container).ping(principal, channel, webhook_id)
        public, row_id = delivery_public(row), row.id
    hand_off(container.dispatch_webhooks, [row_id], "webhook deliveries")
    return public


@router.get(f"{HOOKS}/{{webhook_id}}/deliveries", response_model=list[DeliveryPublic])
def list_deliveries(
    channel: str,
    webhook_id: HookId,
    principal: SignedIn,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryPublic]:
    """The most recent deliveries first, with their state and the last attempt's outcome."""
    with container.read_factory() as session:
        rows = _service(session, container).deliveries(principal, channel, webhook_id, limit=limit)
        return [delivery_public(r) for r in rows]


@router.post(
    f"{HOOKS}/{{webhook_id}}/deliveries/{{delivery_id}}/redeliver",
    response_model=DeliveryPublic,
    status_code=202,
)
def redeliver(
    channel: str,
    webhook_id: HookId,
    delivery_id: DeliveryId,
    principal: SignedIn,
    container: ContainerDep,
) -> DeliveryPublic:
    """Send a delivery again (same ``delivery_id`` and body), its attempts counted afresh."""
    with transaction(container.factory) as session:
        row = _service(session, container).redeliver(principal, channel, webhook_id, delivery_id)
        public, row_id = delivery_public(row), row.id
    hand_off(container.dispatch_webhooks, [row_id], "webhook deliveries")
    return public
