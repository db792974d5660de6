"""Permissions as ``noun:verb`` StrEnums, categories and levels (SPEC §4).

A custom role gives each :class:`Category` a :class:`Level`; a role level grants every permission
of that category whose level is at or below it. Built-in roles are fixed permission sets.
Scope tokens carry ``category:level`` scopes (``artifacts:read``) that cap what the token may do.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Level(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2
    MANAGE = 3

    @classmethod
    def parse(cls, value: str) -> Level:
        return cls[value.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


class Category(StrEnum):
    CHANNELS = "channels"
    SUBCHANNELS = "subchannels"
    MIRRORS = "mirrors"
    ARTIFACTS = "artifacts"
    POLICIES = "policies"
    CVES = "cves"
    SECURITY = "security"  # scan verdicts, the quarantine queue, scan rules
    USERS = "users"  # users and groups
    ROLES = "roles"
    AUDIT = "audit"
    SYSTEM = "system"


class Permission(StrEnum):
    """Global permissions come from roles; the channel ones are also given per channel.

    On a channel, ``channel:read`` and ``artifact:read`` need the ``read`` level, ``artifact:write``
    and ``artifact:manage`` need ``write``, ``channel:manage``, ``subchannel:create`` and mirror
    changes need ``manage``. Held globally (through a role), they apply to every channel.
    """

    CHANNEL_READ = "channel:read"
    CHANNEL_CREATE = "channel:create"
    CHANNEL_MANAGE = "channel:manage"
    SUBCHANNEL_CREATE = "subchannel:create"
    SUBCHANNEL_MANAGE = "subchannel:manage"
    MIRROR_READ = "mirror:read"
    MIRROR_WRITE = "mirror:write"
    MIRROR_MANAGE = "mirror:manage"
    ARTIFACT_READ = "artifact:read"
    ARTIFACT_WRITE = "artifact:write"
    ARTIFACT_MANAGE = "artifact:manage"
    POLICY_READ = "policy:read"
    POLICY_WRITE = "policy:write"
    POLICY_MANAGE = "policy:manage"
    CVE_READ = "cve:read"
    CVE_WRITE = "cve:write"
    CVE_MANAGE = "cve:manage"
    SECURITY_READ = "security:read"
    SECURITY_MANAGE = "security:manage"
    USER_READ = "user:read"
    USER_WRITE = "user:write"
    USER_MANAGE = "user:manage"
    ROLE_READ = "role:read"
    ROLE_WRITE = "role:write"
    ROLE_MANAGE = "role:manage"
    AUDIT_READ = "audit:read"
    AUDIT_MANAGE = "audit:manage"
    SYSTEM_READ = "system:read"
    SYSTEM_MANAGE = "system:manage"

    @property
    def category(self) -> Category:
        return PERMISSION_INFO[self][0]

    @property
    def level(self) -> Level:
        return PERMISSION_INFO[self][1]


_NOUN_CATEGORY = {
    "channel": Category.CHANNELS,
    "subchannel": Category.SUBCHANNELS,
    "mirror": Category.MIRRORS,
    "artifact": Category.ARTIFACTS,
    "policy": Category.POLICIES,
    "cve": Category.CVES,
    "security": Category.SECURITY,
    "user": Category.USERS,
    "role": Category.ROLES,
    "audit": Category.AUDIT,
    "system": Category.SYSTEM,
}
_VERB_LEVEL = {
    "read": Level.READ,
    "create": Level.WRITE,
    "write": Level.WRITE,
    "manage": Level.MANAGE,
}
PERMISSION_INFO: dict[Permission, tuple[Category, Level]] = {
    p: (_NOUN_CATEGORY[p.value.split(":")[0]], _VERB_LEVEL[p.value.split(":")[1]])
    for p in Permission
}

# The level a principal needs on a channel for a channel-scoped permission.
CHANNEL_LEVEL_NEEDED: dict[Permission, Level] = {
    Permission.CHANNEL_READ: Level.READ,
    Permission.ARTIFACT_READ: Level.READ,
    Permission.ARTIFACT_WRITE: Level.WRITE,
    Permission.ARTIFACT_MANAGE: Level.WRITE,
    Permission.CHANNEL_MANAGE: Level.MANAGE,
    Permission.SUBCHANNEL_CREATE: Level.MANAGE,
    Permission.SUBCHANNEL_MANAGE: Level.MANAGE,
    Permission.MIRROR_READ: Level.READ,
    Permission.MIRROR_WRITE: Level.MANAGE,
    Permission.MIRROR_MANAGE: Level.MANAGE,
    Permission.POLICY_READ: Level.READ,
    Permission.POLICY_WRITE: Level.MANAGE,
    Permission.POLICY_MANAGE: Level.MANAGE,
}


class Privacy(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    PRIVATE = "private"


ALL_PERMISSIONS = frozenset(Permission)

BUILTIN_ROLES: dict[str, str] = {
    "everyone": "anonymous visitors: read public channels",
    "author": "any signed-in principal: may create channels",
    "admin": "everything",
}
BUILTIN_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "everyone": frozenset(),
    "author": frozenset({Permission.CHANNEL_CREATE}),
    "admin": ALL_PERMISSIONS,
}


def permissions_for_levels(levels: dict[str, str] | dict[str, Level]) -> frozenset[Permission]:
    """Every permission a custom role with these category levels grants."""
    parsed = {
        Category(c): (v if isinstance(v, Level) else Level.parse(v)) for c, v in levels.items()
    }
    return frozenset(p for p in Permission if parsed.get(p.category, Level.NONE) >= p.level)


def parse_levels(raw: dict[str, str]) -> dict[str, str]:
    """Validate a role's ``{category: level}`` map; raises ``ValueError`` naming the bad entry."""
    clean: dict[str, str] = {}
    for category, level in raw.items():
        try:
            Category(category)
        except ValueError:
            names = ", ".join(c.value for c in Category)
            raise ValueError(f"unknown category {category!r} (one of {names})") from None
        try:
            clean[category] = Level.parse(level).label
        except KeyError:
            raise ValueError(
                f"unknown level {level!r} for {category!r} (none, read, write or manage)"
            ) from None
    return clean


def parse_scope(scope: str) -> tuple[Category, Level]:
    """``artifacts:read`` -> (ARTIFACTS, READ); raises ``ValueError`` with a clear message."""
    category, sep, level = scope.partition(":")
    if not sep:
        raise ValueError(f"scope {scope!r} must look like category:level, e.g. artifacts:read")
    try:
        cat = Category(category)
    except ValueError:
        names = ", ".join(c.value for c in Category)
        raise ValueError(f"scope {scope!r}: unknown category (one of {names})") from None
    try:
        lvl = Level.parse(level)
    except KeyError:
        raise ValueError(f"scope {scope!r}: level must be read, write or manage") from None
    if lvl == Level.NONE:
        raise ValueError(f"scope {scope!r}: level must be read, write or manage")
    return cat, lvl
