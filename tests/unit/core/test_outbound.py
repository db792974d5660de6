"""The one outbound guard (stockade.core.outbound): address classes, every spelling of an
address, the address actually connected to, and every redirect hop."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import certifi
import httpx
import pytest

from stockade.core.outbound import (
    ClientOptions,
    OutboundPolicy,
    RefusedDestinationError,
    guarded_async_client,
    guarded_client,
    refused_destination,
)

STRICT = OutboundPolicy()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 form of the metadata address
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("not-an-address", "not an IP"),
    ],
)
def test_address_classes_are_refused_by_default(address: str, kind: str) -> None:
    reason = STRICT.refused(address)
    assert reason is not None and kind in reason


def test_allowances_open_their_class_only() -> None:
    loopback = OutboundPolicy(allow_loopback=True)
    assert loopback.refused("127.0.0.1") is None
    assert loopback.refused("10.0.0.1") is not None
    private = OutboundPolicy(allow_private=True)
    assert private.refused("10.0.0.1") is None
    assert private.refused("127.0.0.1") is not None
    assert private.refused("169.254.169.254") is not None  # metadata stays refused
    listed = OutboundPolicy(allowed_hosts=("10.1.0.0/16", "Mirror.Corp"))
    assert listed.refused("10.1.2.3") is None and listed.refused("10.2.0.1") is not None
    assert listed.host_allowed("mirror.corp.")
    assert listed.refused("0.0.0.0") is not None  # never, whatever is listed
    assert STRICT.refused("93.184.215.14") is None


@pytest.mark.parametrize(
    "host", ["127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1", "[::1]", "localhost", "127.0.0.1"]
)
def test_every_spelling_of_loopback_is_refused(host: str) -> None:
    reason = refused_destination(host, STRICT)
    assert reason is not None and "loopback" in reason


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        target = self.server.redirect_to  # type: ignore[attr-defined]
        if target:
            self.send_response(302)
            self.send_header("location", target)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return None


class _Server(ThreadingHTTPServer):
    def __init__(self, host: str, redirect_to: str | None = None) -> None:
        super().__init__((host, 0), _Handler)
        self.hits: list[str] = []
        self.redirect_to = redirect_to

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    """An internal server on 127.0.0.1, and one on 127.0.0.2 (allowed) that redirects to it."""
    internal = _Server("127.0.0.1")
    front = _Server("127.0.0.2", redirect_to=f"{internal.url}/secret")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (internal, front)]
    for thread in threads:
        thread.start()
    yield internal, front
    for server in (internal, front):
        server.shutdown()
        server.server_close()


ALLOW_FRONT = OutboundPolicy(allowed_hosts=("127.0.0.2/32",))


def test_a_refused_address_is_never_connected(servers: tuple[_Server, _Server]) -> None:
    internal, _ = servers
    with guarded_client(STRICT) as client, pytest.raises(RefusedDestinationError):
        client.get(f"{internal.url}/x")
    with guarded_client(OutboundPolicy(allow_loopback=True)) as client:
        assert client.get(f"{internal.url}/x").status_code == 200
    assert internal.hits == ["/x"]


def test_every_redirect_hop_is_checked(servers: tuple[_Server, _Server]) -> None:
    internal, front = servers
    with guarded_client(ALLOW_FRONT) as client, pytest.raises(RefusedDestinationError):
        client.get(f"{front.url}/start")
    assert front.hits == ["/start"] and internal.hits == []


def test_a_redirect_to_another_scheme_is_refused(servers: tuple[_Server, _Server]) -> None:
    _, front = servers
    front.redirect_to = "file:///etc/passwd"
    with (
        guarded_client(ALLOW_FRONT) as client,
        pytest.raises((RefusedDestinationError, httpx.UnsupportedProtocol)),
    ):
        client.get(f"{front.url}/start")


async def _fetch(url: str, policy: OutboundPolicy) -> int:
    async with guarded_async_client(policy, ClientOptions()) as client:
        return (await client.get(url)).status_code


def test_the_async_client_is_guarded_too(servers: tuple[_Server, _Server]) -> None:
    import asyncio

    internal, front = servers
    with pytest.raises(RefusedDestinationError):
        asyncio.run(_fetch(f"{internal.url}/a", STRICT))
    with pytest.raises(RefusedDestinationError):
        asyncio.run(_fetch(f"{front.url}/b", ALLOW_FRONT))
    assert internal.hits == []
    assert asyncio.run(_fetch(f"{internal.url}/c", OutboundPolicy(allow_loopback=True))) == 200


def test_through_a_proxy_the_target_is_checked_too(servers: tuple[_Server, _Server]) -> None:
    internal, _ = servers
    options = ClientOptions(proxy=internal.url)  # the proxy itself is allowed (loopback)
    with guarded_client(OutboundPolicy(allow_loopback=True), options) as client:
        assert client.get("http://no-such-host.invalid/p").status_code == 200
    with (
        guarded_client(OutboundPolicy(allowed_hosts=("127.0.0.1/32",)), options) as client,
        pytest.raises(RefusedDestinationError),
    ):
        client.get("http://169.254.169.254/latest/meta-data/")
    assert internal.hits == ["http://no-such-host.invalid/p"]


def test_a_refused_proxy_is_never_connected(servers: tuple[_Server, _Server]) -> None:
    internal, _ = servers
    options = ClientOptions(proxy=f"http://user:pw@{internal.url.removeprefix('http://')}")
    with guarded_client(STRICT, options) as client, pytest.raises(RefusedDestinationError):
        client.get("http://93.184.215.14/p")
    assert internal.hits == []


def test_clients_with_the_default_verification_share_one_ssl_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One context per process (and per SSL_CERT_FILE), not one per client; a given context or
    verify=False is used as it is."""

    def context(client: httpx.Client | httpx.AsyncClient) -> object:
        return client._transport._pool._ssl_context  # type: ignore[attr-defined]

    policy = OutboundPolicy()
    first, second = guarded_client(policy), guarded_client(policy)
    shared = context(first)
    assert isinstance(shared, ssl.SSLContext)
    assert context(second) is shared
    assert context(guarded_async_client(policy)) is shared
    own = ssl.create_default_context()
    assert context(guarded_client(policy, ClientOptions(verify=own))) is own
    assert context(guarded_client(policy, ClientOptions(verify=False))) is not shared
    bundle = tmp_path / "ca.pem"
    bundle.write_text(Path(certifi.where()).read_text())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert context(guarded_client(policy)) is not shared  # another CA bundle: another context
