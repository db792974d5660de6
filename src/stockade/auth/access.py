"""The one permission service every surface asks: API, conda endpoints, UI, CLI via the API."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from stockade.auth.errors import AccessDeniedError
from stockade.auth.models import ChannelGrant
from stockade.auth.permissions import CHANNEL_LEVEL_NEEDED, Level, Permission, Privacy
from stockade.auth.principal import Principal
from stockade.core.errors import AuthenticationError, NotFoundError


@dataclass(frozen=True)
class ChannelRef:
    """What access decisions need to know about a channel."""

    id: int
    name: str
    privacy: str
    owner_id: int | None


class ChannelHiddenError(NotFoundError):
    code = "channel:not-found"


class AccessService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def require(self, principal: Principal, permission: Permission) -> None:
        """Global permissions (not tied to a channel)."""
        if principal.is_admin:
            return
        if principal.is_anonymous:
            raise AuthenticationError("sign in or pass a token to do this")
        if permission is Permission.CHANNEL_CREATE:
            return  # the built-in `author` role: any signed-in principal
        raise AccessDeniedError(f"{permission} needs the admin role")

    def channel_level(self, principal: Principal, channel: ChannelRef) -> Level:
        if principal.is_admin:
            return Level.MANAGE
        if principal.user_id is not None and principal.user_id == channel.owner_id:
            return Level.MANAGE
        base = Level.NONE
        if channel.privacy == Privacy.PUBLIC or (
            channel.privacy == Privacy.AUTHENTICATED and not principal.is_anonymous
        ):
            base = Level.READ
        if principal.is_anonymous:
            return base
        return max(base, self._granted_level(principal, channel.id))

    def _granted_level(self, principal: Principal, channel_id: int) -> Level:
        who = [ChannelGrant.user_id == principal.user_id]
        if principal.group_ids:
            who.append(ChannelGrant.group_id.in_(principal.group_ids))
        levels = self.session.scalars(
            select(ChannelGrant.level).where(ChannelGrant.channel_id == channel_id, or_(*who))
        ).all()
        return max((Level.parse(v) for v in levels), default=Level.NONE)

    def can(self, principal: Principal, permission: Permission, channel: ChannelRef) -> bool:
        return self.channel_level(principal, channel) >= CHANNEL_LEVEL_NEEDED[permission]

    def require_channel(
        self, principal: Principal, permission: Permission, channel: ChannelRef
    ) -> None:
        """Raise 401 for anonymous without read, 404 for others without read, 403 below the level."""
        level = self.channel_level(principal, channel)
        if level >= CHANNEL_LEVEL_NEEDED[permission]:
            return
        if level == Level.NONE:
            if principal.is_anonymous:
                raise AuthenticationError(f"channel {channel.name!r} needs authentication")
            raise ChannelHiddenError(f"channel {channel.name!r} not found")
        raise AccessDeniedError(f"{permission} on channel {channel.name!r} is not granted to you")
