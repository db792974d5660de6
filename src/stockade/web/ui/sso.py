"""Single sign-on with OpenID Connect: ``/login/sso`` and ``/auth/oidc/callback`` (SPEC §4).

``/login/sso`` starts the authorization code flow and keeps its state, nonce, PKCE verifier and
the page to return to in a short-lived HttpOnly cookie scoped to ``/auth/oidc``; the callback
checks the answer against that cookie, signs the user in (created or updated from the provider's
claims, groups included) and starts a web session as a password sign-in does.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from stockade.audit.service import AuditLog, Target
from stockade.auth.errors import InvalidCredentialsError, OidcError
from stockade.auth.identity import ExternalIdentity, IdentityService
from stockade.auth.models import User
from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.errors import ErrorKind, StockadeError
from stockade.db.engine import transaction
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.render import PAGE_ERRORS, base_url, error_page
from stockade.web.ui.signin import NextQuery, _start_session, safe_next

if TYPE_CHECKING:
    from stockade.auth.oidc import OidcClient

router = APIRouter(include_in_schema=False)
FLOW_COOKIE = "stockade_oidc_flow"
FLOW_PATH = "/auth/oidc"
CALLBACK_PATH = "/auth/oidc/callback"
FLOW_MAX_AGE_S = 600
MAX_CLIENTS = 16
NOT_CONFIGURED = "single sign-on is not configured on this server"
PROVIDER_ERRORS = {
    "access_denied": "the sign-in was cancelled or refused at the identity provider",
    "login_required": "the identity provider needs you to sign in again",
    "consent_required": "the identity provider needs your consent for this application",
    "interaction_required": "the identity provider needs you to complete a step first",
    "temporarily_unavailable": "the identity provider is temporarily unavailable",
    "server_error": "the identity provider had an internal error",
}
_lock = threading.Lock()


@dataclass(frozen=True)
class Flow:
    """What the flow cookie keeps between ``/login/sso`` and the callback."""

    state: str
    nonce: str
    code_verifier: str
    next_url: str
    started: int

    def encode(self) -> str:
        data = [self.state, self.nonce, self.code_verifier, self.next_url, self.started]
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> Flow | None:
        """The flow of a cookie, or None if it is missing, malformed or older than its life."""
        if not value or len(value) > 4096:
            return None
        try:
            data: Any = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError):
            return None
        if not (isinstance(data, list) and len(data) == 5 and isinstance(data[4], int)):
            return None
        if not all(isinstance(item, str) and item for item in data[:4]):
            return None
        if not 0 <= time.time() - data[4] <= FLOW_MAX_AGE_S:
            return None
        return cls(data[0], data[1], data[2], safe_next(data[3]), data[4])


def callback_url(request: Request) -> str:
    """The redirect URI registered at the provider: ``{public_url}/auth/oidc/callback``."""
    container: Container = request.app.state.container
    base = container.settings.public_url or base_url(request)
    return base.rstrip("/") + CALLBACK_PATH


def get_oidc_client(request: Request) -> OidcClient | None:
    """The app's OIDC client for this request's redirect URI (built once), or None if disabled.

    Without ``public_url`` the redirect URI follows the request's host, so clients are kept per
    redirect URI (a handful at most).
    """
    container: Container = request.app.state.container
    if not container.settings.oidc.enabled:
        return None
    redirect_uri = callback_url(request)
    with _lock:
        clients: dict[str, OidcClient] | None = getattr(request.app.state, "oidc_clients", None)
        if clients is None or (len(clients) >= MAX_CLIENTS and redirect_uri not in clients):
            clients = request.app.state.oidc_clients = {}
        client = clients.get(redirect_uri)
        if client is None:
            # loaded with OIDC on only: the JOSE and PKCE libraries are not needed otherwise
            from stockade.auth.oidc import OidcClient

            client = clients[redirect_uri] = OidcClient(
                container.settings.oidc,
                redirect_uri,
                outbound=container.settings.outbound.policy(),
            )
        return client


def sso_logout_url(request: Request, id_token_hint: str | None = None) -> str | None:
    """Where to send the browser after a local sign-out to also end the provider's session.

    None when OIDC is disabled or the provider has no ``end_session_endpoint``. The provider
    brings the browser back to ``{public_url}/`` (register it as a post-logout redirect URI).
    """
    client = get_oidc_client(request)
    if client is None:
        return None
    container: Container = request.app.state.container
    home = (container.settings.public_url or base_url(request)).rstrip("/") + "/"
    return client.end_session_url(id_token_hint, home)


@router.get("/login/sso")
def start_sso(request: Request, principal: CurrentPrincipal, next_url: NextQuery = "/") -> Response:
    next_url = safe_next(next_url)
    client = get_oidc_client(request)
    if client is None:
        return error_page(request, 404, "Not found", NOT_CONFIGURED)
    if not principal.is_anonymous:
        return RedirectResponse(next_url, status_code=303)
    try:
        auth = client.begin()
    except StockadeError as exc:
        return _failure_page(request, exc)
    flow = Flow(auth.state, auth.nonce, auth.code_verifier, next_url, int(time.time()))
    response = RedirectResponse(auth.url, status_code=303)
    container: Container = request.app.state.container
    response.set_cookie(
        FLOW_COOKIE,
        flow.encode(),
        max_age=FLOW_MAX_AGE_S,
        path=FLOW_PATH,
        httponly=True,
        samesite="lax",
        secure=container.settings.auth.secure_cookies,
    )
    return response


@router.get(CALLBACK_PATH)
def sso_callback(
    request: Request,
    container: ContainerDep,
    code: str = "",
    state: str = "",
    error: str = "",
    iss: str | None = None,
) -> Response:
    client = get_oidc_client(request)
    if client is None:
        return error_page(request, 404, "Not found", NOT_CONFIGURED)
    flow = Flow.decode(request.cookies.get(FLOW_COOKIE))
    identity: ExternalIdentity | None = None
    try:
        if flow is None:
            raise OidcError(
                "this sign-in has expired or was already used; start again from the sign-in page",
                code="oidc:flow-expired",
            )
        if error:
            reason = PROVIDER_ERRORS.get(error, "the identity provider reported an error")
            raise OidcError(f"{reason} ({_code(error)})", code="oidc:provider-error")
        identity = client.finish(code, state, flow, issuer=iss)
        principal = _sign_in(container, identity)
    except StockadeError as exc:
        _record_failure(container, exc, identity.username if identity else None)
        return _forget_flow(_failure_page(request, exc), container)
    return _forget_flow(_start_session(request, container, principal, flow.next_url), container)


def _sign_in(container: Container, identity: ExternalIdentity) -> Principal:
    """Create or update the user from the provider's claims; audited; refuses disabled users."""
    with transaction(container.factory) as session:
        existing = session.scalar(
            select(User).where(User.source == "oidc", User.external_id == identity.external_id)
        )
        if existing is not None and not existing.is_active:
            raise InvalidCredentialsError("this account is disabled here; ask an administrator")
        user = IdentityService(session).upsert(
            identity, group_roles=container.settings.oidc.group_roles
        )
        if not user.is_active:
            raise InvalidCredentialsError("this account is disabled here; ask an administrator")
        user.last_login_at = utcnow()
        principal = UserService(session).principal_for(user, via="oidc")
        AuditLog(session).record(
            "auth.login",
            principal,
            Target("user", user.username, user.id),
            details={"method": "oidc"},
        )
    return principal


