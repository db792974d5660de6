"""OpenID Connect (SPEC §4): single sign-on for the web UI, and the provider's JWTs on the API.

:class:`OidcClient` runs the authorization code flow with PKCE: :meth:`~OidcClient.begin` gives
the provider URL to send the browser to and what the edge keeps until the callback (state, nonce,
code verifier); :meth:`~OidcClient.finish` checks the callback, exchanges the code, validates the
ID token and maps its claims to an :class:`~stockade.auth.identity.ExternalIdentity`.

:class:`OidcBearerVerifier` checks a JWT access token presented on the API (CI workload identity):
signature against the provider's JWKS, issuer, audience, expiry.

Both find the provider through :class:`~stockade.auth.oidc_discovery.ProviderMetadata`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import httpx
from authlib.common.security import (  # type: ignore[import-untyped]  # authlib ships no types
    generate_token,
)
from authlib.oauth2.rfc7636 import (  # type: ignore[import-untyped]  # authlib ships no types
    create_s256_code_challenge,
)

from stockade.auth.errors import InvalidCredentialsError, OidcError
from stockade.auth.identity import ExternalGroup, ExternalIdentity
from stockade.auth.oidc_discovery import ProviderMetadata, TokenRejectedError, check_claims
from stockade.core.errors import UnavailableError
from stockade.core.outbound import OutboundPolicy
from stockade.settings import OidcSettings

MAX_GROUPS = 500
MAX_NAME = 256
MAX_SUBJECT = 255  # OpenID Connect Core 1.0, 2: "It MUST NOT exceed 255 ASCII characters"


@dataclass(frozen=True)
class AuthRequest:
    """Where to send the browser, and what to keep (in a cookie) until the callback."""

    url: str
    state: str
    nonce: str
    code_verifier: str


class KeptRequest(Protocol):
    """What :meth:`OidcClient.finish` needs of the kept request (an :class:`AuthRequest` fits)."""

    @property
    def state(self) -> str: ...
    @property
    def nonce(self) -> str: ...
    @property
    def code_verifier(self) -> str: ...


def identity_from_claims(
    settings: OidcSettings, issuer: str, claims: Mapping[str, Any]
) -> ExternalIdentity:
    """Map the provider's claims to an identity, following the ``oidc.*_claim`` settings."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise OidcError("the identity provider did not say who you are (no sub claim)")
    if len(sub) > MAX_SUBJECT:
        raise OidcError(
            f"the identity provider's subject (sub claim) is longer than {MAX_SUBJECT} "
            "characters, which OpenID Connect does not allow",
            code="oidc:bad-subject",
        )
    username = _text(claim_value(claims, settings.username_claim)) or sub
    groups = _groups(claim_value(claims, settings.groups_claim)) if settings.groups_claim else ()
    return ExternalIdentity(
        source="oidc",
        external_id=f"{issuer}|{sub}",
        username=username,
        email=_text(claim_value(claims, settings.email_claim)),
        display_name=_text(claim_value(claims, settings.name_claim)),
        groups=tuple(ExternalGroup(external_id=name, name=name) for name in groups),
    )


