"""Who is acting: a user, a service account, or anonymous. Built per request by the edge.

Everything an access decision needs is computed once when the principal is built (and cached by
the authenticator for a few seconds): effective global permissions (roles, capped by a scope
token), the channel grants of the user and their groups, and a token's restrictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stockade.auth.permissions import Category, Level, Permission


@dataclass(frozen=True)
class Principal:
    user_id: int | None
    username: str
    kind: str = "anonymous"  # anonymous | user | service
    token_id: int | None = None
    via: str = "none"  # none | password | ldap | token | session | oidc | oidc-token
    group_ids: frozenset[int] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    # channel id -> level granted to the user or one of their groups
    grants: Mapping[int, Level] = field(default_factory=lambda: MappingProxyType({}))
    token_kind: str | None = None  # personal | resource | scope (None: not a token)
    # scope tokens: category -> highest level allowed
    scopes: Mapping[Category, Level] | None = None
    # resource tokens: channel name (or "name/*" for a channel and its subchannels) -> level
    resources: Mapping[str, Level] | None = None
    # decisions already taken for this principal (it lives seconds in the authenticator's cache)
    memo: dict[Any, Level] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None

    @property
    def is_admin(self) -> bool:
        """The admin role through an unrestricted credential (not a scope or resource token)."""
        return "admin" in self.roles and self.scopes is None and self.resources is None

    def has(self, permission: Permission) -> bool:
        return permission in self.permissions

    def scope_cap(self, category: Category) -> Level:
        """The most a scope token allows in ``category`` (MANAGE when not a scope token)."""
        if self.scopes is None:
            return Level.MANAGE
        return self.scopes.get(category, Level.NONE)

    def resource_cap(self, channel_name: str) -> Level:
        """The most a resource token allows on a channel (MANAGE when not a resource token)."""
        if self.resources is None:
            return Level.MANAGE
        best = max(
            self.resources.get(channel_name, Level.NONE),
            self.resources.get(channel_name + "/*", Level.NONE),
        )
        parts = channel_name.split("/")
        for i in range(1, len(parts)):
            best = max(best, self.resources.get("/".join(parts[:i]) + "/*", Level.NONE))
        return best


ANONYMOUS = Principal(user_id=None, username="anonymous")
