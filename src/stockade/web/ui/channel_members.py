"""A channel's access: privacy and grants to users and groups, ``/channels/{name}/members``.

Signed-in principals who may read the channel see it; those who manage it may change it. Channel
names hold ``/``, so these routes are mounted before the channel page's catch-all route.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from stockade.auth.access import AccessService
from stockade.auth.models import User
from stockade.auth.permissions import Permission, Privacy
from stockade.auth.principal import Principal
from stockade.channels.members import GRANT_LEVELS, MemberService
from stockade.channels.service import ChannelChanges, ChannelService, channel_ref
from stockade.container import Container
from stockade.core.errors import AuthenticationError, NotFoundError
from stockade.db.engine import transaction
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import require_choice
from stockade.web.ui.forms import FormError, FormText, clean, done, notice_of, submit
from stockade.web.ui.pages import package_page
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
HOLDER_KINDS = ("user", "group")
PRIVACIES = tuple(p.value for p in Privacy)
PACKAGES = "/packages"  # a reserved segment: ``…/packages/members`` is the package "members"


def members_url(channel: str) -> str:
    return f"/channels/{channel}/members"


def _channel_name(name: str) -> str:
    name = name.strip("/")
    if not name or not name.isprintable():
        raise NotFoundError("there is nothing at this address")
    return name


def members_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
) -> Response:
    if principal.is_anonymous:
        raise AuthenticationError("sign in to see who may use this channel")
    with container.read_factory() as session:
        service = MemberService(session)
        channel, members = service.list(principal, _channel_name(name))
        owner = session.get(User, channel.owner_id) if channel.owner_id else None
        may_manage = AccessService().can(principal, Permission.CHANNEL_MANAGE, channel_ref(channel))
        context = {
            "title": f"Members · {channel.name}",
            "channel": channel,
            "owner": owner,
            "members": members,
            "may_manage": may_manage,
            "privacies": PRIVACIES,
            "grant_levels": GRANT_LEVELS,
            "error": error,
            "notice": None if error else notice_of(request),
        }
        return render(request, "members.html", context, status=error.status if error else 200)


@router.get("/channels/{name:path}/members")
def show_members(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    if name.endswith(PACKAGES):  # the package called "members", not this page
        build = request.query_params.get("build", "")
        channel = name.removesuffix(PACKAGES)
        return package_page(request, channel, "members", principal, container, build)
    return guarded(request, principal, lambda: members_page(request, container, principal, name))


def _members_change(
    request: Request,
    principal: Principal,
    container: Container,
    name: str,
    csrf_token: str,
    make: Callable[[MemberService, str], str],
    *,
    form: str,
    values: dict[str, str] | None = None,
) -> Response:
    """Run one change on the members page; ``make`` returns the notice to show."""
    channel = name.strip("/")

    def change() -> Response:
        with transaction(container.factory) as session:
            notice = make(MemberService(session), _channel_name(channel))
        container.authenticator.forget_all()
        container.notify_changes()
        return done(members_url(channel), notice)

    def redraw(error: FormError) -> Response:
        return members_page(request, container, principal, channel, error=error)

    return submit(
        request,
        principal,
        csrf_token,
        back=members_url(channel),
        change=change,
        redraw=redraw,
        form=form,
        values=values,
    )


@router.post("/channels/{name:path}/members/privacy")
def change_privacy(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    privacy: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(service: MemberService, channel: str) -> str:
        choice = require_choice(privacy, PRIVACIES, "privacy")
        ChannelService(service.session).update(principal, channel, ChannelChanges(privacy=choice))
        return "privacy-changed"

    return _members_change(request, principal, container, name, csrf_token, make, form="privacy")


@router.post("/channels/{name:path}/members/grant")
def grant(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    holder_kind: FormText = "group",
    holder: FormText = "",
    level: FormText = "read",
    csrf_token: FormText = "",
) -> Response:
    def make(service: MemberService, channel: str) -> str:
        kind = require_choice(holder_kind, HOLDER_KINDS, "holder_kind")
        who = clean(holder, 256)
        if kind == "user":
            service.grant(principal, channel, level, user=who)
        else:
            service.grant(principal, channel, level, group=who)
        return "grant-saved"

    values = {"holder_kind": holder_kind, "holder": holder, "level": level}
    return _members_change(
        request, principal, container, name, csrf_token, make, form="grant", values=values
    )


@router.post("/channels/{name:path}/members/revoke")
def revoke(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    holder_kind: FormText = "",
    holder: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(service: MemberService, channel: str) -> str:
        kind = require_choice(holder_kind, HOLDER_KINDS, "holder_kind")
        who = clean(holder, 256)
        if kind == "user":
            service.revoke(principal, channel, user=who)
        else:
            service.revoke(principal, channel, group=who)
        return "grant-removed"

    return _members_change(request, principal, container, name, csrf_token, make, form="members")
