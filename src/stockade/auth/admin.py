"""Administration of principals: users, service accounts, groups, memberships, roles.

Every change is checked against the acting principal and written to the audit log with its
before/after state, in the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, not_, select, text
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.errors import (
    AccessDeniedError,
    GroupExistsError,
    GroupNotFoundError,
    ManagedElsewhereError,
    RoleExistsError,
    RoleNotFoundError,
)
from stockade.auth.models import (
    ApiToken,
    ChannelGrant,
    Group,
    GroupMember,
    Role,
    RoleAssignment,
    User,
)
from stockade.auth.permissions import (
    BUILTIN_PERMISSIONS,
    Level,
    Permission,
    parse_levels,
    permissions_for_levels,
)
from stockade.auth.principal import Principal
from stockade.auth.secrets import verify_password
from stockade.auth.service import UserService
from stockade.auth.sessions import SessionService
from stockade.core.clock import utcnow
from stockade.core.errors import AuthenticationError, InvalidInputError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def user_state(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "kind": user.kind,
        "source": user.source,
        "is_active": user.is_active,
    }


def role_permissions(role: Role) -> frozenset[Permission]:
    if role.builtin:
        return BUILTIN_PERMISSIONS.get(role.name, frozenset())
    return permissions_for_levels(role.permissions or {})


@dataclass(frozen=True)
class UserChanges:
    email: str | None = None
    display_name: str | None = None
    is_active: bool | None = None
    password: str | None = None
    current_password: str | None = None  # needed to change one's own password
    revoke_tokens: bool = False  # with a new password: revoke every token of the account too
    keep_session: str | None = None  # the cookie of the session making the change (kept)


class PrincipalAdmin:
    def __init__(self, session: Session, actor: Principal) -> None:
        self.session = session
        self.actor = actor
        self.access = AccessService(session)
        self.audit = AuditLog(session)
        self.users = UserService(session)

    # users and service accounts ---------------------------------------------------------------

    def list_users(self, *, kind: str | None = None, query: str | None = None) -> list[User]:
        self.access.require(self.actor, Permission.USER_READ)
        stmt = select(User).order_by(User.username)
        if kind:
            stmt = stmt.where(User.kind == kind)
        if query:
            stmt = stmt.where(User.username.contains(query, autoescape=True))
        return list(self.session.scalars(stmt).all())

    def get_user(self, username: str) -> User:
        if username != self.actor.username:
            self.access.require(self.actor, Permission.USER_READ)
        return self.users.get_by_name(username)

    def create_user(
        self,
        username: str,
        password: str | None,
        *,
        email: str | None = None,
        display_name: str | None = None,
        admin: bool = False,
        kind: str = "user",
    ) -> User:
        self.access.require(self.actor, Permission.USER_WRITE)
        if admin:
            self._require_role_assignable(self.users.role("admin"))
        if kind == "user" and not password:
            raise InvalidInputError(
                "a local user needs a password (service accounts use tokens)", field="password"
            )
        user = self.users.create_user(
            username, password if kind == "user" else None, email=email, admin=admin, kind=kind
        )
        user.display_name = display_name
        user.created_by_id = self.actor.user_id
        self.audit.record(
            "serviceaccount.create" if kind == "service" else "user.create",
            self.actor,
            Target("user", user.username, user.id),
            after={**user_state(user), "admin": admin},
        )
        return user

    def update_user(self, username: str, changes: UserChanges) -> User:
        user = self.users.get_by_name(username)
        self_service = user.id == self.actor.user_id and changes.is_active is None
        if self_service:
            self._require_unrestricted("change your account")
            if changes.password is not None:
                self._check_current_password(user, changes.current_password)
        else:
            self.access.require(self.actor, Permission.USER_WRITE)
            self.require_power_over(user, "change")
        before = user_state(user)
        if user.source != "local" and (changes.password or changes.email is not None):
            raise ManagedElsewhereError(
                f"user {username!r} comes from {user.source}; change it there"
            )
        if changes.email is not None:
            user.email = changes.email or None
        if changes.display_name is not None:
            user.display_name = changes.display_name or None
        if changes.is_active is not None:
            if user.id == self.actor.user_id and not changes.is_active:
                raise InvalidInputError("you cannot disable your own account", field="is_active")
            user.is_active = changes.is_active
            user.disabled_reason = (
                None if changes.is_active else f"disabled by {self.actor.username}"
            )
            if not changes.is_active:
                SessionService(self.session, hours=1).end_all(user.id)
        if changes.password is not None:
            if user.kind == "service":
                raise InvalidInputError("service accounts have no password", field="password")
            self.users.set_password(user, changes.password)
            # whoever else was signed in as them is signed out (on a reset: everyone)
            keep = changes.keep_session if self_service else None
            SessionService(self.session, hours=1).end_all(user.id, keep=keep)
        revoked = self._revoke_all_tokens(user) if changes.password and changes.revoke_tokens else 0
        after = user_state(user)
        details = (
            {"password_changed": True, "tokens_revoked": revoked} if changes.password else None
        )
        self.audit.record(
            "user.update",
            self.actor,
            Target("user", user.username, user.id),
            before=before,
            after=after,
            details=details,
        )
        self.session.flush()
        return user

    def _revoke_all_tokens(self, user: User) -> int:
        """Revoke every live token of ``user`` (with a password change); returns how many."""
        live = self.session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        ).all()
        now = utcnow()
        for token in live:
            token.revoked_at = now
            self.audit.record(
                "token.revoke",
                self.actor,
                Target("token", token.name, token.id),
                details={"owner": user.username, "prefix": token.display_prefix},
            )
        return len(live)

    def delete_user(self, username: str) -> None:
        self.access.require(self.actor, Permission.USER_MANAGE)
        user = self.users.get_by_name(username)
        if user.id == self.actor.user_id:
            raise InvalidInputError("you cannot delete your own account", field="username")
        self.require_power_over(user, "delete")
        if self._is_last_admin(user):
            raise InvalidInputError("the last administrator cannot be deleted", field="username")
        before = user_state(user)
        self.session.delete(user)
        self.audit.record(
            "user.delete", self.actor, Target("user", username, user.id), before=before
        )
        self.session.flush()

    def _is_last_admin(self, user: User) -> bool:
        """Whether ``user`` is the only active admin (directly or through a group)."""
        active = self._active_admin_ids()
        return user.id in active and len(active) <= 1

    def _active_admin_ids(
        self, *, group_id: int | None = None, member_id: int | None = None
    ) -> set[int]:
        """Active holders of the admin role (directly or through a group), leaving out what
        group ``group_id`` gives (to ``member_id`` only, when given)."""
        admin = self.users.role("admin")
        direct = select(RoleAssignment.user_id).where(
            RoleAssignment.role_id == admin.id, RoleAssignment.user_id.is_not(None)
        )
        via_group = (
            select(GroupMember.user_id)
            .join(RoleAssignment, RoleAssignment.group_id == GroupMember.group_id)
            .where(RoleAssignment.role_id == admin.id)
        )
        if group_id is not None:
            left_out = GroupMember.group_id == group_id
            if member_id is not None:
                left_out = and_(left_out, GroupMember.user_id == member_id)
            via_group = via_group.where(not_(left_out))
        holders = set(self.session.scalars(direct)) | set(self.session.scalars(via_group))
        return set(
            self.session.scalars(
                select(User.id).where(User.id.in_(holders), User.is_active.is_(True))
            )
        )

    def _require_admin_left(self, group_id: int, member_id: int | None = None) -> None:
        """Refuse a group change (delete, admin role taken off, member removed) that would
        leave the server without an active administrator."""
        if self._active_admin_ids() and not self._active_admin_ids(
            group_id=group_id, member_id=member_id
        ):
            raise InvalidInputError("that would leave no active administrator", field="group")

    def tokens_of(self, username: str) -> list[ApiToken]:
        self._require_unrestricted("list tokens")
        user = self.users.get_by_name(username)
        if user.id != self.actor.user_id:
            self.access.require(self.actor, Permission.USER_READ)
        return list(
            self.session.scalars(
                select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
            )
        )

    def user_for_token(self, username: str) -> User:
        """Whose token the actor may create: their own, or (user:manage) a service account's."""
        self._require_unrestricted("create tokens")
        user = self.users.get_by_name(username)
        if user.id != self.actor.user_id:
            self.access.require(self.actor, Permission.USER_MANAGE)
            if user.kind != "service" and not self.actor.is_admin:
                raise AccessDeniedError("tokens for other people can only be made by an admin")
            self.require_power_over(user, "create tokens for")
        if not user.is_active:
            raise InvalidInputError(f"user {username!r} is disabled", field="username")
        return user

    def record_wrong_password(self) -> None:
        """Audit a wrong current password (the edge counts it towards the lock)."""
        user = self.users.get_by_name(self.actor.username)
        self.audit.record(
            "auth.failed",
            self.actor,
            Target("user", user.username, user.id),
            outcome="failure",
            details={"method": "password-change", "reason": "user:wrong-password"},
        )

    def _check_current_password(self, user: User, current: str | None) -> None:
        if user.source != "local":
            raise ManagedElsewhereError(f"your password is managed by {user.source}")
        if not current or not verify_password(user.password_hash, current):
            raise InvalidInputError(
                "the current password is wrong",
                code="user:wrong-password",
                field="current_password",
            )

    def _require_holds(self, permissions: frozenset[Permission], action: str) -> None:
        """No escalation: nobody but an admin hands out permissions they do not hold."""
        if self.actor.is_admin:
            return
        missing = permissions - self.actor.permissions
        if missing:
            raise AccessDeniedError(
                f"you cannot {action}: it grants {', '.join(sorted(missing)[:5])}, "
                "which you do not hold",
                code="role:escalation",
            )

    def require_power_over(self, user: User, action: str) -> None:
        """Acting on someone's account (password, disable, tokens, sessions, groups, roles) or
        removing it needs all the power they have: an admin's account, only an admin."""
        if self.actor.is_admin:
            return
        target = self._require_not_admin(user, action)
        self._require_holds(target.permissions, f"{action} {user.username!r}")
        owned = self._owned_channels(user.id)
        self._require_channel_levels({**dict(target.grants), **dict.fromkeys(owned, Level.MANAGE)})

    def _require_not_admin(self, user: User, action: str) -> Principal:
        """An admin's account (roles, groups, tokens, sessions, password) is an admin's business."""
        target = self.users.principal_for(user, via="check")
        if "admin" in target.roles and not self.actor.is_admin:
            raise AccessDeniedError(
                f"only an admin can {action} {user.username!r}", code="user:escalation"
            )
        return target

    def _owned_channels(self, user_id: int | None) -> set[int]:
        """Ids of the channels a user owns (channels sit above auth: plain SQL on their table)."""
        query = text("SELECT id FROM channels WHERE owner_id = :u")
        return set(self.session.scalars(query, {"u": user_id}))

    def _require_power_over_group(self, group: Group) -> None:
        """Joining a group gives its roles and grants: changing members needs them all."""
        if self.actor.is_admin:
            return
        roles = self.session.scalars(
            select(Role).join(RoleAssignment).where(RoleAssignment.group_id == group.id)
        ).all()
        if any(r.name == "admin" for r in roles):
            raise AccessDeniedError(
                f"only an admin can change the members of {group.name!r}", code="group:escalation"
            )
        granted: frozenset[Permission] = frozenset()
        for role in roles:
            granted |= role_permissions(role)
        self._require_holds(granted, f"change the members of {group.name!r}")
        grants: dict[int, Level] = {}
        for channel_id, level in self.session.execute(
            select(ChannelGrant.channel_id, ChannelGrant.level).where(
                ChannelGrant.group_id == group.id
            )
        ):
            grants[channel_id] = max(grants.get(channel_id, Level.NONE), Level.parse(level))
        self._require_channel_levels(grants)

    def _require_channel_levels(self, wanted: dict[int, Level]) -> None:
        if not wanted or self.actor.has(Permission.CHANNEL_MANAGE):
            return
        owned = self._owned_channels(self.actor.user_id)
        for channel_id, level in wanted.items():
            mine = (
                Level.MANAGE
                if channel_id in owned
                else self.actor.grants.get(channel_id, Level.NONE)
            )
            if mine < level:
                raise AccessDeniedError(
                    "that would give channel access you do not have yourself",
                    code="grant:escalation",
                )

    def _require_unrestricted(self, action: str) -> None:
        """A scope or resource token must not mint wider credentials or take over its account."""
        if self.actor.is_anonymous:
            raise AuthenticationError(f"sign in to {action}")
        if self.actor.scopes is not None or self.actor.resources is not None:
            raise AccessDeniedError(
                f"a {self.actor.token_kind} token cannot {action}; use a personal token or sign in",
                code="access:restricted-token",
            )

    # groups ------------------------------------------------------------------------------------

    def list_groups(self) -> list[Group]:
        self.access.require(self.actor, Permission.USER_READ)
        return list(self.session.scalars(select(Group).order_by(Group.name)))

    def get_group(self, name: str) -> Group:
        group = self.session.scalar(select(Group).where(Group.name == name))
        if group is None:
            raise GroupNotFoundError(f"group {name!r} not found")
        return group

    def members(self, group: Group) -> list[tuple[User, str]]:
        self.access.require(self.actor, Permission.USER_READ)
        rows = self.session.execute(
            select(User, GroupMember.source)
            .join(GroupMember, GroupMember.user_id == User.id)
            .where(GroupMember.group_id == group.id)
            .order_by(User.username)
        )
        return [(u, src) for u, src in rows]

    def create_group(self, name: str, description: str | None = None) -> Group:
        self.access.require(self.actor, Permission.USER_WRITE)
        if not NAME_RE.match(name):
            raise InvalidInputError(
                "group name must be 1-128 letters, digits and . _ @ -, starting with a letter or digit",
                code="group:invalid-name",
                field="name",
            )
        if self.session.scalar(select(Group.id).where(Group.name == name)) is not None:
            raise GroupExistsError(f"group {name!r} already exists", field="name")
        group = Group(name=name, description=description, source="local")
        self.session.add(group)
        self.session.flush()
        self.audit.record(
            "group.create",
            self.actor,
            Target("group", name, group.id),
            after={"name": name, "description": description},
        )
        return group

    def update_group(self, name: str, description: str | None) -> Group:
        self.access.require(self.actor, Permission.USER_WRITE)
        group = self.get_group(name)
        before = {"description": group.description}
        group.description = description
        self.audit.record(
            "group.update",
            self.actor,
            Target("group", name, group.id),
            before=before,
            after={"description": description},
        )
        return group

    def delete_group(self, name: str) -> None:
        self.access.require(self.actor, Permission.USER_WRITE)
        group = self.get_group(name)
        self._require_power_over_group(group)  # deleting it takes its roles and grants away
        self._require_admin_left(group.id)
        members = self.session.scalar(
            select(func.count()).select_from(GroupMember).where(GroupMember.group_id == group.id)
        )
        self.session.delete(group)
        self.audit.record(
            "group.delete",
            self.actor,
            Target("group", name, group.id),
            before={"name": name, "source": group.source, "members": members},
        )
        self.session.flush()

    def add_member(self, group_name: str, username: str) -> None:
        self.access.require(self.actor, Permission.USER_WRITE)
        group = self._local_group(group_name)
        self._require_power_over_group(group)
        user = self.users.get_by_name(username)
        self._require_not_admin(user, "change the groups of")
        exists = self.session.scalar(
            select(GroupMember.id).where(
                GroupMember.group_id == group.id, GroupMember.user_id == user.id
            )
        )
        if exists is None:
            self.session.add(GroupMember(group_id=group.id, user_id=user.id, source="local"))
            self.audit.record(
                "group.member.add",
                self.actor,
                Target("group", group.name, group.id),
                details={"user": username},
            )
            self.session.flush()

    def remove_member(self, group_name: str, username: str) -> None:
        self.access.require(self.actor, Permission.USER_WRITE)
        group = self._local_group(group_name)
        self._require_power_over_group(group)
        user = self.users.get_by_name(username)
        self._require_not_admin(user, "change the groups of")
        self._require_admin_left(group.id, user.id)
        result = self.session.execute(
            delete(GroupMember).where(
                GroupMember.group_id == group.id, GroupMember.user_id == user.id
            )
        )
        if result.rowcount:  # type: ignore[attr-defined]
            self.audit.record(
                "group.member.remove",
                self.actor,
                Target("group", group.name, group.id),
                details={"user": username},
            )

    def _local_group(self, name: str) -> Group:
        group = self.get_group(name)
        if group.source != "local":
            raise ManagedElsewhereError(
                f"group {name!r} comes from {group.source}; its members are managed there"
            )
        return group

    # roles -------------------------------------------------------------------------------------

    def list_roles(self) -> list[Role]:
        self.access.require(self.actor, Permission.ROLE_READ)
        return list(self.session.scalars(select(Role).order_by(Role.builtin.desc(), Role.name)))

    def get_role(self, name: str) -> Role:
        role = self.session.scalar(select(Role).where(Role.name == name))
        if role is None:
            raise RoleNotFoundError(f"role {name!r} not found")
        return role

    def role_holders(self, role: Role) -> list[RoleAssignment]:
        self.access.require(self.actor, Permission.ROLE_READ)
        return list(
            self.session.scalars(select(RoleAssignment).where(RoleAssignment.role_id == role.id))
        )

    def create_role(self, name: str, levels: dict[str, str], description: str | None) -> Role:
        self.access.require(self.actor, Permission.ROLE_MANAGE)
        if not NAME_RE.match(name):
            raise InvalidInputError(
                "role name must be 1-128 letters, digits and . _ @ -",
                code="role:invalid-name",
                field="name",
            )
        if self.session.scalar(select(Role.id).where(Role.name == name)) is not None:
            raise RoleExistsError(f"role {name!r} already exists", field="name")
        clean = self._levels(levels)
        self._require_holds(permissions_for_levels(clean), f"create role {name!r}")
        role = Role(name=name, description=description, builtin=False, permissions=clean)
        self.session.add(role)
        self.session.flush()
        self.audit.record(
            "role.create",
            self.actor,
            Target("role", name, role.id),
            after={"permissions": clean, "description": description},
        )
        return role

    def update_role(
        self, name: str, levels: dict[str, str] | None, description: str | None
    ) -> Role:
        self.access.require(self.actor, Permission.ROLE_MANAGE)
        role = self._custom(name)
        before = {"permissions": dict(role.permissions or {}), "description": role.description}
        if levels is not None:
            clean = self._levels(levels)
            self._require_holds(permissions_for_levels(clean), f"give role {name!r} these levels")
            role.permissions = clean
        if description is not None:
            role.description = description
        self.audit.record(
            "role.update",
            self.actor,
            Target("role", name, role.id),
            before=before,
            after={"permissions": dict(role.permissions or {}), "description": role.description},
        )
        self.session.flush()
        return role

    def delete_role(self, name: str) -> None:
        self.access.require(self.actor, Permission.ROLE_MANAGE)
        role = self._custom(name)
        self.session.delete(role)
        self.audit.record(
            "role.delete",
            self.actor,
            Target("role", name, role.id),
            before={"permissions": dict(role.permissions or {})},
        )
        self.session.flush()

    def assign(self, role_name: str, *, user: str | None = None, group: str | None = None) -> None:
        self.access.require(self.actor, Permission.ROLE_WRITE)
        role = self.get_role(role_name)
        self._require_role_assignable(role)
        user_id, group_id, who = self._holder(user, group)
        exists = self.session.scalar(
            select(RoleAssignment.id).where(
                RoleAssignment.role_id == role.id,
                RoleAssignment.user_id.is_(None)
                if user_id is None
                else RoleAssignment.user_id == user_id,
                RoleAssignment.group_id.is_(None)
                if group_id is None
                else RoleAssignment.group_id == group_id,
            )
        )
        if exists is None:
            self.session.add(
                RoleAssignment(role_id=role.id, user_id=user_id, group_id=group_id, source="local")
            )
            self.audit.record(
                "role.assign", self.actor, Target("role", role.name, role.id), details=who
            )
            self.session.flush()

    def unassign(
        self, role_name: str, *, user: str | None = None, group: str | None = None
    ) -> None:
        self.access.require(self.actor, Permission.ROLE_WRITE)
        role = self.get_role(role_name)
        self._require_role_assignable(role)
        user_id, group_id, who = self._holder(user, group)
        if role.name == "admin" and user_id is not None:
            holder = self.session.get(User, user_id)
            if holder is not None and self._is_last_admin(holder):
                raise InvalidInputError("the last administrator keeps the admin role", field="user")
        if role.name == "admin" and group_id is not None:
            self._require_admin_left(group_id)
        stmt = delete(RoleAssignment).where(RoleAssignment.role_id == role.id)
        stmt = stmt.where(
            RoleAssignment.user_id == user_id
            if user_id is not None
            else RoleAssignment.group_id == group_id
        )
        result = self.session.execute(stmt)
        if result.rowcount:  # type: ignore[attr-defined]
            self.audit.record(
                "role.unassign", self.actor, Target("role", role.name, role.id), details=who
            )

    def _holder(
        self, user: str | None, group: str | None
    ) -> tuple[int | None, int | None, dict[str, str]]:
        if (user is None) == (group is None):
            raise InvalidInputError("name exactly one of user or group", field="user")
        if user is not None:
            holder = self.users.get_by_name(user)
            self._require_not_admin(holder, "change the roles of")
            return holder.id, None, {"user": user}
        assert group is not None
        return None, self.get_group(group).id, {"group": group}

    def _require_role_assignable(self, role: Role) -> None:
        """No escalation: only someone holding every permission of a role may hand it out."""
        if self.actor.is_admin:
            return
        missing = role_permissions(role) - self.actor.permissions
        if missing or role.name == "admin":
            raise AccessDeniedError(
                f"you cannot assign role {role.name!r}: it grants permissions you do not hold",
                code="role:escalation",
            )

    def _custom(self, name: str) -> Role:
        role = self.get_role(name)
        if role.builtin:
            raise ManagedElsewhereError(f"role {name!r} is built in and cannot be changed")
        return role

    @staticmethod
    def _levels(levels: dict[str, str]) -> dict[str, str]:
        try:
            return parse_levels(levels)
        except ValueError as exc:
            raise InvalidInputError(
                str(exc), code="role:invalid-permissions", field="permissions"
            ) from None
