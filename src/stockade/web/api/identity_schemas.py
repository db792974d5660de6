"""REST schemas for identity and access: tokens, users, groups, roles, members, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from stockade.web.api.schemas import Strict

LevelLiteral = Literal["read", "write", "manage"]
RoleLevelLiteral = Literal["none", "read", "write", "manage"]


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=256)
    expires_in_days: int | None = Field(default=None, ge=1, le=100_000)
    kind: Literal["personal", "resource", "scope"] = "personal"
    scopes: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="scope tokens: category:level, e.g. artifacts:read, channels:manage",
    )
    resources: dict[str, LevelLiteral] = Field(
        default_factory=dict,
        description='resource tokens: channel name (or "name/*") -> level',
    )
    user: str | None = Field(
        default=None, max_length=128, description="for whom (admins: a service account's name)"
    )


class TokenPublic(BaseModel):
    id: int
    name: str
    kind: str
    prefix: str
    owner: str
    scopes: list[str]
    resources: dict[str, str]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    active: bool


class TokenIssued(TokenPublic):
    token: str = Field(description="The secret. Shown once; store it now.")


class WhoAmI(BaseModel):
    username: str
    anonymous: bool
    admin: bool
    via: str
    kind: str
    roles: list[str]
    groups: list[str]
    permissions: list[str]
    token_kind: str | None
    token_id: int | None


class UserCreate(Strict):
    username: str = Field(min_length=1, max_length=128)
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    email: str | None = Field(default=None, max_length=320)
    display_name: str | None = Field(default=None, max_length=256)
    admin: bool = False


class UserUpdate(Strict):
    email: str | None = Field(default=None, max_length=320)
    display_name: str | None = Field(default=None, max_length=256)
    is_active: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    current_password: str | None = Field(
        default=None, max_length=1024, description="required to change your own password"
    )
    revoke_tokens: bool = Field(
        default=False,
        description="with a new password: also revoke every API token of the account "
        "(its other sessions end in any case)",
    )


class UserPublic(BaseModel):
    id: int
    username: str
    email: str | None
    display_name: str | None
    kind: str
    source: str
    is_active: bool
    is_admin: bool
    created_at: datetime
    last_login_at: datetime | None


class UserDetail(UserPublic):
    groups: list[str]
    roles: list[str]
    disabled_reason: str | None


class ServiceAccountCreate(Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=256)


class GroupCreate(Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=2000)


class GroupUpdate(Strict):
    description: str | None = Field(default=None, max_length=2000)


class GroupPublic(BaseModel):
    id: int
    name: str
    description: str | None
    source: str
    members: int


class GroupMemberPublic(BaseModel):
    username: str
    source: str


class GroupDetail(GroupPublic):
    member_list: list[GroupMemberPublic]
    roles: list[str]


class RoleCreate(Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=2000)
    permissions: dict[str, RoleLevelLiteral] = Field(
        default_factory=dict, description="category -> none|read|write|manage"
    )


class RoleUpdate(Strict):
    description: str | None = Field(default=None, max_length=2000)
    permissions: dict[str, RoleLevelLiteral] | None = None


class RoleHolder(BaseModel):
    kind: Literal["user", "group"]
    name: str
    source: str


class RolePublic(BaseModel):
    id: int
    name: str
    description: str | None
    builtin: bool
    levels: dict[str, str]
    permissions: list[str]


class RoleDetail(RolePublic):
    holders: list[RoleHolder]


class RoleAssign(Strict):
    user: str | None = Field(default=None, max_length=128)
    group: str | None = Field(default=None, max_length=256)


class MemberGrant(Strict):
    user: str | None = Field(default=None, max_length=128)
    group: str | None = Field(default=None, max_length=256)
    level: LevelLiteral


class MemberPublic(BaseModel):
    kind: Literal["user", "group"]
    name: str
    level: str
    source: str


class ChannelMembers(BaseModel):
    channel: str
    privacy: str
    owner: str | None
    members: list[MemberPublic]


class AuditEventPublic(BaseModel):
    seq: int
    occurred_at: datetime
    event_type: str
    outcome: str
    actor: str
    actor_kind: str
    token_id: int | None
    via: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    target_type: str | None
    target_id: str | None
    target_name: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    details: dict[str, Any] | None
    hash: str


class AuditPage(BaseModel):
    events: list[AuditEventPublic]
    next_cursor: int | None = Field(description="pass as `cursor` for older events")


class AuditVerification(BaseModel):
    ok: bool
    checked: int
    broken_at: int | None
    problem: str | None
    head: str | None
    first_seq: int | None = Field(description="the oldest event kept (1 unless retention cut)")
