"""Channel work in the pages: what a principal may do on a channel, and creating channels.

The other channel pages are in the ``channel_admin_*`` modules (files: upload, copy, move,
remove; patches; notices; settings: freeze, description, delete); they share
:func:`actions_for` (which links and forms a principal sees) and :func:`channel_change` (one
change from a form, in a transaction, with domain errors shown on the page). Each handler calls
the same domain service as the REST API with the signed-in principal, so the pages allow exactly
what the API allows. Channel names hold ``/``: the pages end in reserved segments (``files``,
``patches``, ``notices``; a package of that name is ``…/packages/<name>``, handed to the package
page), forms are POST only, and all are mounted before the channel page's catch-all route.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.access import AccessService
from stockade.auth.permissions import Level, Permission, Privacy
from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.channels.service import ChannelService, channel_ref
from stockade.container import Container
from stockade.core.errors import AuthenticationError, NotFoundError
from stockade.db.engine import transaction
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.forms import FormError, FormText, clean, done, submit
from stockade.web.ui.render import error_page, guarded, render

router = APIRouter(include_in_schema=False)
PRIVACIES = tuple(p.value for p in Privacy)
NEW_CHANNEL = "/new-channel"
PACKAGES = "/packages"  # a reserved segment: ``…/packages/files`` is the package called "files"


@dataclass(frozen=True)
class ChannelActions:
    """What the principal may do on one channel (the same checks the services make)."""

    upload: bool = False  # artifact:write: upload, patches, copy into it
    remove: bool = False  # artifact:manage: remove, move out of it
    manage: bool = False  # channel:manage: freeze, notices, subchannels, signing
    security: bool = False  # security:manage too: the channel's scan settings
    signed_in: bool = False

    @property
    def any(self) -> bool:
        return self.upload or self.remove or self.manage


def actions_for(principal: Principal, channel: Channel) -> ChannelActions:
    if principal.is_anonymous:
        return ChannelActions()
    access, ref = AccessService(), channel_ref(channel)
    return ChannelActions(
        upload=access.can(principal, Permission.ARTIFACT_WRITE, ref),
        remove=access.can(principal, Permission.ARTIFACT_MANAGE, ref),
        manage=access.can(principal, Permission.CHANNEL_MANAGE, ref),
        security=access.allowed(principal, Permission.SECURITY_MANAGE),
        signed_in=True,
    )


def channel_url(channel: str) -> str:
    return f"/channels/{channel}"


def channel_name(name: str) -> str:
    name = name.strip("/")
    if not name or not name.isprintable():
        raise NotFoundError("there is nothing at this address")
    return name


def multiline(value: str, limit: int) -> str:
    """A textarea's text: trimmed, without control characters but line breaks and tabs (the
    database refuses NUL), at most ``limit`` long."""
    kept = "".join(c for c in value if c.isprintable() or c in "\n\t")
    return kept.strip()[:limit]


def is_package_path(name: str) -> bool:
    """``/channels/x/packages/files``: the package called ``files``, not a channel sub-page."""
    return name.strip("/").endswith(PACKAGES)


def require_signed_in(principal: Principal, what: str) -> None:
    if principal.is_anonymous:
        raise AuthenticationError(f"sign in to {what}")


def writable_channels(
    session: Session, principal: Principal, *, but: int | None = None
) -> list[str]:
    """Names of the channels the principal may upload to (copy and move targets)."""
    service = ChannelService(session)
    access = service.access
    return [
        c.name
        for c in service.list_visible(principal)
        if c.id != but
        and access.channel_level(principal, channel_ref(c), Permission.ARTIFACT_WRITE)
        >= Level.WRITE
    ]


def channel_change(
    request: Request,
    principal: Principal,
    container: Container,
    csrf_token: str,
    make: Callable[[Session], tuple[str, str]],
    *,
    back: str,
    redraw: Callable[[FormError], Response],
    form: str = "",
    values: dict[str, str] | None = None,
) -> Response:
    """One change from a form: ``make`` runs in a transaction and returns (url, notice)."""

    def change() -> Response:
        with transaction(container.factory) as session:
            url, notice = make(session)
        container.notify_changes()
        return done(url, notice)

    return submit(
        request,
        principal,
        csrf_token,
        back=back,
        change=change,
        redraw=redraw,
        form=form,
        values=values,
    )


# --- create ---------------------------------------------------------------------------------


def parents_for(session: Session, principal: Principal) -> list[str]:
    """Channels under which the principal may create a subchannel."""
    service = ChannelService(session)
    return [
        c.name
        for c in service.list_visible(principal)
        if service.access.can(principal, Permission.SUBCHANNEL_CREATE, channel_ref(c))
        and c.name.count("/") < 3
    ]


def new_channel_page(
    request: Request,
    container: Container,
    principal: Principal,
    *,
    error: FormError | None = None,
) -> Response:
    require_signed_in(principal, "create a channel")
    with container.read_factory() as session:
        top_level = AccessService().allowed(principal, Permission.CHANNEL_CREATE)
        parents = parents_for(session, principal)
    if not top_level and not parents:
        detail = (
            "you may not create channels: ask an administrator for the channel:create "
            "permission, or for manage on a channel to create subchannels under it"
        )
        return error_page(request, 403, "Permission denied", detail)
    context = {
        "title": "New channel",
        "top_level": top_level,
        "parents": parents,
        "parent": request.query_params.get("parent", ""),
        "privacies": PRIVACIES,
        "error": error,
        "notice": None,
    }
    return render(request, "channel_new.html", context, status=error.status if error else 200)


@router.get(NEW_CHANNEL)
def show_new_channel(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: new_channel_page(request, container, principal))


@router.post(NEW_CHANNEL)
def create_channel(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    name: FormText = "",
    parent: FormText = "",
    privacy: FormText = "",
    description: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    leaf, above = clean(name, 512).strip("/"), clean(parent, 512).strip("/")
    full = f"{above}/{leaf}" if above else leaf
    text = multiline(description, 10_000)

    def make(session: Session) -> tuple[str, str]:
        ChannelService(session).create(
            principal, full, privacy=privacy or None, description=text or None
        )
        return channel_url(full), "channel-created"

    values = {"name": name, "parent": parent, "privacy": privacy, "description": description}
    return channel_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=NEW_CHANNEL,
        redraw=lambda e: new_channel_page(request, container, principal, error=e),
        form="create",
        values=values,
    )
