"""Users and groups that come from outside: LDAP/AD directories and OpenID providers.

Providers (``auth/ldap.py``, ``auth/oidc.py``) turn what they learn into :class:`ExternalIdentity`
values; :class:`IdentityService` makes the database agree: the user (created or updated, kept
``source``-tagged), memberships of that source's groups, and group-to-role mappings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stockade.audit.service import SYSTEM, AuditLog, Target
from stockade.auth.errors import InvalidCredentialsError
from stockade.auth.models import Group, GroupMember, Role, RoleAssignment, User
from stockade.auth.revision import bump_revision
from stockade.core.clock import utcnow

_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")
# What the columns hold (``auth/models.py``): a provider's email and display name are cut to them;
# a longer external id (a DN, "issuer|subject") is refused, as a cut one could name someone else.
MAX_EMAIL = 320  # User.email
MAX_DISPLAY_NAME = 256  # User.display_name
MAX_EXTERNAL_ID = 512  # User.external_id, Group.external_id


@dataclass(frozen=True)
class ExternalGroup:
    external_id: str  # LDAP DN, or the OIDC claim value
    name: str


@dataclass(frozen=True)
class ExternalIdentity:
    source: str  # ldap | oidc
    external_id: str  # LDAP DN, or "issuer|subject"
    username: str
    email: str | None = None
    display_name: str | None = None
    groups: tuple[ExternalGroup, ...] = ()
    active: bool = True


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    groups: int = 0


def safe_username(value: str) -> str:
    cleaned = _UNSAFE.sub("_", value.strip())[:128].lstrip("._@-")
    return cleaned or "user"


class IdentityService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def upsert(
        self,
        identity: ExternalIdentity,
        *,
        group_roles: Mapping[str, Iterable[str]] | None = None,
        result: SyncResult | None = None,
    ) -> User:
        """Create or update the user for ``identity``; refuse if a local user holds the name."""
        identity = _storable(identity)
        user = self.find(identity)
        username = safe_username(identity.username)
        if user is None:
            clash = self.session.scalar(select(User).where(User.username == username))
            if clash is not None and not _may_relink(clash, identity):
                raise InvalidCredentialsError(
                    f"the name {username!r} belongs to another account here; "
                    "ask an administrator to link or rename it"
                )
            user = clash
        now = utcnow()
        if user is None:
            user = User(
                username=username,
                email=identity.email,
                display_name=identity.display_name,
                kind="user",
                source=identity.source,
                external_id=identity.external_id,
                is_active=identity.active,
                synced_at=now,
            )
            self.session.add(user)
            self.session.flush()
            AuditLog(self.session).record(
                "user.create",
                SYSTEM,
                Target("user", user.username, user.id),
                after={"source": identity.source, "email": identity.email},
            )
            if result is not None:
                result.created.append(user.username)
        else:
            before = _user_state(user)
            user.external_id = identity.external_id
            user.email = identity.email
            user.display_name = identity.display_name
            user.synced_at = now
            held_here = not user.is_active and not _disabled_by_source(user)
            if user.is_active != identity.active and not held_here:
                # the source decides, except over an account an administrator disabled here
                user.is_active = identity.active
                user.disabled_reason = None if identity.active else f"disabled in {identity.source}"
                bump_revision(self.session)
            after = _user_state(user)
            if before != after:
                AuditLog(self.session).record(
                    "user.update",
                    SYSTEM,
                    Target("user", user.username, user.id),
                    before=before,
                    after=after,
                )
                if result is not None:
                    (result.disabled if not identity.active else result.updated).append(
                        user.username
                    )
        self.set_groups(user, identity.source, identity.groups, group_roles or {})
        return user

    def find(self, identity: ExternalIdentity) -> User | None:
        """The account linked to this external identity (by source and external id)."""
        return self.session.scalar(
            select(User).where(
                User.source == identity.source, User.external_id == identity.external_id
            )
        )

    def find_by_name(self, source: str, typed: str) -> User | None:
        """An account of ``source`` whose name matches what was typed, ignoring case and spaces."""
        wanted = safe_username(typed).lower()
        return self.session.scalar(
            select(User).where(User.source == source, func.lower(User.username) == wanted).limit(1)
        )

    def set_groups(
        self,
        user: User,
        source: str,
        groups: Iterable[ExternalGroup],
        group_roles: Mapping[str, Iterable[str]],
    ) -> None:
        """Make ``user``'s memberships from ``source`` exactly ``groups`` (other sources untouched)."""
        wanted = {
            self.ensure_group(source, g, group_roles).id
            for g in groups
            if len(g.external_id) <= MAX_EXTERNAL_ID  # one we could not tell apart: left out
        }
        current = {
            m.group_id: m
            for m in self.session.scalars(
                select(GroupMember).where(
                    GroupMember.user_id == user.id, GroupMember.source == source
                )
            )
        }
        for group_id in wanted - current.keys():
            self.session.add(GroupMember(group_id=group_id, user_id=user.id, source=source))
        for group_id in current.keys() - wanted:
            self.session.delete(current[group_id])
        if wanted != current.keys():
            bump_revision(self.session)  # the user's roles and grants moved: in every process
        self.session.flush()

    def ensure_group(
        self, source: str, group: ExternalGroup, group_roles: Mapping[str, Iterable[str]]
    ) -> Group:
        row = self.session.scalar(
            select(Group).where(Group.source == source, Group.external_id == group.external_id)
        )
        if row is None:
            name = safe_username(group.name)
            if self.session.scalar(select(Group.id).where(Group.name == name)) is not None:
                name = f"{source}-{name}"[:256]
            row = Group(name=name, source=source, external_id=group.external_id)
            self.session.add(row)
            self.session.flush()
            AuditLog(self.session).record(
                "group.create", SYSTEM, Target("group", row.name, row.id), after={"source": source}
            )
        row.synced_at = utcnow()
        self._map_roles(row, source, group_roles.get(group.name, ()))
        return row

    def _map_roles(self, group: Group, source: str, role_names: Iterable[str]) -> None:
        """Role assignments made by the mapping (``source``) follow the configuration."""
        names = set(role_names)
        roles = {r.name: r for r in self.session.scalars(select(Role).where(Role.name.in_(names)))}
        existing = {
            a.role.name: a
            for a in self.session.scalars(
                select(RoleAssignment).where(
                    RoleAssignment.group_id == group.id, RoleAssignment.source == source
                )
            )
        }
        for name in names - existing.keys():
            if name in roles:
                self.session.add(
                    RoleAssignment(role_id=roles[name].id, group_id=group.id, source=source)
                )
        for name in existing.keys() - names:
            self.session.delete(existing[name])
        if (names & roles.keys()) != existing.keys():
            bump_revision(self.session)  # its members' roles moved: in every process
        self.session.flush()

    def disable_missing(
        self, source: str, seen: set[str], result: SyncResult | None = None
    ) -> None:
        """Users of ``source`` the directory no longer returns lose access now."""
        for user in self.session.scalars(
            select(User).where(User.source == source, User.is_active.is_(True))
        ):
            if user.external_id not in seen:
                self.disable_missing_user(user, f"not found in {source}")
                if result is not None:
                    result.disabled.append(user.username)
        self.session.flush()

    def disable_missing_user(self, user: User, reason: str) -> None:
        user.is_active = False
        user.disabled_reason = reason
        bump_revision(self.session)  # every process drops what it cached for this user
        AuditLog(self.session).record(
            "user.disable",
            SYSTEM,
            Target("user", user.username, user.id),
            details={"reason": reason},
        )
        self.session.flush()

    def drop_memberships_of_missing_groups(self, source: str, seen_groups: set[str]) -> None:
        gone = select(Group.id).where(Group.source == source, Group.external_id.not_in(seen_groups))
        self.session.execute(delete(GroupMember).where(GroupMember.group_id.in_(gone)))


