"""The one outbound-request guard (ARCHITECTURE.md "One outbound guard"; docs/adr/0010).

Every feature that fetches a URL (mirror sources and their proxies, CVE feeds, webhooks, OpenID
discovery and keys) builds its HTTP client with :func:`guarded_client` or
:func:`guarded_async_client`. Their connections are opened by :class:`GuardedBackend` /
:class:`AsyncGuardedBackend`: the host is resolved once, every address is checked with
:meth:`OutboundPolicy.refused`, and the connection is made to a checked address (no second
resolution, so no DNS rebinding between check and connect). Each redirect hop opens its
connection through the same backend, and a request hook refuses any scheme but ``http``/``https``
on every hop. Through a proxy, the address connected to is the proxy's (checked); the target's
name is resolved and checked too, as far as this server can see it.

Policy: loopback, link-local (cloud metadata services), unspecified and multicast addresses are
refused; private and other non-global addresses (RFC 1918, fc00::/7, 100.64.0.0/10…) are refused
too unless ``[outbound] allow_private``. ``allow_loopback`` opens loopback; ``allowed_hosts`` lists
host names and networks (CIDR) an admin opened one by one. IPv4-mapped and NAT64 IPv6 forms are
checked as the IPv4 address they carry.

Bodies read whole (``client.get(...)``, ``.content``, every redirect hop's body) are capped at
``ClientOptions.max_body`` bytes *decoded* (:class:`BodyTooLargeError`): a gzip bomb or an endless
answer never fills the memory. Streamed bodies (``client.stream``) are their reader's to bound.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpcore
import httpx

__all__ = [
    "MAX_BODY",
    "AsyncGuardedBackend",
    "BodyTooLargeError",
    "GuardedBackend",
    "OutboundPolicy",
    "RefusedDestinationError",
    "guarded_async_client",
    "guarded_client",
    "refused_destination",
]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
SCHEMES = ("http", "https")
MAX_BODY = 1 << 30  # bytes of a body read whole, decoded (repodata.json is a few hundred MB)


class RefusedDestinationError(Exception):
    """A destination the outbound policy refuses; ``str()`` says why (for logs and admins)."""

    public = "refused by the server's outbound policy"


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses outbound requests may reach (``[outbound]`` settings)."""

    allow_loopback: bool = False
    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()
    proxy: str | None = None  # the proxy of requests that name none (an admin's setting)
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), init=False, repr=False
    )
    names: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        networks, names = [], set()
        for entry in self.allowed_hosts:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.add(entry.strip().lower().rstrip("."))
        object.__setattr__(self, "networks", tuple(networks))
        object.__setattr__(self, "names", frozenset(names))

    def with_loopback(self, allow: bool) -> OutboundPolicy:
        """This policy, with loopback also allowed when ``allow`` (a feature's own switch)."""
        if not allow or self.allow_loopback:
            return self
        return OutboundPolicy(True, self.allow_private, self.allowed_hosts, self.proxy)

    def allowing(self, host: str) -> OutboundPolicy:
        """This policy with ``host`` (a name or an address) allowed: one an admin configured."""
        return OutboundPolicy(
            self.allow_loopback,
            self.allow_private,
            (*self.allowed_hosts, host.strip("[]")),
            self.proxy,
        )

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def refused(self, address: str) -> str | None:  # noqa: PLR0911 - one return per class
        """Why this IP address may not be called, or None when it may."""
        try:
            ip: IP = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            elif ip in _NAT64:
                ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
            return f"{ip} is an unspecified address"
        if ip.is_multicast:
            return f"{ip} is a multicast address"
        if any(ip in network for network in self.networks):
            return None
        if ip.is_loopback:
            return None if self.allow_loopback else f"{ip} is a loopback address"
        if ip.is_link_local:
            return f"{ip} is a link-local address"
        if not ip.is_global:
            return None if self.allow_private else f"{ip} is a private address"
        return None