def claim_value(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name; a dotted name also walks nested objects (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()[:MAX_NAME]
    return value or None


def _groups(value: Any) -> tuple[str, ...]:
    """Group names from a claim: a list of strings (or one string); Keycloak's leading ``/`` goes."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    names: dict[str, None] = {}
    for item in items[: MAX_GROUPS * 2]:
        name = _text(item.lstrip("/")) if isinstance(item, str) else None
        if name:
            names[name] = None
    return tuple(names)[:MAX_GROUPS]


def _missing(settings: OidcSettings, claims: Mapping[str, Any]) -> bool:
    wanted = [settings.username_claim, settings.email_claim]
    if settings.groups_claim:
        wanted.append(settings.groups_claim)
    return any(claim_value(claims, name) is None for name in wanted)


class OidcClient:
    """The authorization code flow with PKCE, for one redirect URI (the UI's callback)."""

    def __init__(
        self,
        settings: OidcSettings,
        redirect_uri: str,
        *,
        transport: httpx.BaseTransport | None = None,
        outbound: OutboundPolicy | None = None,  # the [outbound] policy (docs/adr/0010)
    ) -> None:
        if not settings.enabled:
            raise ValueError("OIDC is not configured: set oidc.issuer and oidc.client_id")
        self.settings = settings
        self.client_id: str = settings.client_id or ""
        self.redirect_uri = redirect_uri
        self.provider = ProviderMetadata(settings, transport=transport, outbound=outbound)

    def begin(self) -> AuthRequest:
        """A new authorization request: fresh state, nonce and PKCE verifier (S256)."""
        endpoint = self.provider.endpoint("authorization_endpoint")
        if endpoint is None:
            raise UnavailableError("the OpenID provider has no authorization endpoint")
        scopes = list(dict.fromkeys(["openid", *self.settings.scopes]))
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        url = endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)
        return AuthRequest(url=url, state=state, nonce=nonce, code_verifier=verifier)

    def finish(
        self, code: str, state_from_query: str, kept: KeptRequest, *, issuer: str | None = None
    ) -> ExternalIdentity:
        """Check the callback, exchange ``code``, validate the ID token; the user's identity.

        ``issuer`` is the callback's ``iss`` parameter (RFC 9207) when the provider sends one.
        """
        if not hmac.compare_digest(state_from_query.encode(), kept.state.encode()):
            raise OidcError(
                "the sign-in response does not belong to this browser's sign-in (state "
                "mismatch); start again",
                code="oidc:state-mismatch",
            )
        if issuer is not None and issuer != self.provider.issuer:
            raise OidcError(
                "the sign-in response came from another identity provider (iss)",
                code="oidc:issuer-mismatch",
            )
        if not code or len(code) > 4096:
            raise OidcError("the sign-in response has no code", code="oidc:no-code")
        tokens = self._exchange(code, kept.code_verifier)
        claims = self._id_token_claims(tokens.get("id_token"), kept.nonce)
        access_token = tokens.get("access_token")
        if _missing(self.settings, claims) and isinstance(access_token, str):
            claims = {**self._userinfo(access_token, claims["sub"]), **claims}
        return identity_from_claims(self.settings, self.provider.issuer, claims)

    def _exchange(self, code: str, verifier: str) -> dict[str, Any]:
        endpoint = self.provider.endpoint("token_endpoint")
        assert endpoint is not None  # checked by discovery
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
        }
        response = self.provider.post(endpoint, data=data, **self._client_auth(data))
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            reason = _safe_code(error) or f"HTTP {response.status_code}"
            raise OidcError(
                f"the identity provider refused to complete the sign-in ({reason}); start again",
                code="oidc:token-exchange",
            )
        return body

    def _client_auth(self, data: dict[str, str]) -> dict[str, Any]:
        """``client_secret_basic`` unless the provider only takes ``client_secret_post``."""
        secret = self.settings.client_secret
        if secret is None:
            data["client_id"] = self.client_id  # a public client: PKCE alone
            return {}
        methods = self.provider.metadata().get("token_endpoint_auth_methods_supported")
        only_post = (
            isinstance(methods, list)
            and "client_secret_basic" not in methods
            and "client_secret_post" in methods
        )
        if only_post:
            data.update(client_id=self.client_id, client_secret=secret.get_secret_value())
            return {}
        user = quote(self.client_id, safe="")
        return {"auth": (user, quote(secret.get_secret_value(), safe=""))}

    def _id_token_claims(self, id_token: object, nonce: str) -> dict[str, Any]:
        if not isinstance(id_token, str):
            raise OidcError(
                "the identity provider sent no ID token; check that the openid scope is allowed",
                code="oidc:invalid-id-token",
            )
        try:
            claims = self.provider.decode(id_token).claims
            check_claims(
                claims,
                issuer=self.provider.issuer,
                audiences=[self.client_id],
                required=("sub", "exp", "iat"),
            )
            audience = claims.get("aud")
            if (
                isinstance(audience, list)
                and len(audience) > 1
                and claims.get("azp") != (self.client_id)
            ):
                raise TokenRejectedError("it names several audiences but not this client as azp")
            given = claims.get("nonce")
            if not isinstance(given, str) or not hmac.compare_digest(
                given.encode(), nonce.encode()
            ):
                raise TokenRejectedError("its nonce does not match this sign-in")
        except TokenRejectedError as exc:
            raise OidcError(
                f"the identity provider's ID token was refused: {exc.reason}",
                code="oidc:invalid-id-token",
            ) from None
        return claims

    def _userinfo(self, access_token: str, sub: str) -> dict[str, Any]:
        endpoint = self.provider.endpoint("userinfo_endpoint")
        if endpoint is None:
            return {}
        response = self.provider.get(endpoint, headers={"authorization": f"Bearer {access_token}"})
        try:
            body = response.json() if response.status_code == 200 else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OidcError(
                f"the identity provider's userinfo answer is unusable (HTTP "
                f"{response.status_code})",
                code="oidc:userinfo",
            )
        if body.get("sub") != sub:
            raise OidcError(
                "the identity provider's userinfo is about another user", code="oidc:userinfo"
            )
        return body

    def end_session_url(
        self, id_token_hint: str | None = None, post_logout_redirect_uri: str | None = None
    ) -> str | None:
        """Where to sign out at the provider (RP-initiated logout), or None if it cannot."""
        try:
            endpoint = self.provider.endpoint("end_session_endpoint")
        except UnavailableError:
            return None
        if endpoint is None:
            return None
        params = {"client_id": self.client_id}
        if id_token_hint:
            params["id_token_hint"] = id_token_hint
        if post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = post_logout_redirect_uri
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def close(self) -> None:
        self.provider.close()


def _safe_code(value: object) -> str | None:
    """An OAuth error code fit to show: ``[a-z_]`` only (the provider's text is not shown)."""
    if not isinstance(value, str):
        return None
    text = value[:64]
    return text if text and all(c.isascii() and (c.isalnum() or c in "_-.") for c in text) else None


class OidcBearerVerifier:
    """Checks the provider's JWT access tokens on the API (``Authorization: Bearer eyJ…``)."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        outbound: OutboundPolicy | None = None,  # the [outbound] policy (docs/adr/0010)
    ) -> None:
        if not settings.enabled:
            raise ValueError("OIDC is not configured: set oidc.issuer and oidc.client_id")
        self.settings = settings
        self.audiences: list[str] = list(settings.api_audience) or [settings.client_id or ""]
        self.provider = ProviderMetadata(settings, transport=transport, outbound=outbound)

    @property
    def group_roles(self) -> Mapping[str, Sequence[str]]:
        return self.settings.group_roles

    def verify(self, token: str) -> ExternalIdentity:
        """The identity of a valid token; raises ``InvalidCredentialsError`` (never quoting it)."""
        try:
            claims = self.provider.decode(token).claims
            check_claims(
                claims, issuer=self.provider.issuer, audiences=self.audiences, required=("exp",)
            )
            if claims.get("typ") == "ID":  # Keycloak marks its ID tokens so
                raise TokenRejectedError("it is an ID token, not an access token")
            return identity_from_claims(self.settings, self.provider.issuer, claims)
        except TokenRejectedError as exc:
            raise InvalidCredentialsError(
                f"the bearer token was refused: {exc.reason}", code="oidc:invalid-token"
            ) from None
        except OidcError as exc:
            raise InvalidCredentialsError(
                f"the bearer token was refused: {exc.detail}", code="oidc:invalid-token"
            ) from None

    def close(self) -> None:
        self.provider.close()
