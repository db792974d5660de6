"""Whose downloads a principal may see (SPEC §10): admins every channel's, channel owners and
managers their channels' (``channel:manage`` on the channel, through ownership, a grant, a
parent's or a role). Lives here, above ``audit``, because the decision needs channel refs."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.access import AccessService
from stockade.auth.errors import AccessDeniedError
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.errors import ChannelNotFoundError
from stockade.channels.models import Channel
from stockade.channels.privacy import refs_for
from stockade.channels.service import ChannelService
from stockade.core.errors import AuthenticationError


@dataclass(frozen=True)
class DownloadScope:
    """The channels whose downloads are shown: ``everything`` (admins, no channel filter) also
    covers downloads of channels deleted since; ``names`` maps channel id -> name."""

    everything: bool
    names: dict[int, str]

    @property
    def channel_ids(self) -> list[int] | None:
        """None: no restriction."""
        return None if self.everything else sorted(self.names)

    def name(self, channel_id: int) -> str:
        return self.names.get(channel_id, f"#{channel_id} (deleted)")


def download_scope(
    session: Session, principal: Principal, channel: str | None = None
) -> DownloadScope:
    """The caller's scope, narrowed to ``channel`` when given (404 if hidden, 403 if readable but
    not managed); 401 anonymous, 403 for a caller who manages no channel."""
    if principal.is_anonymous:
        raise AuthenticationError("sign in or pass a token to see downloads")
    access = AccessService(session)
    auditor = access.allowed(principal, Permission.AUDIT_READ)
    if channel is not None:
        service = ChannelService(session)
        if not auditor:
            found = service.get(principal, channel, Permission.CHANNEL_MANAGE)
        elif (found_or_none := service.find(channel)) is not None:
            found = found_or_none
        else:
            raise ChannelNotFoundError(f"channel {channel!r} not found")
        return DownloadScope(False, {found.id: found.name})
    channels = session.scalars(select(Channel).order_by(Channel.name)).all()
    if auditor:
        return DownloadScope(True, {c.id: c.name for c in channels})
    refs = refs_for(session, channels)
    managed = {
        c.id: c.name
        for c in channels
        if access.can(principal, Permission.CHANNEL_MANAGE, refs[c.id])
    }
    if not managed:
        raise AccessDeniedError(
            "downloads are shown to admins and to the owners and managers of a channel",
            code="downloads:denied",
        )
    return DownloadScope(False, managed)
