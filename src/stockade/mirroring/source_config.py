"""How a mirror reaches its upstream: :class:`SourceConfig`, and the HTTP client options built
from it (proxy, TLS, timeout, and the token bound to the origin it was given for).

The token is sent as ``Authorization: Bearer`` only to ``token_origin`` (:class:`BearerSameOrigin`):
never to a CEP 15 ``base_url`` on another host, nor after a redirect to another origin, nor to a
source the mirror was moved to. It is never logged nor shown (``__repr__``, :meth:`secrets`).
"""

from __future__ import annotations

import ssl
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stockade.airgap.bundle import OpenBundle
from stockade.core.errors import InvalidInputError
from stockade.core.outbound import ClientOptions, OutboundPolicy
from stockade.core.urls import URLParseError, parse_url, redact_url

__all__ = ["BearerSameOrigin", "SourceConfig", "bad_source", "bearer_for", "http_client_options"]

USER_AGENT = "stockade-mirror/1"


@dataclass(frozen=True)
class SourceConfig:
    url: str  # "https://host/path/channel", "http://…", "file:///abs/channel/folder", "airgap:NAME"
    token: str | None = None  # sent as "Authorization: Bearer <token>"; never logged nor shown
    proxy: str | None = None  # HTTP(S) proxy URL for this mirror
    ca_bundle: Path | None = None  # CA file to verify TLS with (else the system default)
    timeout_s: float = 60.0
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)  # strict by default
    token_origin: str | None = None  # the origin the token was given for (default: url's)
    bundle: OpenBundle | None = None  # airgap: the bundle a run applies, open and verified

    def __repr__(self) -> str:  # the dataclass repr would show the token
        return f"SourceConfig(url={redact_url(self.url)!r}, token={'***' if self.token else None})"

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a message (token, passwords of the URLs)."""
        found = [self.token] if self.token else []
        for url in (self.url, self.proxy):
            if url:
                try:
                    password = parse_url(url).password
                except URLParseError:
                    continue
                if password:
                    found.append(password)
        return tuple(found)


def bad_source(config: SourceConfig, reason: str) -> InvalidInputError:
    return InvalidInputError(f"{redact_url(config.url)}: {reason}", code="mirror:bad-source")


class BearerSameOrigin(httpx.Auth):
    """``Authorization: Bearer`` on requests to the origin the token was given for only."""

    def __init__(self, token: str, origin: str) -> None:
        self._header = f"Bearer {token}"
        self._origin = origin

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        try:
            same = parse_url(str(request.url)).origin == self._origin
        except URLParseError:
            same = False
        if same:
            request.headers["authorization"] = self._header
        yield request


def bearer_for(config: SourceConfig) -> BearerSameOrigin | None:
    """The token's auth, bound to its origin; None without a token, or when the source is no
    longer the origin the token was given for (it is not sent anywhere then)."""
    if not config.token:
        return None
    try:
        origin = parse_url(config.url).origin
    except URLParseError:
        return None
    if config.token_origin is not None and config.token_origin != origin:
        return None
    return BearerSameOrigin(config.token, origin)


def http_client_options(config: SourceConfig) -> ClientOptions:
    """How ``guarded_client`` / ``guarded_async_client`` are built: proxy, TLS, timeout, token."""
    verify: ssl.SSLContext | bool = True
    if config.ca_bundle is not None:
        try:
            verify = ssl.create_default_context(cafile=str(config.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise bad_source(
                config, f"cannot read the CA bundle {config.ca_bundle}: {exc}"
            ) from None
    return ClientOptions(
        proxy=config.proxy,
        verify=verify,
        timeout=httpx.Timeout(config.timeout_s),
        follow_redirects=True,
        headers={"user-agent": USER_AGENT},
        auth=bearer_for(config),
    )
