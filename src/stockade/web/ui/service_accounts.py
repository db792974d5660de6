"""Service accounts (non-human principals for CI): ``/admin/service-accounts``.

An admin creates one, issues it tokens (the secret is shown once, in the answer to the form) and
revokes them. Roles, disabling and deleting are on the account's user page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from stockade.auth.admin import PrincipalAdmin
from stockade.auth.errors import UserNotFoundError
from stockade.auth.models import User
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import admin_context, require, revoke_token_of
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
from stockade.web.ui.token_forms import (
    NewToken,
    TokenForm,
    issue_token,
    token_form_context,
    token_rows,
)

router = APIRouter(include_in_schema=False)
ACCOUNTS = "/admin/service-accounts"


def account_url(name: str) -> str:
    return f"{ACCOUNTS}/{path_part(name)}"


def accounts_page(
    request: Request, container: Container, principal: Principal, *, error: FormError | None = None
) -> Response:
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        accounts = admin.list_users(kind="service")
        active = {
            a.id: sum(1 for t in token_rows(admin.tokens_of(a.username)) if t.state == "active")
            for a in accounts
        }
        context = {
            "title": "Service accounts",
            "accounts": accounts,
            "active_tokens": active,
            "error": error,
            "notice": None if error else notice_of(request),
            **admin_context(principal, "service-accounts"),
        }
        return render(
            request, "service_accounts.html", context, status=error.status if error else 200
        )


@router.get(ACCOUNTS)
def list_accounts(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: accounts_page(request, container, principal))


@router.post(ACCOUNTS)
def create_account(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    name: FormText = "",
    description: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    account = clean(name, 128)

    def change() -> Response:
        with transaction(container.factory) as session:
            PrincipalAdmin(session, principal).create_user(
                account, None, display_name=clean(description, 256) or None, kind="service"
            )
        return done(account_url(account), "service-created")

    def redraw(error: FormError) -> Response:
        return accounts_page(request, container, principal, error=error)

    return submit(
        request,
        principal,
        csrf_token,
        back=ACCOUNTS,
        change=change,
        redraw=redraw,
        form="create",
        values={"name": account, "description": description},
    )


def _service_account(admin: PrincipalAdmin, name: str) -> User:
    user = admin.get_user(name)
    if user.kind != "service":
        raise UserNotFoundError(f"service account {name!r} not found")
    return user


def account_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
    issued: NewToken | None = None,
    status: int = 200,
) -> Response:
    require(principal, Permission.USER_READ)
    with container.read_factory() as session:
        admin = PrincipalAdmin(session, principal)
        account = _service_account(admin, name)
        context = {
            "title": account.username,
            "account": account,
            "tokens": token_rows(admin.tokens_of(account.username)),
            "issued": issued,
            "error": error,
            "notice": None if error or issued else notice_of(request),
            **token_form_context(container.settings.auth.token_max_days),
            **admin_context(principal, "service-accounts"),
        }
        return render(request, "service_account.html", context, status=status)


@router.get(ACCOUNTS + "/{name}")
def show_account(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: account_page(request, container, principal, name))


@router.post(ACCOUNTS + "/{name}/tokens")
def issue_account_token(
    request: Request,
    name: str,
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
            _service_account(PrincipalAdmin(session, principal), name)
            issued = issue_token(session, principal, name, form, max_days=max_days)
        # the secret is in this answer only: no redirect, no URL, never shown again
        return account_page(request, container, principal, name, issued=issued, status=201)

    def redraw(error: FormError) -> Response:
        return account_page(request, container, principal, name, error=error, status=error.status)

    return submit(
        request,
        principal,
        csrf_token,
        back=account_url(name),
        change=change,
        redraw=redraw,
        form="token",
        values={**form.values(), "scopes": " ".join(scopes)},
    )


@router.post(ACCOUNTS + "/{name}/tokens/{token_id}/revoke")
def revoke_account_token(
    request: Request,
    name: str,
    token_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    def change() -> Response:
        max_days = container.settings.auth.token_max_days
        with transaction(container.factory) as session:
            _service_account(PrincipalAdmin(session, principal), name)
            revoke_token_of(session, principal, name, token_id, max_days=max_days)
        container.authenticator.forget_all()
        return done(account_url(name), "token-revoked")

    def redraw(error: FormError) -> Response:
        return account_page(request, container, principal, name, error=error, status=error.status)

    return submit(
        request,
        principal,
        csrf_token,
        back=account_url(name),
        change=change,
        redraw=redraw,
        form="tokens",
    )
