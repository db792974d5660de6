"""What the administration pages share: their menu, permission checks, role and token actions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from stockade.auth.access import AccessService
from stockade.auth.admin import PrincipalAdmin
from stockade.auth.models import Role
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.auth.tokens import TokenService
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction
from stockade.web.ui.forms import Redraw, done, submit

IMPLICIT_ROLES = ("everyone", "author")  # everyone holds them; assigning them means nothing


@dataclass(frozen=True)
class Section:
    key: str
    href: str
    label: str
    permission: Permission


SECTIONS = (
    Section("users", "/admin/users", "Users", Permission.USER_READ),
    Section(
        "service-accounts", "/admin/service-accounts", "Service accounts", Permission.USER_READ
    ),
    Section("groups", "/admin/groups", "Groups", Permission.USER_READ),
    Section("roles", "/admin/roles", "Roles", Permission.ROLE_READ),
    Section("audit", "/admin/audit", "Audit log", Permission.AUDIT_READ),
    Section("downloads", "/admin/downloads", "Downloads", Permission.AUDIT_READ),
    Section("signing", "/admin/signing", "Signing", Permission.SECURITY_READ),
    Section("airgap", "/admin/airgap", "Air-gap", Permission.MIRROR_READ),
    Section("webhooks", "/admin/webhooks", "Webhooks", Permission.CHANNEL_MANAGE),
    Section("cve-feeds", "/admin/cve-feeds", "CVE feeds", Permission.CVE_READ),
)


def sections_for(principal: Principal) -> list[Section]:
    access = AccessService()
    return [s for s in SECTIONS if access.allowed(principal, s.permission)]


def admin_context(principal: Principal, section: str) -> dict[str, object]:
    """The admin menu and what the principal may change (the pages hide forms they cannot use)."""
    access = AccessService()
    return {
        "admin_sections": sections_for(principal),
        "section": section,
        "may": {p.value: access.allowed(principal, p) for p in Permission},
    }


def require(principal: Principal, permission: Permission) -> None:
    AccessService().require(principal, permission)


def assignable_roles(session: Session) -> list[str]:
    return [
        name
        for name in session.scalars(select(Role.name).order_by(Role.builtin.desc(), Role.name))
        if name not in IMPLICIT_ROLES
    ]


def revoke_token_of(
    session: Session, principal: Principal, username: str, token_id: str, *, max_days: int
) -> None:
    """Revoke one token of ``username`` (needs user:manage unless it is the principal's own)."""
    admin = PrincipalAdmin(session, principal)
    owned = {t.id for t in admin.tokens_of(username)}
    digits = token_id.isascii() and token_id.isdigit() and len(token_id) <= 18
    number = int(token_id) if digits else -1
    if number not in owned:
        raise InvalidInputError(f"user {username!r} has no such token")
    if username != principal.username:
        require(principal, Permission.USER_MANAGE)
    TokenService(session, max_days=max_days).revoke(principal, number)


def require_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise InvalidInputError(f"choose {what}: {', '.join(choices)}", field=what)
    return value


def confirmed(value: str, what: str) -> None:
    """Deleting needs the confirmation box ticked (a form cannot be sent by mistake)."""
    if value != "yes":
        raise InvalidInputError(f"tick the box to confirm deleting {what}", field="confirm")


def admin_change(
    request: Request,
    principal: Principal,
    container: Container,
    csrf_token: str,
    make: Callable[[PrincipalAdmin], str],
    *,
    back: str,
    after: Callable[[str], str],
    redraw: Redraw,
    form: str,
    values: dict[str, str] | None = None,
) -> Response:
    """Run one administrative change from a form on the page at ``back``.

    ``make`` does it and returns the notice to show; ``after`` says where that notice takes the
    browser (the list, once the object is deleted); ``redraw`` draws the page again on a refusal.
    """

    def change() -> Response:
        with transaction(container.factory) as session:
            notice = make(PrincipalAdmin(session, principal))
        container.authenticator.forget_all()
        return done(after(notice), notice)

    return submit(
        request,
        principal,
        csrf_token,
        back=back,
        change=change,
        redraw=redraw,
        form=form,
        values=values,
    )
