"""Browsing pages: the channel list, a channel, a package (search: ``search_page.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.browse import BrowseService
from stockade.channels.publication_state import failing_publications
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import NotFoundError
from stockade.mirroring.service import MirrorService
from stockade.scanning.verdicts import build_verdicts
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.channel_admin import actions_for
from stockade.web.ui.forms import notice_of
from stockade.web.ui.package_view import (
    build_details,
    build_signatures,
    package_downloads,
    select_build,
)
from stockade.web.ui.render import base_url, guarded, render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 200
MAX_QUERY = 256
Text = Annotated[str, Query()]


def clean_query(value: str) -> str:
    """Search text as typed, without control characters (PostgreSQL refuses NUL)."""
    return "".join(c for c in value if c.isprintable()).strip()[:MAX_QUERY]


def _require_printable(*values: str) -> None:
    if not all(v.isprintable() for v in values):
        raise NotFoundError("there is nothing at this address")


def _page_number(value: str) -> int:
    try:
        return max(1, min(int(value), 1_000_000))
    except ValueError:
        return 1


def _conda_url(request: Request, channel: str) -> str:
    return f"{base_url(request)}/conda/{channel}"


@router.get("/")
def home(request: Request, principal: CurrentPrincipal, container: ContainerDep) -> Response:
    def build() -> Response:
        with container.read_factory() as session:
            channels = BrowseService(session).overview(principal)
            context = {"title": "Channels", "channels": channels, "notice": notice_of(request)}
            return render(request, "home.html", context)

    return guarded(request, principal, build)


@router.get("/channels")
def channels_index() -> Response:
    return RedirectResponse("/", status_code=303)


@router.get("/channels/{name:path}/packages/{package}")
def package_page(
    request: Request,
    name: str,
    package: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    build: Text = "",
) -> Response:
    return guarded(
        request,
        principal,
        lambda: _package(request, container, principal, name.strip("/"), package, build),
    )


def _package(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    package: str,
    wanted: str,
) -> Response:
    _require_printable(name, package, wanted)
    with container.read_factory() as session:
        channel = ChannelService(session).get(principal, name, Permission.CHANNEL_READ)
        browse = BrowseService(session)
        builds = browse.builds(channel, package)
        selected = select_build(builds, wanted)
        details = build_details(selected, browse.content(selected.sha256))
        context = {
            "title": f"{package} · {channel.name}",
            "channel": channel,
            "package": package,
            "builds": builds,
            "details": details,
            "verdicts": build_verdicts(session, builds),
            "signatures": build_signatures(channel, builds),
            "downloads": package_downloads(session, channel.id, package),
            "conda_url": _conda_url(request, channel.name),
            "base": base_url(request),
        }
        return render(request, "package.html", context)


@router.get("/channels/{name:path}")
def channel_page(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    q: Text = "",
    page: Text = "1",
) -> Response:
    return guarded(
        request,
        principal,
        lambda: _channel(request, container, principal, name.strip("/"), q, _page_number(page)),
    )


def _channel(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    name_filter: str,
    page: int,
) -> Response:
    name_filter = clean_query(name_filter)
    _require_printable(name)
    with container.read_factory() as session:
        channel = ChannelService(session).get(principal, name, Permission.CHANNEL_READ)
        browse = BrowseService(session)
        listing = browse.packages(
            channel, contains=name_filter or None, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        context = {
            "title": channel.name,
            "channel": channel,
            "subdirs": browse.subdirs(channel),
            "listing": listing,
            "name_filter": name_filter,
            "page": page,
            "pages": max(1, -(-listing.total // PAGE_SIZE)),
            "conda_url": _conda_url(request, channel.name),
            "base": base_url(request),
            "failing": failing_publications(session, [channel.id]),
            "actions": actions_for(principal, channel),  # channel work links (channel_admin)
            "notice": notice_of(request),
            "mirrors": [
                m.name
                for m in MirrorService(session, container.secrets).list_visible(
                    principal, channel=channel.name
                )
            ],
        }
        return render(request, "channel.html", context)