def refused_destination(host: str, policy: OutboundPolicy, port: int | None = None) -> str | None:
    """Why ``host`` may not be called (a literal address, or any address a name resolves to);
    None when it may, or when a name does not resolve (yet): calls check again when they connect."""
    host = host.strip("[]")
    if policy.host_allowed(host):
        return None
    try:
        addresses = _resolve(host, port or 0)
    except httpcore.ConnectError:
        return None
    for address in addresses:
        reason = policy.refused(address)
        if reason is not None:
            return reason if address == host else f"{host} resolves to {reason}"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"{host} does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def _checked(host: str, addresses: list[str], policy: OutboundPolicy) -> list[str]:
    if policy.host_allowed(host):
        return addresses
    for address in addresses:
        reason = policy.refused(address)
        if reason is not None:
            where = reason if address == host else f"{host} resolves to {reason}"
            raise RefusedDestinationError(f"refused destination: {where}")
    return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """Opens connections to checked addresses only; with a ``deadline`` (``time.monotonic()``),
    every operation on the socket is bounded by what is left of the call's budget."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        deadline: float | None = None,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.deadline = deadline
        self.inner = inner or httpcore.SyncBackend()

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The time an operation may take: its own timeout, within the budget."""
        if self.deadline is None:
            return timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise error("the call's time is up")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        addresses = _checked(host, _resolve(host, port), self.policy)
        self.left(None, httpcore.ConnectTimeout)
        last: Exception | None = None
        for address in addresses:  # all checked: connect to one of them, not to the name
            try:
                stream = self.inner.connect_tcp(
                    address,
                    port,
                    timeout=self.left(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
                continue
            return stream if self.deadline is None else _BoundedStream(stream, self)
        raise last or httpcore.ConnectError(f"{host} has no address")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise RefusedDestinationError("refused destination: a unix socket")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose reads and writes end with the call's budget."""

    def __init__(self, inner: httpcore.NetworkStream, backend: GuardedBackend) -> None:
        self.inner = inner
        self.backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self.backend.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self.backend.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self.inner.start_tls(
            ssl_context, server_hostname, self.backend.left(timeout, httpcore.ConnectTimeout)
        )
        return _BoundedStream(tls, self.backend)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """:class:`GuardedBackend` for ``httpx.AsyncClient`` (names resolved without blocking)."""

    def __init__(
        self, policy: OutboundPolicy, *, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        last: Exception | None = None
        for address in _checked(host, addresses, self.policy):
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedDestinationError("refused destination: a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


# ------------------------------------------------------------------------------------ clients


class BodyTooLargeError(httpx.ProtocolError):
    """A body read whole that decodes to more than the client's ``max_body`` bytes: a transport
    error (what callers already handle as "cannot be reached"), not one worth retrying."""


class _CappedDecoder:
    """httpx's content decoder of one response, failing past ``limit`` decoded bytes."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.size = 0

    def _count(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.limit:
            raise BodyTooLargeError(f"the answer is larger than {self.limit} bytes (decoded)")
        return data

    def decode(self, data: bytes) -> bytes:
        return self._count(self.inner.decode(data))

    def flush(self) -> bytes:
        return self._count(self.inner.flush())


def _cap(response: httpx.Response, limit: int | None) -> None:
    """Cap what ``response``'s body decodes to (httpx has no parameter for it: its decoder is
    wrapped; a test pins this)."""
    if limit is not None and not isinstance(response._get_content_decoder(), _CappedDecoder):
        response._decoder = _CappedDecoder(response._get_content_decoder(), limit)  # type: ignore[assignment]


class _GuardedClient(httpx.Client):
    """``httpx.Client`` whose bodies read whole (redirect hops too) are capped."""

    max_body: int | None = MAX_BODY

    def send(
        self, request: httpx.Request, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        response = super().send(request, stream=True, **kwargs)
        if not stream:
            try:
                _cap(response, self.max_body)
                response.read()
            except BaseException:
                response.close()
                raise
        return response


class _GuardedAsyncClient(httpx.AsyncClient):
    """:class:`_GuardedClient` for asyncio."""

    max_body: int | None = MAX_BODY

    async def send(
        self, request: httpx.Request, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        response = await super().send(request, stream=True, **kwargs)
        if not stream:
            try:
                _cap(response, self.max_body)
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


def _request_check(policy: OutboundPolicy, proxied: bool, request: httpx.Request) -> None:
    """Every request and redirect hop: http(s) only; through a proxy, the target checked too."""
    if request.url.scheme not in SCHEMES:
        raise RefusedDestinationError(f"refused destination: a {request.url.scheme}: URL")
    if proxied:
        reason = refused_destination(request.url.host, policy, request.url.port)
        if reason is not None:
            raise RefusedDestinationError(f"refused destination: {reason}")


@dataclass(frozen=True)
class ClientOptions:
    """What a guarded client is built with besides the policy."""

    proxy: str | None = None
    verify: ssl.SSLContext | bool = True
    timeout: httpx.Timeout | float = 60.0
    follow_redirects: bool = True
    headers: Mapping[str, str] | None = None
    auth: httpx.Auth | None = None
    limits: httpx.Limits = field(default_factory=httpx.Limits)
    deadline: float | None = None
    max_body: int | None = MAX_BODY  # decoded bytes of a body read whole (None: no cap)


_default_tls: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_default_tls_lock = threading.Lock()


def _verify(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    """The default verification as one SSL context per process (and per ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``): httpx builds a new one for each client, loading every CA certificate of
    certifi, 20-40 ms of CPU a client (a mirror run makes several). Sharing is safe: a context is
    only read when a connection is wrapped, and every client sets the same ALPN list on it
    (HTTP/1.1). A context given, or ``verify=False``, is used as it is."""
    if verify is not True:
        return verify
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _default_tls_lock:
        context = _default_tls.get(key)
        if context is None:
            context = _default_tls[key] = httpx.create_ssl_context()
        return context


def guarded_client(
    policy: OutboundPolicy,
    options: ClientOptions | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` whose connections pass the guard. ``transport`` (tests) replaces the
    network: then nothing is connected and nothing is checked but the scheme."""
    opts = options or ClientOptions()
    proxy = opts.proxy or policy.proxy
    if transport is None:
        real = httpx.HTTPTransport(proxy=proxy, verify=_verify(opts.verify), limits=opts.limits)
        # httpx has no parameter for its pool's network backend: set it on the pool it built
        # (ConnectionPool, HTTPProxy and SOCKSProxy all open sockets through it).
        real._pool._network_backend = GuardedBackend(policy, deadline=opts.deadline)
        transport = real

    def hook(request: httpx.Request) -> None:
        _request_check(policy, proxy is not None, request)

    def capped(response: httpx.Response) -> None:  # a redirect hop's body is read whole too
        if response.has_redirect_location:
            _cap(response, opts.max_body)

    client = _GuardedClient(
        transport=transport,
        event_hooks={"request": [hook], "response": [capped]},
        **_client_options(opts),
    )
    client.max_body = opts.max_body
    return client


def _client_options(opts: ClientOptions) -> dict[str, Any]:
    """What a guarded client (sync or async) takes from ``opts``."""
    return {
        "timeout": opts.timeout,
        "follow_redirects": opts.follow_redirects,
        "headers": dict(opts.headers or {}),
        "auth": opts.auth,
        "trust_env": False,  # no proxy from the environment: the destination checked is called
    }


def guarded_async_client(
    policy: OutboundPolicy,
    options: ClientOptions | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """:func:`guarded_client` for asyncio."""
    opts = options or ClientOptions()
    proxy = opts.proxy or policy.proxy
    if transport is None:
        real = httpx.AsyncHTTPTransport(
            proxy=proxy, verify=_verify(opts.verify), limits=opts.limits
        )
        real._pool._network_backend = AsyncGuardedBackend(policy)
        transport = real

    async def hook(request: httpx.Request) -> None:
        if proxy is None:
            _request_check(policy, False, request)
        else:
            await anyio.to_thread.run_sync(_request_check, policy, True, request)

    async def capped(response: httpx.Response) -> None:
        if response.has_redirect_location:
            _cap(response, opts.max_body)

    client = _GuardedAsyncClient(
        transport=transport,
        event_hooks={"request": [hook], "response": [capped]},
        **_client_options(opts),
    )
    client.max_body = opts.max_body
    return client
