"""Deleting a group, or taking the admin role away through one, follows the rules of changing
its members (review of issue 11): nobody strips power they do not hold, and no change leaves the
server without an active administrator."""

from __future__ import annotations

from typing import Any

import pytest

from stockade.auth.admin import PrincipalAdmin
from stockade.auth.errors import AccessDeniedError
from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction

PASSWORD = "correct-horse-battery"


def principal(container: Container, name: str) -> Principal:
    with transaction(container.factory) as session:
        users = UserService(session)
        return users.principal_for(users.get_by_name(name), via="password")


def act(container: Container, actor: Principal, do: str, *args: Any, **kwargs: Any) -> None:
    with transaction(container.factory) as session:
        getattr(PrincipalAdmin(session, actor), do)(*args, **kwargs)


def setup_admin_group(container: Container, admin: Principal) -> None:
    """Group ``ops`` holds the admin role; ``boss`` is an admin through it only."""
    with transaction(container.factory) as session:
        UserService(session).create_user("boss", PASSWORD)
        UserService(session).create_user("keeper", PASSWORD)
        manage = PrincipalAdmin(session, admin)
        manage.create_group("ops")
        manage.assign("admin", group="ops")
        manage.add_member("ops", "boss")
        manage.create_role("people", {"users": "manage"}, None)
        manage.assign("people", user="keeper")


def test_users_manage_cannot_delete_a_group_that_makes_admins(
    container: Container, admin: Principal
) -> None:
    setup_admin_group(container, admin)
    keeper = principal(container, "keeper")
    with pytest.raises(AccessDeniedError) as refused:
        act(container, keeper, "delete_group", "ops")
    assert refused.value.code == "group:escalation"
    assert "admin" in principal(container, "boss").roles


def test_users_manage_cannot_delete_a_group_granting_more_than_they_hold(
    container: Container, admin: Principal
) -> None:
    setup_admin_group(container, admin)
    act(container, admin, "create_group", "auditors")
    act(container, admin, "create_role", "audit-reader", {"audit": "read"}, None)
    act(container, admin, "assign", "audit-reader", group="auditors")
    keeper = principal(container, "keeper")
    with pytest.raises(AccessDeniedError) as refused:
        act(container, keeper, "delete_group", "auditors")
    assert refused.value.code == "role:escalation"
    act(container, keeper, "create_group", "plain")
    act(container, keeper, "delete_group", "plain")  # a group granting nothing: fine


def test_no_group_change_leaves_the_server_without_an_admin(
    container: Container, admin: Principal
) -> None:
    setup_admin_group(container, admin)
    act(container, admin, "unassign", "admin", user="admin")  # boss remains, through ops
    boss = principal(container, "boss")
    for do, args, kwargs in (
        ("delete_group", ("ops",), {}),
        ("unassign", ("admin",), {"group": "ops"}),
        ("remove_member", ("ops", "boss"), {}),
    ):
        with pytest.raises(InvalidInputError, match="no active administrator"):
            act(container, boss, do, *args, **kwargs)
    assert "admin" in principal(container, "boss").roles
    act(container, boss, "assign", "admin", user="boss")  # a second path: now each may go
    act(container, boss, "delete_group", "ops")
    assert "admin" in principal(container, "boss").roles
