"""Channel members: grants of read, write or manage to users and groups (SPEC §4)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.errors import GroupNotFoundError
from stockade.auth.models import ChannelGrant, Group, User
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.channels.models import Channel
from stockade.channels.service import ChannelService
from stockade.core.errors import InvalidInputError, NotFoundError

GRANT_LEVELS = ("read", "write", "manage")


@dataclass(frozen=True)
class Member:
    grant_id: int
    kind: str  # user | group
    name: str
    level: str
    source: str


class GrantNotFoundError(NotFoundError):
    code = "grant:not-found"


class MemberService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.channels = ChannelService(session)

    def list(
        self, principal: Principal, channel_name: str
    ) -> tuple[Channel, builtins.list[Member]]:
        channel = self.channels.get(principal, channel_name, Permission.CHANNEL_READ)
        return self.list_for(channel)

    def list_for(self, channel: Channel) -> tuple[Channel, builtins.list[Member]]:
        rows = self.session.execute(
            select(ChannelGrant, User.username, User.source, Group.name, Group.source)
            .outerjoin(User, User.id == ChannelGrant.user_id)
            .outerjoin(Group, Group.id == ChannelGrant.group_id)
            .where(ChannelGrant.channel_id == channel.id)
            .order_by(ChannelGrant.id)
        )
        members = [
            Member(
                grant_id=grant.id,
                kind="user" if grant.user_id is not None else "group",
                name=user_name if grant.user_id is not None else group_name,
                level=grant.level,
                source=user_source if grant.user_id is not None else group_source,
            )
            for grant, user_name, user_source, group_name, group_source in rows
        ]
        return channel, members

    def grant(
        self,
        principal: Principal,
        channel_name: str,
        level: str,
        *,
        user: str | None = None,
        group: str | None = None,
    ) -> Member:
        """Give (or change) a user's or group's level on a channel; needs manage on it."""
        channel = self.channels.get(principal, channel_name, Permission.CHANNEL_MANAGE)
        if level not in GRANT_LEVELS:
            raise InvalidInputError(
                f"level must be read, write or manage (got {level!r})",
                code="grant:invalid-level",
                field="level",
            )
        user_id, group_id, kind, name = self._holder(user, group)
        existing = self._find(channel.id, user_id, group_id)
        before = {"level": existing.level} if existing else None
        if existing is None:
            existing = ChannelGrant(
                channel_id=channel.id,
                user_id=user_id,
                group_id=group_id,
                level=level,
                created_by_id=principal.user_id,
            )
            self.session.add(existing)
        else:
            existing.level = level
        self.session.flush()
        if before != {"level": level}:
            AuditLog(self.session).record(
                "channel.grant",
                principal,
                Target("channel", channel.name, channel.id),
                before=before,
                after={"level": level},
                details={kind: name},
            )
        return Member(existing.id, kind, name, level, "local")

    def revoke(
        self,
        principal: Principal,
        channel_name: str,
        *,
        user: str | None = None,
        group: str | None = None,
    ) -> None:
        channel = self.channels.get(principal, channel_name, Permission.CHANNEL_MANAGE)
        user_id, group_id, kind, name = self._holder(user, group)
        existing = self._find(channel.id, user_id, group_id)
        if existing is None:
            raise GrantNotFoundError(f"{kind} {name!r} has no grant on channel {channel.name!r}")
        AuditLog(self.session).record(
            "channel.ungrant",
            principal,
            Target("channel", channel.name, channel.id),
            before={"level": existing.level},
            details={kind: name},
        )
        self.session.delete(existing)
        self.session.flush()

    def _holder(
        self, user: str | None, group: str | None
    ) -> tuple[int | None, int | None, str, str]:
        if (user is None) == (group is None):
            raise InvalidInputError(
                "name exactly one of user or group", code="grant:holder", field="user"
            )
        if user is not None:
            return UserService(self.session).get_by_name(user).id, None, "user", user
        assert group is not None
        row = self.session.scalar(select(Group).where(Group.name == group))
        if row is None:
            raise GroupNotFoundError(f"group {group!r} not found")
        return None, row.id, "group", group

    def _find(
        self, channel_id: int, user_id: int | None, group_id: int | None
    ) -> ChannelGrant | None:
        query = select(ChannelGrant).where(ChannelGrant.channel_id == channel_id)
        if user_id is not None:
            query = query.where(ChannelGrant.user_id == user_id)
        else:
            query = query.where(ChannelGrant.group_id == group_id)
        return self.session.scalar(query)
