"""A channel's settings from its page, for those who manage it: freeze and unfreeze, the
description, delete (with its subchannels, after a ticked confirmation).

Privacy and grants are on the members page (``channel_members.py``). Each form calls
``ChannelService`` as the REST API does; a refusal is an error page with its 4xx status.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.principal import Principal
from stockade.channels.service import ChannelChanges, ChannelService
from stockade.container import Container
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import confirmed
from stockade.web.ui.channel_admin import channel_change, channel_name, channel_url, multiline
from stockade.web.ui.forms import FormError, FormText
from stockade.web.ui.render import error_page

router = APIRouter(include_in_schema=False)


def _settings_change(
    request: Request,
    principal: Principal,
    container: Container,
    name: str,
    csrf_token: str,
    make: Callable[[Session, str], tuple[str, str]],
) -> Response:
    """One change to a channel's settings; a refusal is an error page (the form is one button)."""
    channel = name.strip("/")

    def redraw(error: FormError) -> Response:
        return error_page(request, error.status, "Not changed", error.message)

    return channel_change(
        request,
        principal,
        container,
        csrf_token,
        lambda session: make(session, channel),
        back=channel_url(channel),
        redraw=redraw,
    )


def _set_frozen(
    request: Request,
    principal: Principal,
    container: Container,
    name: str,
    csrf_token: str,
    *,
    frozen: bool,
) -> Response:
    def make(session: Session, channel: str) -> tuple[str, str]:
        changes = ChannelChanges(frozen=frozen)
        ChannelService(session).update(principal, channel_name(channel), changes)
        return channel_url(channel), "channel-frozen" if frozen else "channel-unfrozen"

    return _settings_change(request, principal, container, name, csrf_token, make)


@router.post("/channels/{name:path}/freeze")
def freeze(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    return _set_frozen(request, principal, container, name, csrf_token, frozen=True)


@router.post("/channels/{name:path}/unfreeze")
def unfreeze(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    return _set_frozen(request, principal, container, name, csrf_token, frozen=False)


@router.post("/channels/{name:path}/description")
def describe(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    description: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(session: Session, channel: str) -> tuple[str, str]:
        changes = ChannelChanges(description=multiline(description, 10_000))
        ChannelService(session).update(principal, channel_name(channel), changes)
        return channel_url(channel), "channel-updated"

    return _settings_change(request, principal, container, name, csrf_token, make)


@router.post("/channels/{name:path}/settings")
def scanning_and_signing(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    scan_uploads: FormText = "",
    scan_suspicious: FormText = "",
    scan_errors: FormText = "",
    sign: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    """What ``stockade channel update --scan-… --sign`` changes: the scan settings (which need
    security:manage; a form without them leaves them as they are) and signing."""

    def make(session: Session, channel: str) -> tuple[str, str]:
        changes = ChannelChanges(
            scan_uploads=scan_uploads or None,
            scan_suspicious=scan_suspicious or None,
            scan_errors=scan_errors or None,
            sign=sign == "yes",
        )
        ChannelService(session).update(principal, channel_name(channel), changes)
        return channel_url(channel), "channel-updated"

    return _settings_change(request, principal, container, name, csrf_token, make)


@router.post("/channels/{name:path}/delete")
def delete(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    confirm: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(session: Session, channel: str) -> tuple[str, str]:
        confirmed(confirm, "the channel")
        ChannelService(session).delete(principal, channel_name(channel))
        return "/", "channel-deleted"

    return _settings_change(request, principal, container, name, csrf_token, make)
