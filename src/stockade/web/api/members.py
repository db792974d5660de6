"""Channel members: who may read, write or manage a channel beyond its privacy and owner."""

from __future__ import annotations

from fastapi import APIRouter, Query

from stockade.auth.models import User
from stockade.channels.members import MemberService
from stockade.channels.models import Channel
from stockade.db.engine import transaction
from stockade.web.api import API
from stockade.web.api.identity_schemas import ChannelMembers, MemberGrant, MemberPublic
from stockade.web.deps import ContainerDep, SignedIn

router = APIRouter(prefix=API, tags=["channels"])


def _members(service: MemberService, channel: Channel) -> ChannelMembers:
    _, members = service.list_for(channel)
    owner = service.session.get(User, channel.owner_id) if channel.owner_id else None
    return ChannelMembers(
        channel=channel.name,
        privacy=channel.privacy,
        owner=owner.username if owner else None,
        members=[
            MemberPublic(kind=m.kind, name=m.name, level=m.level, source=m.source) for m in members
        ],
    )


@router.get("/channels/{channel:path}/members", response_model=ChannelMembers)
def list_members(channel: str, principal: SignedIn, container: ContainerDep) -> ChannelMembers:
    """The owner and grants of a channel (needs read on it)."""
    with container.read_factory() as session:
        service = MemberService(session)
        row, _ = service.list(principal, channel)
        return _members(service, row)


@router.put("/channels/{channel:path}/members", response_model=ChannelMembers)
def grant_member(
    channel: str, body: MemberGrant, principal: SignedIn, container: ContainerDep
) -> ChannelMembers:
    """Give a user or a group `read`, `write` or `manage` (needs manage on the channel)."""
    with transaction(container.factory) as session:
        service = MemberService(session)
        service.grant(principal, channel, body.level, user=body.user, group=body.group)
        row, _ = service.list(principal, channel)
        result = _members(service, row)
    container.authenticator.forget_all()
    container.notify_changes()
    return result


@router.delete("/channels/{channel:path}/members", response_model=ChannelMembers)
def revoke_member(
    channel: str,
    principal: SignedIn,
    container: ContainerDep,
    user: str | None = Query(default=None, max_length=128),
    group: str | None = Query(default=None, max_length=256),
) -> ChannelMembers:
    with transaction(container.factory) as session:
        service = MemberService(session)
        service.revoke(principal, channel, user=user, group=group)
        row, _ = service.list(principal, channel)
        result = _members(service, row)
    container.authenticator.forget_all()
    container.notify_changes()
    return result
