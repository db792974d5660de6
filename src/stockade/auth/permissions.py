"""Permissions as ``noun:verb`` StrEnums, and channel access levels."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Permission(StrEnum):
    CHANNEL_CREATE = "channel:create"
    CHANNEL_READ = "channel:read"
    CHANNEL_WRITE = "channel:write"  # upload, remove, copy into, patch
    CHANNEL_MANAGE = "channel:manage"  # settings, members, freeze, delete, notices
    USER_MANAGE = "user:manage"
    SYSTEM_MANAGE = "system:manage"


class Level(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2
    MANAGE = 3

    @classmethod
    def parse(cls, value: str) -> Level:
        return cls[value.upper()]


class Privacy(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    PRIVATE = "private"


CHANNEL_LEVEL_NEEDED: dict[Permission, Level] = {
    Permission.CHANNEL_READ: Level.READ,
    Permission.CHANNEL_WRITE: Level.WRITE,
    Permission.CHANNEL_MANAGE: Level.MANAGE,
}

BUILTIN_ROLES: dict[str, str] = {
    "everyone": "anonymous visitors: read public channels",
    "author": "any signed-in principal: may create channels",
    "admin": "everything",
}
