"""Users, service accounts, groups and roles (SPEC §4): administration over the REST API."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import func, select

from stockade.auth.admin import PrincipalAdmin, UserChanges, role_permissions
from stockade.auth.models import Group, GroupMember, Role, RoleAssignment, User
from stockade.auth.permissions import Category, Permission
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction
from stockade.web.api import API
from stockade.web.api.identity_schemas import (
    GroupCreate,
    GroupDetail,
    GroupMemberPublic,
    GroupPublic,
    GroupUpdate,
    RoleAssign,
    RoleCreate,
    RoleDetail,
    RoleHolder,
    RolePublic,
    RoleUpdate,
    ServiceAccountCreate,
    UserCreate,
    UserDetail,
    UserPublic,
    UserUpdate,
)
from stockade.web.credentials import credentials_from
from stockade.web.deps import ContainerDep, SignedIn

router = APIRouter(prefix=API, tags=["users"])

KindQuery = Query(default=None, pattern="^(user|service)$")


def user_public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        email=user.email,
        display_name=user.display_name,
        kind=user.kind,
        source=user.source,
        is_active=user.is_active,
        is_admin=any(a.role.name == "admin" for a in user.role_assignments),
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def user_detail(admin: PrincipalAdmin, user: User) -> UserDetail:
    session = admin.session
    groups = sorted(
        session.scalars(select(Group.name).join(GroupMember).where(GroupMember.user_id == user.id))
    )
    return UserDetail(
        **user_public(user).model_dump(),
        groups=groups,
        roles=sorted({a.role.name for a in user.role_assignments}),
        disabled_reason=user.disabled_reason,
    )


# users -----------------------------------------------------------------------------------------


@router.post("/users", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, principal: SignedIn, container: ContainerDep) -> UserPublic:
    with transaction(container.factory) as session:
        user = PrincipalAdmin(session, principal).create_user(
            body.username,
            body.password,
            email=body.email,
            display_name=body.display_name,
            admin=body.admin,
        )
        return user_public(user)


@router.get("/users", response_model=list[UserPublic])
def list_users(
    principal: SignedIn,
    container: ContainerDep,
    kind: str | None = KindQuery,
    q: str | None = Query(default=None, max_length=128),
) -> list[UserPublic]:
    with container.read_factory() as session:
        return [
            user_public(u)
            for u in PrincipalAdmin(session, principal).list_users(kind=kind, query=q)
        ]


@router.get("/users/{username}", response_model=UserDetail)
def show_user(username: str, principal: SignedIn, container: ContainerDep) -> UserDetail:
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        return user_detail(admin, admin.get_user(username))


@router.patch("/users/{username}", response_model=UserDetail)
def update_user(
    username: str, body: UserUpdate, request: Request, principal: SignedIn, container: ContainerDep
) -> UserDetail:
    """Change a user. A new password ends the account's other sessions (a reset: all of them);
    ``revoke_tokens`` revokes its API tokens too."""
    creds = credentials_from(request)
    changes = UserChanges(
        email=body.email,
        display_name=body.display_name,
        is_active=body.is_active,
        password=body.password,
        current_password=body.current_password,
        revoke_tokens=body.revoke_tokens,
        keep_session=creds.session_cookie if principal.via == "session" else None,
    )
    own_password = body.password is not None and username == principal.username
    if own_password:
        container.authenticator.limiter.check(principal.username, creds.ip)
    try:
        with transaction(container.factory) as session:
            admin = PrincipalAdmin(session, principal)
            detail = user_detail(admin, admin.update_user(username, changes))
    except InvalidInputError as exc:
        if exc.code == "user:wrong-password":  # the change rolled back; the failure still counts
            with transaction(container.factory) as session:
                PrincipalAdmin(session, principal).record_wrong_password()
            container.authenticator.limiter.failed(principal.username, creds.ip)
        raise
    container.authenticator.forget_all()
    return detail


@router.delete("/users/{username}", status_code=204)
def delete_user(username: str, principal: SignedIn, container: ContainerDep) -> Response:
    with transaction(container.factory) as session:
        PrincipalAdmin(session, principal).delete_user(username)
    container.authenticator.forget_all()
    return Response(status_code=204)


@router.post("/service-accounts", response_model=UserPublic, status_code=201)
def create_service_account(
    body: ServiceAccountCreate, principal: SignedIn, container: ContainerDep
) -> UserPublic:
    """A non-human principal for CI; give it tokens with `POST /tokens` and `"user": name`."""
    with transaction(container.factory) as session:
        user = PrincipalAdmin(session, principal).create_user(
            body.name, None, display_name=body.description, kind="service"
        )
        return user_public(user)


@router.get("/service-accounts", response_model=list[UserPublic])
def list_service_accounts(principal: SignedIn, container: ContainerDep) -> list[UserPublic]:
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        return [user_public(u) for u in admin.list_users(kind="service")]


# groups ----------------------------------------------------------------------------------------


def _member_counts(admin: PrincipalAdmin) -> dict[int, int]:
    rows = admin.session.execute(
        select(GroupMember.group_id, func.count()).group_by(GroupMember.group_id)
    )
    return {int(gid): int(n) for gid, n in rows}


def group_public(group: Group, members: int) -> GroupPublic:
    return GroupPublic(
        id=group.id,
        name=group.name,
        description=group.description,
        source=group.source,
        members=members,
    )


def group_detail(admin: PrincipalAdmin, group: Group) -> GroupDetail:
    members = admin.members(group)
    roles = sorted(
        admin.session.scalars(
            select(Role.name).join(RoleAssignment).where(RoleAssignment.group_id == group.id)
        )
    )
    return GroupDetail(
        **group_public(group, len(members)).model_dump(),
        member_list=[GroupMemberPublic(username=u.username, source=src) for u, src in members],
        roles=roles,
    )


@router.get("/groups", response_model=list[GroupPublic])
def list_groups(principal: SignedIn, container: ContainerDep) -> list[GroupPublic]:
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        counts = _member_counts(admin)
        return [group_public(g, counts.get(g.id, 0)) for g in admin.list_groups()]


@router.post("/groups", response_model=GroupDetail, status_code=201)
def create_group(body: GroupCreate, principal: SignedIn, container: ContainerDep) -> GroupDetail:
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        return group_detail(admin, admin.create_group(body.name, body.description))


@router.get("/groups/{name}", response_model=GroupDetail)
def show_group(name: str, principal: SignedIn, container: ContainerDep) -> GroupDetail:
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        return group_detail(admin, admin.get_group(name))


@router.patch("/groups/{name}", response_model=GroupDetail)
def update_group(
    name: str, body: GroupUpdate, principal: SignedIn, container: ContainerDep
) -> GroupDetail:
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        return group_detail(admin, admin.update_group(name, body.description))


@router.delete("/groups/{name}", status_code=204)
def delete_group(name: str, principal: SignedIn, container: ContainerDep) -> Response:
    with transaction(container.factory) as session:
        PrincipalAdmin(session, principal).delete_group(name)
    container.authenticator.forget_all()
    return Response(status_code=204)


@router.put("/groups/{name}/members/{username}", response_model=GroupDetail)
def add_group_member(
    name: str, username: str, principal: SignedIn, container: ContainerDep
) -> GroupDetail:
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        admin.add_member(name, username)
        detail = group_detail(admin, admin.get_group(name))
    container.authenticator.forget_all()
    return detail


@router.delete("/groups/{name}/members/{username}", response_model=GroupDetail)
def remove_group_member(
    name: str, username: str, principal: SignedIn, container: ContainerDep
) -> GroupDetail:
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        admin.remove_member(name, username)
        detail = group_detail(admin, admin.get_group(name))
    container.authenticator.forget_all()
    return detail


# roles -----------------------------------------------------------------------------------------


def role_public(role: Role) -> RolePublic:
    levels = dict(role.permissions or {}) if not role.builtin else {}
    return RolePublic(
        id=role.id,
        name=role.name,
        description=role.description,
        builtin=role.builtin,
        levels={c.value: levels.get(c.value, "none") for c in Category} if not role.builtin else {},
        permissions=sorted(p.value for p in role_permissions(role)),
    )


def role_detail(admin: PrincipalAdmin, role: Role) -> RoleDetail:
    holders: list[RoleHolder] = []
    for assignment in admin.role_holders(role):
        if assignment.user_id is not None:
            user = admin.session.get(User, assignment.user_id)
            if user is not None:
                holders.append(
                    RoleHolder(kind="user", name=user.username, source=assignment.source)
                )
        elif assignment.group_id is not None:
            group = admin.session.get(Group, assignment.group_id)
            if group is not None:
                holders.append(RoleHolder(kind="group", name=group.name, source=assignment.source))
    return RoleDetail(**role_public(role).model_dump(), holders=holders)


@router.get("/roles", response_model=list[RolePublic])
def list_roles(principal: SignedIn, container: ContainerDep) -> list[RolePublic]:
    with container.read_factory() as session:
        return [role_public(r) for r in PrincipalAdmin(session, principal).list_roles()]


@router.post("/roles", response_model=RoleDetail, status_code=201)
def create_role(body: RoleCreate, principal: SignedIn, container: ContainerDep) -> RoleDetail:
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        role = admin.create_role(body.name, dict(body.permissions), body.description)
        return role_detail(admin, role)


@router.get("/roles/{name}", response_model=RoleDetail)
def show_role(name: str, principal: SignedIn, container: ContainerDep) -> RoleDetail:
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        admin.access.require(principal, Permission.ROLE_READ)
        return role_detail(admin, admin.get_role(name))


@router.patch("/roles/{name}", response_model=RoleDetail)
def update_role(
    name: str, body: RoleUpdate, principal: SignedIn, container: ContainerDep
) -> RoleDetail:
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        levels: dict[str, str] | None = (
            dict(body.permissions) if body.permissions is not None else None
        )
        role = admin.update_role(name, levels, body.description)
        detail = role_detail(admin, role)
    container.authenticator.forget_all()
    return detail


@router.delete("/roles/{name}", status_code=204)
def delete_role(name: str, principal: SignedIn, container: ContainerDep) -> Response:
    with transaction(container.factory) as session:
        PrincipalAdmin(session, principal).delete_role(name)
    container.authenticator.forget_all()
    return Response(status_code=204)


@router.post("/roles/{name}/assignments", response_model=RoleDetail)
def assign_role(
    name: str, body: RoleAssign, principal: SignedIn, container: ContainerDep
) -> RoleDetail:
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        admin.assign(name, user=body.user, group=body.group)
        detail = role_detail(admin, admin.get_role(name))
    container.authenticator.forget_all()
    return detail


@router.delete("/roles/{name}/assignments", response_model=RoleDetail)
def unassign_role(
    name: str,
    principal: SignedIn,
    container: ContainerDep,
    user: str | None = Query(default=None, max_length=128),
    group: str | None = Query(default=None, max_length=256),
) -> RoleDetail:
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        admin.unassign(name, user=user, group=group)
        detail = role_detail(admin, admin.get_role(name))
    container.authenticator.forget_all()
    return detail
