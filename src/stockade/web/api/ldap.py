"""LDAP / Active Directory administration: test the connection, run a sync now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import BaseModel, Field

from stockade.auth.access import AccessService
from stockade.auth.identity import ExternalIdentity
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction
from stockade.web.api import API
from stockade.web.api.schemas import Strict
from stockade.web.deps import ContainerDep, CurrentPrincipal

if TYPE_CHECKING:  # ldap3 is loaded when a directory is used, not to serve
    from stockade.auth.ldap import LdapDirectory, LdapSyncResult, LdapTestReport

router = APIRouter(prefix=API, tags=["ldap"])


class LdapTestRequest(Strict):
    username: str | None = Field(
        default=None, max_length=256, description="also look this user up (no password needed)"
    )


class LdapUserPublic(BaseModel):
    dn: str
    username: str
    email: str | None
    display_name: str | None
    active: bool
    groups: list[str]
    roles: list[str]  # what ldap.group_roles gives through those groups


class LdapTestPublic(BaseModel):
    url: str
    bound_as: str
    tls: str
    users: int
    disabled_users: int
    groups: int
    elapsed_ms: int
    user: LdapUserPublic | None = None


class LdapSyncPublic(BaseModel):
    users: int
    groups: int
    created: list[str]
    updated: list[str]
    disabled: list[str]
    skipped: list[str]


def _require_admin(principal: Principal, container: Container) -> None:
    with transaction(container.read_factory) as session:
        AccessService(session).require(principal, Permission.SYSTEM_MANAGE)


def _directory(container: Container) -> LdapDirectory:
    if not container.settings.ldap.enabled:
        raise InvalidInputError(
            "LDAP is not configured on this server: set ldap.url (STOCKADE_LDAP__URL)",
            code="ldap:not-configured",
        )
    from stockade.auth.ldap import LdapDirectory

    return LdapDirectory(container.settings.ldap)


def _user_public(identity: ExternalIdentity, directory: LdapDirectory) -> LdapUserPublic:
    names = [g.name for g in identity.groups]
    roles = sorted({r for name in names for r in directory.group_roles.get(name, ())})
    return LdapUserPublic(
        dn=identity.external_id,
        username=identity.username,
        email=identity.email,
        display_name=identity.display_name,
        active=identity.active,
        groups=names,
        roles=roles,
    )


def _test_public(report: LdapTestReport, directory: LdapDirectory) -> LdapTestPublic:
    return LdapTestPublic(
        url=report.url,
        bound_as=report.bound_as,
        tls=report.tls,
        users=report.users,
        disabled_users=report.disabled_users,
        groups=report.groups,
        elapsed_ms=report.elapsed_ms,
        user=_user_public(report.user, directory) if report.user else None,
    )


def _sync_public(result: LdapSyncResult) -> LdapSyncPublic:
    return LdapSyncPublic(
        users=result.users,
        groups=result.groups,
        created=result.created,
        updated=result.updated,
        disabled=result.disabled,
        skipped=result.skipped,
    )


@router.post("/ldap/test", response_model=LdapTestPublic)
def check_ldap(
    principal: CurrentPrincipal, container: ContainerDep, body: LdapTestRequest | None = None
) -> LdapTestPublic:
    """Bind with the configured service account and count what the directory holds."""
    _require_admin(principal, container)
    directory = _directory(container)
    report = directory.test_connection(body.username if body else None)
    return _test_public(report, directory)


@router.post("/ldap/sync", response_model=LdapSyncPublic)
def sync_ldap(principal: CurrentPrincipal, container: ContainerDep) -> LdapSyncPublic:
    """Import users and groups from the directory now (the schedule does it too)."""
    _require_admin(principal, container)
    _directory(container)
    from stockade.auth.ldap import run_ldap_sync

    result = run_ldap_sync(container.factory, container.settings.ldap, actor=principal)
    container.authenticator.forget_all()  # a disabled user loses a cached sign-in at once
    return _sync_public(result)
