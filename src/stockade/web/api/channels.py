"""Channels: create, list, show, update (privacy, description, freeze), delete, subdirs, notices."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from stockade.auth.permissions import Permission
from stockade.channels.notices import NoticeService
from stockade.channels.publication_state import failing_publications, subdir_states
from stockade.channels.service import ChannelChanges, ChannelService
from stockade.db.engine import transaction
from stockade.web.api import API
from stockade.web.api.presenters import channel_public, subdir_public
from stockade.web.api.schemas import (
    ChannelCreate,
    ChannelPublic,
    ChannelUpdate,
    NoticeCreate,
    NoticePublic,
    SubdirPublic,
)
from stockade.web.deps import ContainerDep, CurrentPrincipal, SignedIn

router = APIRouter(prefix=API, tags=["channels"])


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.post("/channels", response_model=ChannelPublic, status_code=201)
def create_channel(
    body: ChannelCreate, request: Request, principal: SignedIn, container: ContainerDep
) -> ChannelPublic:
    with transaction(container.factory) as session:
        channel = ChannelService(session).create(
            principal, body.name, privacy=body.privacy, description=body.description
        )
        public = channel_public(channel, base_url(request))
    container.notify_changes()
    return public


@router.get("/channels", response_model=list[ChannelPublic])
def list_channels(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    prefix: str | None = None,
) -> list[ChannelPublic]:
    with container.read_factory() as session:
        service = ChannelService(session)
        return [
            channel_public(c, base_url(request))
            for c in service.list_visible(principal, prefix=prefix)
        ]


@router.get("/channels/{channel:path}/subdirs", response_model=list[SubdirPublic])
def list_subdirs(
    channel: str, principal: CurrentPrincipal, container: ContainerDep
) -> list[SubdirPublic]:
    with container.read_factory() as session:
        row = ChannelService(session).get(principal, channel, Permission.CHANNEL_READ)
        return [subdir_public(r, scanning) for r, scanning in subdir_states(session, row.id)]


@router.get("/channels/{channel:path}/notices", response_model=list[NoticePublic])
def list_notices(
    channel: str, principal: CurrentPrincipal, container: ContainerDep
) -> list[NoticePublic]:
    with container.read_factory() as session:
        row = ChannelService(session).get(principal, channel, Permission.CHANNEL_READ)
        return [
            NoticePublic.model_validate(n, from_attributes=True)
            for n in NoticeService(session, container.blobs).list(row)
        ]


@router.post("/channels/{channel:path}/notices", response_model=NoticePublic, status_code=201)
def create_notice(
    channel: str, body: NoticeCreate, principal: SignedIn, container: ContainerDep
) -> NoticePublic:
    with transaction(container.factory) as session:
        notice = NoticeService(session, container.blobs).create(
            principal, channel, body.message, level=body.level, expires_in_days=body.expires_in_days
        )
        public = NoticePublic.model_validate(notice, from_attributes=True)
    container.notify_changes()
    return public


@router.delete("/channels/{channel:path}/notices/{notice_id}", status_code=204)
def delete_notice(
    channel: str, notice_id: int, principal: SignedIn, container: ContainerDep
) -> Response:
    with transaction(container.factory) as session:
        NoticeService(session, container.blobs).delete(principal, channel, notice_id)
    container.notify_changes()
    return Response(status_code=204)


@router.post("/channels/{channel:path}/freeze", response_model=ChannelPublic)
def freeze(
    channel: str, request: Request, principal: SignedIn, container: ContainerDep
) -> ChannelPublic:
    return _update(channel, ChannelChanges(frozen=True), request, principal, container)


@router.post("/channels/{channel:path}/unfreeze", response_model=ChannelPublic)
def unfreeze(
    channel: str, request: Request, principal: SignedIn, container: ContainerDep
) -> ChannelPublic:
    return _update(channel, ChannelChanges(frozen=False), request, principal, container)


@router.get("/channels/{channel:path}", response_model=ChannelPublic)
def show_channel(
    channel: str, request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> ChannelPublic:
    with container.read_factory() as session:
        service = ChannelService(session)
        row = service.get(principal, channel, Permission.CHANNEL_READ)
        public = channel_public(row, base_url(request), service.stats(row))
        public.failing_subdirs = [f.subdir for f in failing_publications(session, [row.id])]
        return public


@router.patch("/channels/{channel:path}", response_model=ChannelPublic)
def update_channel(
    channel: str,
    body: ChannelUpdate,
    request: Request,
    principal: SignedIn,
    container: ContainerDep,
) -> ChannelPublic:
    changes = ChannelChanges(
        description=body.description,
        privacy=body.privacy,
        frozen=body.frozen,
        scan_uploads=body.scan_uploads,
        scan_suspicious=body.scan_suspicious,
        scan_errors=body.scan_errors,
        sign=body.sign,
    )
    return _update(channel, changes, request, principal, container)


def _update(
    channel: str,
    changes: ChannelChanges,
    request: Request,
    principal: SignedIn,
    container: ContainerDep,
) -> ChannelPublic:
    with transaction(container.factory) as session:
        row = ChannelService(session).update(principal, channel, changes)
        public = channel_public(row, base_url(request))
    container.notify_changes()
    return public


@router.delete("/channels/{channel:path}", status_code=204)
def delete_channel(channel: str, principal: SignedIn, container: ContainerDep) -> Response:
    with transaction(container.factory) as session:
        ChannelService(session).delete(principal, channel)
    container.notify_changes()
    return Response(status_code=204)
