"""The auth domain's background work: the LDAP directory sync (``[ldap] sync_schedule``), a
periodic job claimed once across replicas (``db.schedules.claim_due``).

The sync bumps the credential revision in its own transactions (``auth/revision.py``), so every
process drops cached credentials of users it changed; this process's cache is dropped at once.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.authenticator import Authenticator
from stockade.core.tasks import Declared, Periodic
from stockade.settings import Settings

__all__ = ["AuthTaskDeps", "declare", "sync_ldap"]


class AuthTaskDeps(Protocol):
    settings: Settings
    factory: sessionmaker[Session]
    authenticator: Authenticator


def declare(deps: AuthTaskDeps) -> Declared:
    ldap = deps.settings.ldap
    if not (ldap.enabled and ldap.sync_schedule):
        return Declared()
    return Declared(periodic=(Periodic("ldap-sync", ldap.sync_schedule, lambda: sync_ldap(deps)),))


def sync_ldap(deps: AuthTaskDeps) -> str:
    from stockade.auth.ldap import run_ldap_sync  # ldap3 loads only where a sync runs

    result = run_ldap_sync(deps.factory, deps.settings.ldap)
    deps.authenticator.forget_all()
    return (
        f"{result.users} users: {len(result.created)} created, "
        f"{len(result.updated)} updated, {len(result.disabled)} disabled"
    )
