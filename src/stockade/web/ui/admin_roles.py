"""Roles: ``/admin/roles`` and one role's page (levels per category, holders).

Built-in roles (``everyone``, ``author``, ``admin``) are shown as they are; a custom role gives each
category a level (none, read, write, manage), chosen with one select per category.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from starlette.responses import Response

from stockade.auth.admin import PrincipalAdmin, role_permissions
from stockade.auth.models import Group, Role, RoleAssignment, User
from stockade.auth.permissions import Category, Level, Permission
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import (
    admin_change,
    admin_context,
    confirmed,
    require,
    require_choice,
)
from stockade.web.ui.forms import (
    FormError,
    FormList,
    FormText,
    clean,
    done,
    notice_of,
    path_part,
    submit,
)
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
ROLES = "/admin/roles"
LEVELS = tuple(level.label for level in Level)
HOLDER_KINDS = ("user", "group")


@dataclass(frozen=True)
class Holder:
    kind: str  # user | group
    name: str
    source: str


def role_url(name: str) -> str:
    return f"{ROLES}/{path_part(name)}"


def levels_of(role: Role) -> dict[str, str]:
    """Every category with its level (``none`` where the role says nothing)."""
    given = dict(role.permissions or {}) if not role.builtin else {}
    return {c.value: given.get(c.value, "none") for c in Category}


def parse_level_fields(entries: list[str]) -> dict[str, str]:
    """The form's selects send ``category:level``; the service checks names and levels."""
    levels: dict[str, str] = {}
    for entry in entries:
        category, sep, level = entry.partition(":")
        if not sep:
            raise InvalidInputError(f"bad level {clean(entry, 64)!r}", field="levels")
        levels[category] = level
    return levels


def _level_context() -> dict[str, object]:
    return {"categories": [c.value for c in Category], "level_names": LEVELS}


def roles_page(
    request: Request, container: Container, principal: Principal, *, error: FormError | None = None
) -> Response:
    with container.read_factory() as session:
        roles = PrincipalAdmin(session, principal).list_roles()
        counts = {
            int(key): int(n)
            for key, n in session.execute(
                select(RoleAssignment.role_id, func.count()).group_by(RoleAssignment.role_id)
            )
        }
        context = {
            "title": "Roles",
            "roles": roles,
            "counts": counts,
            "levels": {r.id: levels_of(r) for r in roles},
            "error": error,
            "notice": None if error else notice_of(request),
            **_level_context(),
            **admin_context(principal, "roles"),
        }
        return render(request, "roles.html", context, status=error.status if error else 200)


@router.get(ROLES)
def list_roles(request: Request, principal: CurrentPrincipal, container: ContainerDep) -> Response:
    return guarded(request, principal, lambda: roles_page(request, container, principal))


@router.post(ROLES)
def create_role(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    name: FormText = "",
    description: FormText = "",
    levels: FormList = [],  # noqa: B006 (FastAPI copies defaults)
    csrf_token: FormText = "",
) -> Response:
    role = clean(name, 128)

    def change() -> Response:
        with transaction(container.factory) as session:
            PrincipalAdmin(session, principal).create_role(
                role, parse_level_fields(levels), clean(description) or None
            )
        return done(role_url(role), "role-created")

    def redraw(error: FormError) -> Response:
        return roles_page(request, container, principal, error=error)

    values = {"name": role, "description": description, **_level_values(levels)}
    return submit(
        request,
        principal,
        csrf_token,
        back=ROLES,
        change=change,
        redraw=redraw,
        form="create",
        values=values,
    )


def _level_values(entries: list[str]) -> dict[str, str]:
    """What the selects said, to choose them again when the form comes back with an error."""
    return {f"level:{c}": lvl for c, _, lvl in (e.partition(":") for e in entries[:32])}


def holders_of(admin: PrincipalAdmin, role: Role) -> list[Holder]:
    holders: list[Holder] = []
    for assignment in admin.role_holders(role):
        if assignment.user_id is not None:
            user = admin.session.get(User, assignment.user_id)
            if user is not None:
                holders.append(Holder("user", user.username, assignment.source))
        elif assignment.group_id is not None:
            group = admin.session.get(Group, assignment.group_id)
            if group is not None:
                holders.append(Holder("group", group.name, assignment.source))
    return sorted(holders, key=lambda h: (h.kind, h.name))


def role_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
) -> Response:
    require(principal, Permission.ROLE_READ)
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        role = admin.get_role(name)
        context = {
            "title": role.name,
            "role": role,
            "levels": levels_of(role),
            "permissions": sorted(p.value for p in role_permissions(role)),
            "holders": holders_of(admin, role),
            "implicit": role.name in ("everyone", "author"),
            "error": error,
            "notice": None if error else notice_of(request),
            **_level_context(),
            **admin_context(principal, "roles"),
        }
        return render(request, "role.html", context, status=error.status if error else 200)


@router.get(ROLES + "/{name}")
def show_role(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: role_page(request, container, principal, name))


def _role_change(
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
    """Run one change on a role's page; ``make`` returns the notice to show."""
    return admin_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=role_url(name),
        after=lambda notice: ROLES if notice == "role-deleted" else role_url(name),
        redraw=lambda error: role_page(request, container, principal, name, error=error),
        form=form,
        values=values,
    )


@router.post(ROLES + "/{name}")
def update_role(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    description: FormText = "",
    levels: FormList = [],  # noqa: B006 (FastAPI copies defaults)
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        admin.update_role(name, parse_level_fields(levels), clean(description))
        return "role-updated"

    values = {"description": description, **_level_values(levels)}
    return _role_change(
        request, principal, container, name, csrf_token, make, form="levels", values=values
    )


@router.post(ROLES + "/{name}/assign")
def assign_role(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    holder_kind: FormText = "user",
    holder: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        kind = require_choice(holder_kind, HOLDER_KINDS, "holder_kind")
        who = clean(holder, 256)
        if kind == "user":
            admin.assign(name, user=who)
        else:
            admin.assign(name, group=who)
        return "role-assigned"

    values = {"holder_kind": holder_kind, "holder": holder}
    return _role_change(
        request, principal, container, name, csrf_token, make, form="assign", values=values
    )


@router.post(ROLES + "/{name}/unassign")
def unassign_role(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    holder_kind: FormText = "",
    holder: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        kind = require_choice(holder_kind, HOLDER_KINDS, "holder_kind")
        who = clean(holder, 256)
        if kind == "user":
            admin.unassign(name, user=who)
        else:
            admin.unassign(name, group=who)
        return "role-unassigned"

    return _role_change(request, principal, container, name, csrf_token, make, form="holders")


@router.post(ROLES + "/{name}/delete")
def delete_role(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    confirm: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        require(principal, Permission.ROLE_MANAGE)
        confirmed(confirm, f"role {name!r}")
        admin.delete_role(name)
        return "role-deleted"

    return _role_change(request, principal, container, name, csrf_token, make, form="delete")
