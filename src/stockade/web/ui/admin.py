"""Administration of people: ``/admin``, ``/admin/users`` and one user's page.

Every page asks the domain services, which check permissions themselves; forms the principal may
not use are hidden, and refused anyway when sent.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.admin import PrincipalAdmin, UserChanges
from stockade.auth.models import Group, GroupMember, Role, RoleAssignment, User
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import (
    admin_change,
    admin_context,
    assignable_roles,
    confirmed,
    require,
    revoke_token_of,
    sections_for,
)
from stockade.web.ui.forms import (
    MAX_FIELD,
    FormError,
    FormText,
    clean,
    done,
    notice_of,
    path_part,
    submit,
)
from stockade.web.ui.render import guarded, render
from stockade.web.ui.token_forms import token_rows

router = APIRouter(include_in_schema=False)
USERS = "/admin/users"


def user_url(name: str) -> str:
    return f"{USERS}/{path_part(name)}"


@router.get("/admin")
def admin_index(request: Request, principal: CurrentPrincipal) -> Response:
    def build() -> Response:
        sections = sections_for(principal)
        if not sections:
            require(principal, Permission.USER_READ)  # 401 for anonymous, 403 for the others
        context = {"title": "Administration", **admin_context(principal, "")}
        return render(request, "admin.html", {**context, "admin_sections": sections})

    return guarded(request, principal, build)


# the list --------------------------------------------------------------------------------------


def users_page(
    request: Request,
    container: Container,
    principal: Principal,
    query: str = "",
    *,
    error: FormError | None = None,
) -> Response:
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        users = admin.list_users(kind="user", query=query or None)
        context = {
            "title": "Users",
            "users": users,
            "admins": {
                u.id for u in users if any(a.role.name == "admin" for a in u.role_assignments)
            },
            "q": query,
            "error": error,
            "notice": None if error else notice_of(request),
            **admin_context(principal, "users"),
        }
        return render(request, "users.html", context, status=error.status if error else 200)


@router.get(USERS)
def list_users(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    q: str = "",
) -> Response:
    return guarded(
        request, principal, lambda: users_page(request, container, principal, clean(q, 128))
    )


@router.post(USERS)
def create_user(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    username: FormText = "",
    password: FormText = "",
    email: FormText = "",
    display_name: FormText = "",
    admin: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    name = clean(username, 128)

    def change() -> Response:
        if len(password) > MAX_FIELD:
            raise InvalidInputError("the password is too long", field="password")
        with transaction(container.factory) as session:
            PrincipalAdmin(session, principal).create_user(
                name,
                password,
                email=clean(email, 320) or None,
                display_name=clean(display_name, 256) or None,
                admin=admin == "yes",
            )
        container.authenticator.forget_all()
        return done(user_url(name), "user-created")

    def redraw(error: FormError) -> Response:
        return users_page(request, container, principal, error=error)

    values = {"username": name, "email": email, "display_name": display_name, "admin": admin}
    return submit(
        request,
        principal,
        csrf_token,
        back=USERS,
        change=change,
        redraw=redraw,
        form="create",
        values=values,
    )


# one user --------------------------------------------------------------------------------------


def _roles_of(session: Session, user: User) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(role, source) given to the user, and (role, group) that come through their groups."""
    direct = sorted((a.role.name, a.source) for a in user.role_assignments)
    inherited = session.execute(
        select(Role.name, Group.name)
        .join(RoleAssignment, RoleAssignment.role_id == Role.id)
        .join(Group, Group.id == RoleAssignment.group_id)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user.id)
        .order_by(Role.name, Group.name)
    ).all()
    return direct, [(role, group) for role, group in inherited]


def user_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
) -> Response:
    require(principal, Permission.USER_READ)
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        user = admin.get_user(name)
        groups = session.execute(
            select(Group.name, Group.source, GroupMember.source)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user.id)
            .order_by(Group.name)
        ).all()
        direct, inherited = _roles_of(session, user)
        context = {
            "title": user.username,
            "user": user,
            "groups": [tuple(row) for row in groups],
            "direct_roles": direct,
            "group_roles": inherited,
            "roles": assignable_roles(session),
            "tokens": token_rows(admin.tokens_of(user.username)),
            "is_self": user.id == principal.user_id,
            "error": error,
            "notice": None if error else notice_of(request),
            **admin_context(principal, "service-accounts" if user.kind == "service" else "users"),
        }
        return render(request, "user.html", context, status=error.status if error else 200)


@router.get(USERS + "/{name}")
def show_user(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: user_page(request, container, principal, name))


def _user_change(
    request: Request,
    principal: Principal,
    container: Container,
    name: str,
    csrf_token: str,
    make: Callable[[PrincipalAdmin], str],
    *,
    form: str,
    values: dict[str, str] | None = None,
) -> Response:
    """Run one change on a user's page; ``make`` returns the notice to show."""
    return admin_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=user_url(name),
        after=lambda notice: USERS if notice == "user-deleted" else user_url(name),
        redraw=lambda error: user_page(request, container, principal, name, error=error),
        form=form,
        values=values,
    )


@router.post(USERS + "/{name}/profile")
def update_profile(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    email: FormText = "",
    display_name: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        require(principal, Permission.USER_WRITE)
        user = admin.get_user(name)
        changes = UserChanges(display_name=clean(display_name, 256))
        if user.source == "local":
            changes = UserChanges(email=clean(email, 320), display_name=changes.display_name)
        admin.update_user(name, changes)
        return "user-updated"

    values = {"email": email, "display_name": display_name}
    return _user_change(
        request, principal, container, name, csrf_token, make, form="profile", values=values
    )


@router.post(USERS + "/{name}/active")
def set_active(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    active: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        if active not in ("yes", "no"):
            raise InvalidInputError("say whether the account is active", field="active")
        admin.update_user(name, UserChanges(is_active=active == "yes"))
        return "user-enabled" if active == "yes" else "user-disabled"

    return _user_change(request, principal, container, name, csrf_token, make, form="active")


@router.post(USERS + "/{name}/password")
def reset_password(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    password: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        require(principal, Permission.USER_WRITE)  # not the self-service path: that needs /account
        if not password or len(password) > MAX_FIELD:
            raise InvalidInputError("enter a new password of 8 to 1024 characters")
        admin.update_user(name, UserChanges(password=password))
        return "password-reset"

    return _user_change(request, principal, container, name, csrf_token, make, form="password")


@router.post(USERS + "/{name}/delete")
def delete_user(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    confirm: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        confirmed(confirm, f"user {name!r}")
        admin.delete_user(name)
        return "user-deleted"

    return _user_change(request, principal, container, name, csrf_token, make, form="delete")


@router.post(USERS + "/{name}/roles")
def assign_role(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    role: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        admin.get_user(name)
        admin.assign(clean(role, 128), user=name)
        return "role-assigned"

    return _user_change(request, principal, container, name, csrf_token, make, form="roles")


@router.post(USERS + "/{name}/roles/remove")
def unassign_role(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    role: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        admin.unassign(clean(role, 128), user=name)
        return "role-unassigned"

    return _user_change(request, principal, container, name, csrf_token, make, form="roles")


@router.post(USERS + "/{name}/tokens/{token_id}/revoke")
def revoke_user_token(
    request: Request,
    name: str,
    token_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        max_days = container.settings.auth.token_max_days
        revoke_token_of(admin.session, principal, name, token_id, max_days=max_days)
        return "token-revoked"

    return _user_change(request, principal, container, name, csrf_token, make, form="tokens")
