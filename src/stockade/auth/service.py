"""Users, first admin, password sign-in with lockout, and building principals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.errors import (
    AccountLockedError,
    InvalidCredentialsError,
    UserExistsError,
    UserNotFoundError,
    WeakPasswordError,
)
from stockade.auth.models import GroupMember, Role, RoleAssignment, User
from stockade.auth.permissions import BUILTIN_ROLES
from stockade.auth.principal import Principal
from stockade.auth.secrets import hash_password, new_password, verify_password
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
MAX_FAILED_LOGINS = 10
LOCKOUT = timedelta(minutes=15)


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
        user.failed_logins = 0
        user.locked_until = None

    def get_by_name(self, username: str) -> User:
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None:
            raise UserNotFoundError(f"user {username!r} not found")
        return user

    def list_users(self) -> list[User]:
        return list(self.session.scalars(select(User).order_by(User.username)).all())

    def authenticate_password(self, username: str, password: str) -> User:
        """Check a password; count failures and lock the account for a while after too many."""
        user = self.session.scalar(select(User).where(User.username == username))
        now = utcnow()
        if user is not None and user.locked_until is not None and user.locked_until > now:
            raise AccountLockedError("too many failed sign-ins; try again later")
        ok = verify_password(user.password_hash if user else None, password)
        if user is None or not ok or not user.is_active:
            if user is not None:
                user.failed_logins += 1
                if user.failed_logins >= MAX_FAILED_LOGINS:
                    user.locked_until = now + LOCKOUT
                    user.failed_logins = 0
            raise InvalidCredentialsError("wrong username or password")
        user.failed_logins = 0
        user.last_login_at = now
        return user

    def principal_for(self, user: User, *, via: str, token_id: int | None = None) -> Principal:
        groups = self.session.scalars(
            select(GroupMember.group_id).where(GroupMember.user_id == user.id)
        ).all()
        is_admin = any(a.role.name == "admin" for a in user.role_assignments)
        return Principal(
            user_id=user.id,
            username=user.username,
            is_admin=is_admin,
            kind=user.kind,
            token_id=token_id,
            via=via,
            group_ids=frozenset(groups),
        )
