"""A channel's notices, ``/channels/{name}/notices``: the messages conda shows its users.

Readers of the channel see the list; those who manage it add and remove notices (the checks of
``NoticeService``, which records each change in the audit log).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.notices import NOTICE_LEVELS, NoticeService
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.channel_admin import (
    actions_for,
    channel_change,
    channel_name,
    is_package_path,
    multiline,
)
from stockade.web.ui.forms import FormError, FormText, notice_of
from stockade.web.ui.pages import package_page
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)


def notices_url(channel: str) -> str:
    return f"/channels/{channel}/notices"


def notices_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
) -> Response:
    with container.read_factory() as session:
        channel = ChannelService(session).get(
            principal, channel_name(name), Permission.CHANNEL_READ
        )
        context = {
            "title": f"Notices · {channel.name}",
            "channel": channel,
            "actions": actions_for(principal, channel),
            "notices": NoticeService(session, container.blobs).list(channel),
            "levels": NOTICE_LEVELS,
            "error": error,
            "notice": None if error else notice_of(request),
        }
        return render(
            request, "channel_notices.html", context, status=error.status if error else 200
        )


@router.get("/channels/{name:path}/notices")
def show_notices(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    if is_package_path(name):  # the package called "notices"
        channel = name.strip("/").removesuffix("/packages")
        build = request.query_params.get("build", "")
        return package_page(request, channel, "notices", principal, container, build)
    return guarded(request, principal, lambda: notices_page(request, container, principal, name))


def _days(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 6:  # int() refuses "²"
        raise InvalidInputError(
            "expires in: a whole number of days, or empty for never", field="expires_in_days"
        )
    return int(value)


@router.post("/channels/{name:path}/notices")
def add_notice(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    message: FormText = "",
    level: FormText = "info",
    expires_in_days: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    channel = name.strip("/")

    def make(session: Session) -> tuple[str, str]:
        NoticeService(session, container.blobs).create(
            principal,
            channel_name(channel),
            multiline(message, 4001),  # one more than allowed: too long is refused, not cut
            level=level,
            expires_in_days=_days(expires_in_days),
        )
        return notices_url(channel), "notice-added"

    values = {"message": message, "level": level, "expires_in_days": expires_in_days}
    return channel_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=notices_url(channel),
        redraw=lambda e: notices_page(request, container, principal, channel, error=e),
        form="notice",
        values=values,
    )


@router.post("/channels/{name:path}/notices/{notice_id}/remove")
def remove_notice(
    request: Request,
    name: str,
    notice_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    channel = name.strip("/")

    def make(session: Session) -> tuple[str, str]:
        if not (notice_id.isascii() and notice_id.isdigit()) or len(notice_id) > 18:
            raise InvalidInputError(f"{notice_id!r} is not a notice number", field="notice_id")
        NoticeService(session, container.blobs).delete(
            principal, channel_name(channel), int(notice_id)
        )
        return notices_url(channel), "notice-removed"

    return channel_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=notices_url(channel),
        redraw=lambda e: notices_page(request, container, principal, channel, error=e),
    )
