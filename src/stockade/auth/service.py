"""Users, first admin, password sign-in with lockout, and building principals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from stockade.auth.errors import (
    InvalidCredentialsError,
    UserExistsError,
    UserNotFoundError,
    WeakPasswordError,
)
from stockade.auth.models import ApiToken, ChannelGrant, GroupMember, Role, RoleAssignment, User
from stockade.auth.permissions import (
    BUILTIN_PERMISSIONS,
    BUILTIN_ROLES,
    Category,
    Level,
    Permission,
    parse_scope,
    permissions_for_levels,
)
from stockade.auth.principal import Principal
from stockade.auth.secrets import hash_password, new_password, verify_password
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str | None  # set only when we generated it (to print once)


class UserService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def ensure_builtin_roles(self) -> None:
        existing = set(self.session.scalars(select(Role.name)).all())
        for name, description in BUILTIN_ROLES.items():
            if name not in existing:
                self.session.add(Role(name=name, description=description, builtin=True))
        self.session.flush()

    def role(self, name: str) -> Role:
        role = self.session.scalar(select(Role).where(Role.name == name))
        if role is None:
            raise InvalidInputError(f"no role named {name!r}", code="role:not-found")
        return role

    def create_user(
        self,
        username: str,
        password: str | None,
        *,
        email: str | None = None,
        admin: bool = False,
        kind: str = "user",
    ) -> User:
        if not USERNAME_RE.match(username):
            raise InvalidInputError(
                "username must be 1-128 characters of letters, digits and . _ @ -, "
                "starting with a letter or digit",
                code="user:invalid-name",
                field="username",
            )
        if password is not None and len(password) < 8:
            raise WeakPasswordError("password must have at least 8 characters", field="password")
        if self.session.scalar(select(User.id).where(User.username == username)) is not None:
            raise UserExistsError(f"user {username!r} already exists", field="username")
        user = User(
            username=username,
            email=email,
            kind=kind,
            password_hash=hash_password(password) if password else None,
        )
        self.session.add(user)
        self.session.flush()
        if admin:
            self.ensure_builtin_roles()
            self.session.add(RoleAssignment(role_id=self.role("admin").id, user_id=user.id))
            self.session.flush()
        return user

    def ensure_first_admin(self, username: str, password: str | None) -> FirstAdmin | None:
        """On first start (no users at all): create the admin. Returns None when users exist."""
        self.ensure_builtin_roles()
        if self.session.scalar(select(User.id).limit(1)) is not None:
            return None
        generated = password is None
        password = password or new_password()
        self.create_user(username, password, admin=True)
        return FirstAdmin(username=username, password=password if generated else None)

    def set_password(self, user: User, password: str) -> None:
        if len(password) < 8:
            raise WeakPasswordError("password must have at least 8 characters", field="password")
        user.password_hash = hash_password(password)

    def get_by_name(self, username: str) -> User:
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None:
            raise UserNotFoundError(f"user {username!r} not found")
        return user

    def list_users(self) -> list[User]:
        return list(self.session.scalars(select(User).order_by(User.username)).all())

    def authenticate_password(self, username: str, password: str) -> User:
        """Check a password (failures are counted by ``auth/ratelimit.py``, per name and address,
        the same for names that exist and names that do not)."""
        user = self.session.scalar(select(User).where(User.username == username))
        ok = verify_password(user.password_hash if user else None, password)
        if user is None or not ok or not user.is_active:
            raise InvalidCredentialsError("wrong username or password")
        user.last_login_at = utcnow()
        return user

    def principal_for(self, user: User, *, via: str, token: ApiToken | None = None) -> Principal:
        """Everything access decisions need, computed once: roles, permissions, grants, caps."""
        group_ids = frozenset(
            self.session.scalars(select(GroupMember.group_id).where(GroupMember.user_id == user.id))
        )
        who = [RoleAssignment.user_id == user.id]
        if group_ids:
            who.append(RoleAssignment.group_id.in_(group_ids))
        roles = list(
            self.session.scalars(select(Role).join(RoleAssignment).where(or_(*who))).unique()
        )
        names = {"everyone", "author", *(r.name for r in roles)}
        permissions: set[Permission] = set()
        for name in names:
            permissions |= BUILTIN_PERMISSIONS.get(name, frozenset())
        for role in roles:
            if not role.builtin:
                permissions |= permissions_for_levels(role.permissions or {})
        grant_who = [ChannelGrant.user_id == user.id]
        if group_ids:
            grant_who.append(ChannelGrant.group_id.in_(group_ids))
        grants: dict[int, Level] = {}
        for channel_id, level_name in self.session.execute(
            select(ChannelGrant.channel_id, ChannelGrant.level).where(or_(*grant_who))
        ):
            level = Level.parse(level_name)
            grants[channel_id] = max(grants.get(channel_id, Level.NONE), level)
        scopes: dict[Category, Level] | None = None
        resources: dict[str, Level] | None = None
        if token is not None and token.kind == "scope":
            scopes = {}
            for scope in token.scopes or []:
                category, level = parse_scope(scope)
                scopes[category] = max(scopes.get(category, Level.NONE), level)
            permissions = {p for p in permissions if scopes.get(p.category, Level.NONE) >= p.level}
        elif token is not None and token.kind == "resource":
            resources = {
                name: Level.parse(level) for name, level in (token.resources or {}).items()
            }
            permissions = set()
        return Principal(
            user_id=user.id,
            username=user.username,
            kind=user.kind,
            token_id=token.id if token is not None else None,
            via=via,
            group_ids=group_ids,
            roles=frozenset(names),
            permissions=frozenset(permissions),
            grants=MappingProxyType(grants),
            token_kind=token.kind if token is not None else None,
            scopes=MappingProxyType(scopes) if scopes is not None else None,
            resources=MappingProxyType(resources) if resources is not None else None,
        )