def _record_failure(container: Container, exc: StockadeError, username: str | None) -> None:
    if exc.kind is ErrorKind.UNAVAILABLE:
        return  # the provider is down: not an authentication event
    with transaction(container.factory) as session:
        AuditLog(session).record(
            "auth.failed",
            None,
            Target("user", username[:256]) if username else None,
            outcome="failure",
            details={"method": "oidc", "reason": exc.code},
        )


def _failure_page(request: Request, exc: StockadeError) -> Response:
    status, _ = PAGE_ERRORS.get(exc.kind, (400, exc.title))
    if exc.kind is ErrorKind.UNAVAILABLE:
        return error_page(request, 503, "Single sign-on unavailable", exc.detail)
    return error_page(request, status, "Single sign-on failed", exc.detail)


def _forget_flow(response: Response, container: Container) -> Response:
    response.delete_cookie(
        FLOW_COOKIE,
        path=FLOW_PATH,
        httponly=True,
        samesite="lax",
        secure=container.settings.auth.secure_cookies,
    )
    return response


def _code(value: str) -> str:
    """An OAuth error code fit to show: letters, digits and ``_`` only, at most 64 characters."""
    cleaned = "".join(c for c in value[:64] if c.isascii() and (c.isalnum() or c == "_"))
    return cleaned or "unknown"
