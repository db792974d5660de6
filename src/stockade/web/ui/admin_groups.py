"""Groups: ``/admin/groups`` and one group's page (members, roles).

Local groups are edited here; groups from LDAP or an OpenID provider are shown read-only with their
source (their members come from there).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from starlette.responses import Response

from stockade.auth.admin import PrincipalAdmin
from stockade.auth.errors import ManagedElsewhereError
from stockade.auth.models import GroupMember, Role, RoleAssignment
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import (
    admin_change,
    admin_context,
    assignable_roles,
    confirmed,
    require,
)
from stockade.web.ui.forms import (
    FormError,
    FormText,
    clean,
    done,
    notice_of,
    path_part,
    submit,
)
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
GROUPS = "/admin/groups"


def group_url(name: str) -> str:
    return f"{GROUPS}/{path_part(name)}"


def groups_page(
    request: Request, container: Container, principal: Principal, *, error: FormError | None = None
) -> Response:
    with container.read_factory() as session:
        groups = PrincipalAdmin(session, principal).list_groups()
        counts = {
            int(key): int(n)
            for key, n in session.execute(
                select(GroupMember.group_id, func.count()).group_by(GroupMember.group_id)
            )
        }
        context = {
            "title": "Groups",
            "groups": groups,
            "counts": counts,
            "error": error,
            "notice": None if error else notice_of(request),
            **admin_context(principal, "groups"),
        }
        return render(request, "groups.html", context, status=error.status if error else 200)


@router.get(GROUPS)
def list_groups(request: Request, principal: CurrentPrincipal, container: ContainerDep) -> Response:
    return guarded(request, principal, lambda: groups_page(request, container, principal))


@router.post(GROUPS)
def create_group(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    name: FormText = "",
    description: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    group = clean(name, 128)

    def change() -> Response:
        with transaction(container.factory) as session:
            PrincipalAdmin(session, principal).create_group(group, clean(description) or None)
        return done(group_url(group), "group-created")

    def redraw(error: FormError) -> Response:
        return groups_page(request, container, principal, error=error)

    return submit(
        request,
        principal,
        csrf_token,
        back=GROUPS,
        change=change,
        redraw=redraw,
        form="create",
        values={"name": group, "description": description},
    )


def group_page(
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
        group = admin.get_group(name)
        roles = session.execute(
            select(Role.name, RoleAssignment.source)
            .join(RoleAssignment, RoleAssignment.role_id == Role.id)
            .where(RoleAssignment.group_id == group.id)
            .order_by(Role.name)
        ).all()
        context = {
            "title": group.name,
            "group": group,
            "members": admin.members(group),
            "group_roles": [(role, source) for role, source in roles],
            "roles": assignable_roles(session),
            "error": error,
            "notice": None if error else notice_of(request),
            **admin_context(principal, "groups"),
        }
        return render(request, "group.html", context, status=error.status if error else 200)


@router.get(GROUPS + "/{name}")
def show_group(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: group_page(request, container, principal, name))


def _group_change(
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
    """Run one change on a group's page; ``make`` returns the notice to show."""
    return admin_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=group_url(name),
        after=lambda notice: GROUPS if notice == "group-deleted" else group_url(name),
        redraw=lambda error: group_page(request, container, principal, name, error=error),
        form=form,
        values=values,
    )


def _local(admin: PrincipalAdmin, name: str) -> None:
    require(admin.actor, Permission.USER_WRITE)
    group = admin.get_group(name)
    if group.source != "local":
        raise ManagedElsewhereError(f"group {name!r} comes from {group.source}; change it there")


@router.post(GROUPS + "/{name}/members")
def add_member(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    username: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        admin.add_member(name, clean(username, 128))
        return "member-added"

    values = {"username": username}
    return _group_change(
        request, principal, container, name, csrf_token, make, form="members", values=values
    )


@router.post(GROUPS + "/{name}/members/remove")
def remove_member(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    username: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        admin.remove_member(name, clean(username, 128))
        return "member-removed"

    return _group_change(request, principal, container, name, csrf_token, make, form="members")


@router.post(GROUPS + "/{name}/description")
def update_group(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    description: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        _local(admin, name)
        admin.update_group(name, clean(description) or None)
        return "group-updated"

    values = {"description": description}
    return _group_change(
        request, principal, container, name, csrf_token, make, form="description", values=values
    )


@router.post(GROUPS + "/{name}/roles")
def assign_role(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    role: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        admin.assign(clean(role, 128), group=name)
        return "role-assigned"

    return _group_change(request, principal, container, name, csrf_token, make, form="roles")


@router.post(GROUPS + "/{name}/roles/remove")
def unassign_role(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    role: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        admin.unassign(clean(role, 128), group=name)
        return "role-unassigned"

    return _group_change(request, principal, container, name, csrf_token, make, form="roles")


@router.post(GROUPS + "/{name}/delete")
def delete_group(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    confirm: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(admin: PrincipalAdmin) -> str:
        _local(admin, name)
        confirmed(confirm, f"group {name!r}")
        admin.delete_group(name)
        return "group-deleted"

    return _group_change(request, principal, container, name, csrf_token, make, form="delete")