def _storable(identity: ExternalIdentity) -> ExternalIdentity:
    """The identity with its descriptive fields cut to their columns (a directory has no limit);
    an external id too long to keep is refused (the sign-in fails, a sync skips the entry)."""
    if len(identity.external_id) > MAX_EXTERNAL_ID:
        raise InvalidCredentialsError(
            f"your account's id at {identity.source} is longer than {MAX_EXTERNAL_ID} "
            "characters, which Stockade cannot keep; ask an administrator"
        )
    return replace(
        identity,
        email=_cut(identity.email, MAX_EMAIL),
        display_name=_cut(identity.display_name, MAX_DISPLAY_NAME),
    )


def _cut(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value


def _may_relink(existing: User, identity: ExternalIdentity) -> bool:
    """Whether an account with the same name may be taken over by this external identity.

    Never across sources, and never for OpenID Connect: a different subject is a different
    person, whatever name the provider reports. A directory entry whose DN changed (moved or
    renamed) keeps its account: login names are unique within a directory.
    """
    if existing.source != identity.source or existing.external_id is None:
        return False
    return identity.source == "ldap"


def _disabled_by_source(user: User) -> bool:
    reason = user.disabled_reason or ""
    return reason.startswith(("disabled in ", "not found in "))


def _user_state(user: User) -> dict[str, object]:
    return {
        "email": user.email,
        "display_name": user.display_name,
        "is_active": user.is_active,
    }
