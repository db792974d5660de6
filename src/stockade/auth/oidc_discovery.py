"""The OpenID provider as seen from Stockade: discovery, signing keys, and JWT checks.

:class:`ProviderMetadata` fetches ``{issuer}/.well-known/openid-configuration`` and the JWKS it
points to, caches both, and checks JWT signatures with them (an unknown ``kid`` refetches the
keys once, at most every :data:`JWKS_MIN_REFRESH_S` seconds). :func:`check_claims` checks the
registered claims. Only asymmetric signatures are accepted: never ``none``, never HMAC.

Calls pass the outbound guard (``stockade.core.outbound``): the configured issuer's host is
allowed (an administrator named it in the settings), any other host the discovery document names
(``jwks_uri``, the token endpoint) must pass the ``[outbound]`` policy. Redirects are not followed.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet

from stockade.core.errors import UnavailableError
from stockade.core.outbound import (
    ClientOptions,
    OutboundPolicy,
    RefusedDestinationError,
    guarded_client,
)
from stockade.core.urls import URLParseError, parse_url
from stockade.settings import OidcSettings

SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
LEEWAY_S = 30  # clock skew tolerated on exp, nbf and iat
METADATA_TTL_S = 3600.0
JWKS_TTL_S = 3600.0
JWKS_MIN_REFRESH_S = 30.0  # an unknown kid refetches the keys at most this often
MAX_TOKEN_LENGTH = 16_384


class TokenRejectedError(Exception):
    """A JWT failed a check; ``reason`` completes "the token was refused: …" (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderMetadata:
    """The discovery document and signing keys of one issuer, fetched on demand and cached.

    ``transport`` replaces the network (tests). Thread-safe: the API verifies tokens from several
    worker threads at once.
    """

    def __init__(
        self,
        settings: OidcSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        if not settings.issuer:
            raise ValueError("OIDC is not configured: oidc.issuer is empty")
        self.configured_issuer = settings.issuer
        try:
            issuer_host = parse_url(settings.issuer).host
        except URLParseError as exc:
            raise ValueError(f"oidc.issuer is not a URL ({exc})") from None
        options = ClientOptions(
            timeout=settings.http_timeout_s,
            verify=_tls(settings),
            follow_redirects=False,
            headers={"accept": "application/json"},
            # Few calls (keys and metadata are cached): no idle connections left to leak.
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        policy = (outbound or OutboundPolicy()).allowing(issuer_host)
        self.http = guarded_client(policy, options, transport=transport)
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL_S:
                self._metadata = self._discover()
                self._metadata_at = time.monotonic()
            return self._metadata

    @property
    def issuer(self) -> str:
        return str(self.metadata()["issuer"])

    def endpoint(self, name: str) -> str | None:
        value = self.metadata().get(name)
        if not isinstance(value, str):
            return None
        try:
            scheme = parse_url(value).scheme  # parsed once: the scheme decided on its parsed form
        except URLParseError:
            return None
        return value if scheme in ("https", "http") else None

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._call("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._call("POST", url, **kwargs)

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, url, **kwargs)
        except (httpx.HTTPError, RefusedDestinationError) as exc:
            raise UnavailableError(
                f"the OpenID provider {self.configured_issuer} cannot be reached "
                f"({type(exc).__name__})",
                code="oidc:unreachable",
            ) from None

    def _discover(self) -> dict[str, Any]:
        url = self.configured_issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._json(self.get(url), "discovery document")
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.configured_issuer.rstrip("/"):
            raise UnavailableError(
                f"the OpenID provider's discovery document names the issuer {issuer!r}, "
                f"not {self.configured_issuer!r}; check oidc.issuer",
                code="oidc:discovery",
            )
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(name), str):
                raise UnavailableError(
                    f"the OpenID provider's discovery document has no {name}",
                    code="oidc:discovery",
                )
        return document

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise UnavailableError(
                f"the OpenID provider answered HTTP {response.status_code} for its {what}",
                code="oidc:unreachable",
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise UnavailableError(
                f"the OpenID provider's {what} is not a JSON object", code="oidc:discovery"
            )
        return body

    def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's public keys; ``refresh`` refetches them unless that was done just now."""
        with self._lock:
            age = time.monotonic() - self._keys_at
            stale = self._keys is None or age > JWKS_TTL_S or (refresh and age > JWKS_MIN_REFRESH_S)
            if stale:
                self._keys = self._fetch_keys()
                self._keys_at = time.monotonic()
            assert self._keys is not None
            return self._keys

    def _fetch_keys(self) -> KeySet:
        url = self._metadata["jwks_uri"] if self._metadata else None
        if url is None:  # pragma: no cover - metadata() is always called first
            raise UnavailableError("no JWKS location known yet", code="oidc:discovery")
        document = self._json(self.get(url), "signing keys (JWKS)")
        try:
            return KeySet.import_key_set(document)  # type: ignore[arg-type]  # joserfc checks it
        except (JoseError, ValueError, KeyError, TypeError):
            raise UnavailableError(
                "the OpenID provider's signing keys (JWKS) cannot be read", code="oidc:jwks"
            ) from None

    def decode(self, token: str) -> jwt.Token:
        """Check the signature of ``token``; an unknown ``kid`` refetches the keys once."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise TokenRejectedError("it is not a signed JWT")
        self.metadata()
        for refresh in (False, True):
            try:
                return jwt.decode(token, self.keys(refresh=refresh), algorithms=SIGNING_ALGORITHMS)
            except InvalidKeyIdError:
                continue
            except BadSignatureError:
                raise TokenRejectedError("its signature does not verify") from None
            except UnsupportedAlgorithmError:
                raise TokenRejectedError(
                    "its signing algorithm is not accepted (asymmetric algorithms only)"
                ) from None
            except (JoseError, ValueError, TypeError, KeyError):
                raise TokenRejectedError("it is not a well-formed signed JWT") from None
        raise TokenRejectedError("it is signed with a key the provider does not publish")

    def close(self) -> None:
        self.http.close()


def _tls(settings: OidcSettings) -> ssl.SSLContext | bool:
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return settings.verify_tls


def check_claims(
    claims: Mapping[str, Any], *, issuer: str, audiences: Sequence[str], required: Sequence[str]
) -> None:
    """``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` (with :data:`LEEWAY_S`); raises TokenRejectedError."""
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "values": list(audiences)},
    }
    options.update({name: {"essential": True} for name in required if name not in options})
    registry = jwt.JWTClaimsRegistry(leeway=LEEWAY_S, **options)
    try:
        registry.validate(dict(claims))
    except ExpiredTokenError:
        raise TokenRejectedError("it has expired") from None
    except MissingClaimError as exc:
        raise TokenRejectedError(f"it lacks the {exc.claim} claim") from None
    except ClaimError as exc:
        raise TokenRejectedError(
            _CLAIM_REASONS.get(exc.claim, f"its {exc.claim} claim is wrong")
        ) from None


_CLAIM_REASONS = {
    "iss": "it was issued by another provider (iss)",
    "aud": "it is meant for another audience (aud)",
    "nbf": "it is not valid yet (nbf)",
    "iat": "it was issued in the future (iat)",
    "exp": "its expiry (exp) is not a date",
    "sub": "its subject (sub) is not a string",
}
