"""The one permission service every surface asks: API, conda endpoints, UI, CLI via the API.

Decisions need no database query: the principal carries its permissions and channel grants.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from stockade.auth.errors import AccessDeniedError
from stockade.auth.permissions import CHANNEL_LEVEL_NEEDED, Category, Level, Permission, Privacy
from stockade.auth.principal import Principal
from stockade.core.errors import AuthenticationError, NotFoundError


@dataclass(frozen=True)
class ChannelRef:
    """What access decisions need to know about a channel.

    ``privacy`` is the effective privacy: the strictest along the channel's path (a subchannel is
    never more open than its parent). ``lineage`` holds ``(id, owner id)`` of every ancestor:
    owning or being granted a parent counts for its subchannels too.
    """

    id: int
    name: str
    privacy: str
    owner_id: int | None
    lineage: tuple[tuple[int, int | None], ...] = ()


class ChannelHiddenError(NotFoundError):
    code = "channel:not-found"


def _role_floor(principal: Principal, permission: Permission) -> Level:
    """The level on every channel that global permissions give."""
    if principal.has(permission):
        return CHANNEL_LEVEL_NEEDED[permission]
    if principal.has(Permission.CHANNEL_MANAGE):
        return Level.MANAGE
    if principal.has(Permission.ARTIFACT_WRITE):
        return Level.WRITE
    if principal.has(Permission.CHANNEL_READ) or principal.has(Permission.ARTIFACT_READ):
        return Level.READ
    return Level.NONE


def _scope_cap(principal: Principal, permission: Permission) -> Level:
    """What a scope token lets through for a channel permission (no cap for other credentials)."""
    if principal.scopes is None:
        return Level.MANAGE
    if permission is Permission.CHANNEL_READ:
        read = max(principal.scope_cap(Category.CHANNELS), principal.scope_cap(Category.ARTIFACTS))
        return Level.READ if read >= Level.READ else Level.NONE
    cap = principal.scope_cap(permission.category)
    return CHANNEL_LEVEL_NEEDED[permission] if cap >= permission.level else Level.NONE


class AccessService:
    def __init__(self, session: Session | None = None) -> None:
        self.session = session  # kept for callers' convenience; decisions need no queries

    def allowed(self, principal: Principal, permission: Permission) -> bool:
        return principal.is_admin or principal.has(permission)

    def require(self, principal: Principal, permission: Permission) -> None:
        """Global permissions (not tied to a channel): 401 for anonymous, 403 otherwise."""
        if self.allowed(principal, permission):
            return
        if principal.is_anonymous:
            raise AuthenticationError("sign in or pass a token to do this")
        if (
            principal.scopes is not None
            and principal.scope_cap(permission.category) < permission.level
        ):
            raise AccessDeniedError(
                f"this token's scopes do not include {permission.category}:{permission.level.label}",
                code="access:scope",
            )
        raise AccessDeniedError(f"{permission} is not granted to you")

    def channel_level(
        self,
        principal: Principal,
        channel: ChannelRef,
        permission: Permission = Permission.CHANNEL_READ,
    ) -> Level:
        """The principal's level on the channel, as it counts for ``permission``."""
        if principal.is_anonymous:
            return Level.READ if channel.privacy == Privacy.PUBLIC else Level.NONE
        key = (channel, permission)
        known = principal.memo.get(key)
        if known is None:
            if len(principal.memo) > 10_000:
                principal.memo.clear()
            known = principal.memo[key] = self._channel_level(principal, channel, permission)
        return known

    def _channel_level(
        self, principal: Principal, channel: ChannelRef, permission: Permission
    ) -> Level:
        public = Level.READ if channel.privacy == Privacy.PUBLIC else Level.NONE
        if principal.is_anonymous:
            return public
        owners = {channel.owner_id, *(owner for _, owner in channel.lineage)} - {None}
        if "admin" in principal.roles or principal.user_id in owners:
            level = Level.MANAGE
        else:
            level = max(
                Level.READ if channel.privacy == Privacy.AUTHENTICATED else public,
                *(principal.grants.get(i, Level.NONE) for i, _ in channel.lineage),
                principal.grants.get(channel.id, Level.NONE),
                _role_floor(principal, permission),
            )
        level = min(level, principal.resource_cap(channel.name), _scope_cap(principal, permission))
        return max(level, public)  # any credential may read what anonymous may read

    def can(self, principal: Principal, permission: Permission, channel: ChannelRef) -> bool:
        return (
            self.channel_level(principal, channel, permission) >= CHANNEL_LEVEL_NEEDED[permission]
        )

    def require_channel(
        self, principal: Principal, permission: Permission, channel: ChannelRef
    ) -> None:
        """Raise 401 for anonymous without read, 404 for others without read, 403 below the level."""
        level = self.channel_level(principal, channel, permission)
        if level >= CHANNEL_LEVEL_NEEDED[permission]:
            return
        visible = max(level, self.channel_level(principal, channel, Permission.CHANNEL_READ))
        if visible == Level.NONE:
            if principal.is_anonymous:
                raise AuthenticationError(f"channel {channel.name!r} needs authentication")
            raise ChannelHiddenError(f"channel {channel.name!r} not found")
        raise AccessDeniedError(f"{permission} on channel {channel.name!r} is not granted to you")
