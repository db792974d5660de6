"""My account: who I am (source, groups, roles), my password, my API tokens: ``/account``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import Response

from stockade.audit.service import AuditLog, Target
from stockade.auth.admin import PrincipalAdmin, UserChanges
from stockade.auth.models import Group, GroupMember
from stockade.auth.principal import Principal
from stockade.auth.secrets import verify_password
from stockade.auth.service import UserService
from stockade.auth.tokens import TokenService
from stockade.container import Container
from stockade.core.errors import AuthenticationError, InvalidInputError
from stockade.db.engine import transaction
from stockade.web.credentials import credentials_from
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.forms import (
    MAX_FIELD,
    FormError,
    FormList,
    FormText,
    Redraw,
    done,
    notice_of,
    submit,
)
from stockade.web.ui.render import guarded, render
from stockade.web.ui.token_forms import (
    NewToken,
    TokenForm,
    issue_token,
    token_form_context,
    token_rows,
)

router = APIRouter(include_in_schema=False)
PAGE = "/account"


class WrongPasswordError(InvalidInputError):
    code = "auth:wrong-password"


def account_page(
    request: Request,
    container: Container,
    principal: Principal,
    *,
    error: FormError | None = None,
    issued: NewToken | None = None,
    status: int = 200,
) -> Response:
    if principal.is_anonymous:
        raise AuthenticationError("sign in to see your account")
    max_days = container.settings.auth.token_max_days
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        user = admin.get_user(principal.username)
        groups = session.execute(
            select(Group.name, Group.source)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user.id)
            .order_by(Group.name)
        ).all()
        context = {
            "title": "My account",
            "user": user,
            "groups": [(name, source) for name, source in groups],
            "roles": sorted(principal.roles),
            "permissions": sorted(p.value for p in principal.permissions),
            "can_change_password": user.source == "local" and user.kind == "user",
            "tokens": token_rows(admin.tokens_of(user.username)),
            "issued": issued,
            "error": error,
            "notice": None if error or issued else notice_of(request),
            **token_form_context(max_days),
        }
        return render(request, "account.html", context, status=status)


@router.get(PAGE)
def show_account(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: account_page(request, container, principal))


def _redraw(request: Request, container: Container, principal: Principal) -> Redraw:
    def redraw(error: FormError) -> Response:
        return account_page(request, container, principal, error=error, status=error.status)

    return redraw


def _set_password(
    container: Container, principal: Principal, request: Request, new: Changed
) -> bool:
    """Change the principal's own password, ending its other sessions (and, if asked, revoking
    its tokens); False (counted and audited) if the current password is wrong."""
    creds = credentials_from(request)
    limiter = container.authenticator.limiter
    limiter.check(principal.username, creds.ip)
    with transaction(container.factory) as session:
        users = UserService(session)
        user = users.get_by_name(principal.username)
        if user.source != "local" or user.kind != "user":
            raise InvalidInputError(f"your password is managed by {user.source}")
        if verify_password(user.password_hash, new.current):
            changes = UserChanges(
                password=new.password,
                current_password=new.current,
                revoke_tokens=new.revoke_tokens,
                keep_session=creds.session_cookie,
            )
            PrincipalAdmin(session, principal).update_user(user.username, changes)
            return True
        AuditLog(session).record(
            "auth.failed",
            principal,
            Target("user", user.username, user.id),
            outcome="failure",
            details={"method": "password-change", "reason": WrongPasswordError.code},
        )
    limiter.failed(principal.username, creds.ip)  # wrong guesses count towards the lock
    return False


@dataclass(frozen=True)
class Changed:
    current: str
    password: str
    revoke_tokens: bool


@router.post(f"{PAGE}/password")
def change_password(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    current_password: FormText = "",
    new_password: FormText = "",
    confirm_password: FormText = "",
    revoke_tokens: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def change() -> Response:
        if new_password != confirm_password:
            raise InvalidInputError("the new password and its confirmation differ")
        if not current_password or len(new_password) > MAX_FIELD:
            raise InvalidInputError("enter your current password and a new one")
        new = Changed(current_password, new_password, revoke_tokens == "yes")
        if not _set_password(container, principal, request, new):
            raise WrongPasswordError("the current password is wrong")
        container.authenticator.forget_all()
        return done(PAGE, "password-changed-tokens" if new.revoke_tokens else "password-changed")

    return submit(
        request,
        principal,
        csrf_token,
        back=PAGE,
        change=change,
        redraw=_redraw(request, container, principal),
        form="password",
    )


@router.post(f"{PAGE}/tokens")
def create_token(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    token_name: FormText = "",
    days: FormText = "",
    kind: FormText = "personal",
    scopes: FormList = [],  # noqa: B006 (FastAPI copies defaults)
    resources: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    form = TokenForm(name=token_name, days=days, kind=kind, scopes=scopes, resources=resources)

    def change() -> Response:
        max_days = container.settings.auth.token_max_days
        with transaction(container.factory) as session:
            issued = issue_token(session, principal, principal.username, form, max_days=max_days)
        # the secret goes into this answer only: never into a URL, never shown again
        return account_page(request, container, principal, issued=issued, status=201)

    return submit(
        request,
        principal,
        csrf_token,
        back=PAGE,
        change=change,
        redraw=_redraw(request, container, principal),
        form="token",
        values={**form.values(), "scopes": " ".join(scopes)},
    )


@router.post(f"{PAGE}/tokens/{{token_id}}/revoke")
def revoke_token(
    request: Request,
    token_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    def change() -> Response:
        with transaction(container.factory) as session:
            admin = PrincipalAdmin(session, principal)
            mine = {t.id for t in admin.tokens_of(principal.username)}
            digits = token_id.isascii() and token_id.isdigit() and len(token_id) <= 18
            number = int(token_id) if digits else -1
            if number not in mine:
                raise InvalidInputError("that token is not one of yours")
            TokenService(session, max_days=container.settings.auth.token_max_days).revoke(
                principal, number
            )
        container.authenticator.forget_all()
        return done(PAGE, "token-revoked")

    return submit(
        request,
        principal,
        csrf_token,
        back=PAGE,
        change=change,
        redraw=_redraw(request, container, principal),
    )
