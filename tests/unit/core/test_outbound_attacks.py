"""An attacker's review of the outbound guard (issue 11 follow-up): what a hostile upstream, feed
or redirect can try against ``stockade.core.outbound``. Servers listen on 127.0.0.1/127.0.0.2;
nothing leaves the machine."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import zstandard

from stockade.core.outbound import (
    BodyTooLargeError,
    ClientOptions,
    OutboundPolicy,
    RefusedDestinationError,
    guarded_async_client,
    guarded_client,
)
from stockade.mirroring.source_config import SourceConfig, http_client_options
from stockade.mirroring.transfer import UpstreamError, decompress_zst, is_transient_error

LOOPBACK = OutboundPolicy(allow_loopback=True)
BOMB = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in ~8 KiB
SMALL = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        server.seen.append(
            (self.path, self.headers.get("authorization"), self.headers.get("proxy-authorization"))
        )
        if self.path.startswith("/redirect"):
            self._answer(302, b"", location=server.redirect_to)
        elif self.path.startswith("/loop"):
            self._answer(302, b"", location="/loop")
        elif self.path.startswith("/bomb-redirect"):
            self._answer(302, BOMB, location="/ok", encoding="gzip")
        elif self.path.startswith("/bomb"):
            self._answer(200, BOMB, encoding="gzip")
        else:
            self._answer(200, b"ok")

    def _answer(
        self, status: int, body: bytes, location: str | None = None, encoding: str | None = None
    ) -> None:
        self.send_response(status)
        if location:
            self.send_header("location", location)
        if encoding:
            self.send_header("content-encoding", encoding)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


class _Server(ThreadingHTTPServer):
    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.seen: list[tuple[str, str | None, str | None]] = []
        self.redirect_to = ""

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


@pytest.fixture
def pair() -> Iterator[tuple[_Server, _Server, _Server]]:
    """An upstream on 127.0.0.1, another origin on 127.0.0.2, and one on 127.0.0.1, other port."""
    servers = (_Server("127.0.0.1"), _Server("127.0.0.2"), _Server("127.0.0.1"))
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------- sizes: bombs, endless bodies


def test_a_gzip_bomb_read_whole_is_refused(pair: tuple[_Server, _Server, _Server]) -> None:
    upstream = pair[0]
    with (
        guarded_client(LOOPBACK, ClientOptions(max_body=SMALL)) as client,
        pytest.raises(BodyTooLargeError),
    ):
        client.get(f"{upstream.url}/bomb")
    with guarded_client(LOOPBACK) as client:  # the default cap lets a real document through
        assert len(client.get(f"{upstream.url}/bomb").content) == 8 << 20


def test_a_gzip_bomb_is_a_transport_error_callers_already_handle(
    pair: tuple[_Server, _Server, _Server],
) -> None:
    with (
        guarded_client(LOOPBACK, ClientOptions(max_body=SMALL)) as client,
        pytest.raises(httpx.TransportError),
    ):
        client.get(f"{pair[0].url}/bomb")


def test_a_redirect_hops_body_is_capped_too(pair: tuple[_Server, _Server, _Server]) -> None:
    with (
        guarded_client(LOOPBACK, ClientOptions(max_body=SMALL)) as client,
        pytest.raises(BodyTooLargeError),
    ):
        client.get(f"{pair[0].url}/bomb-redirect")


def test_the_async_client_caps_bodies_read_whole(pair: tuple[_Server, _Server, _Server]) -> None:
    async def fetch(path: str) -> int:
        async with guarded_async_client(LOOPBACK, ClientOptions(max_body=SMALL)) as client:
            return len((await client.get(f"{pair[0].url}{path}")).content)

    with pytest.raises(BodyTooLargeError):
        asyncio.run(fetch("/bomb"))
    with pytest.raises(BodyTooLargeError):
        asyncio.run(fetch("/bomb-redirect"))
    assert asyncio.run(fetch("/ok")) == 2


def test_a_streamed_body_is_its_readers_to_bound(pair: tuple[_Server, _Server, _Server]) -> None:
    """Downloads stream (a package may be larger than any cap) and check their own size."""
    with (
        guarded_client(LOOPBACK, ClientOptions(max_body=SMALL)) as client,
        client.stream("GET", f"{pair[0].url}/bomb") as response,
    ):
        assert sum(len(chunk) for chunk in response.iter_bytes()) == 8 << 20


def test_a_zstd_bomb_in_repodata_is_refused() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (8 << 20))
    with pytest.raises(UpstreamError) as caught:
        decompress_zst(bomb, limit=SMALL)
    assert caught.value.code == "mirror:bad-repodata"
    assert len(decompress_zst(bomb + bomb)) == 16 << 20  # frames read across, under the cap
    with pytest.raises(UpstreamError, match="truncated"):
        decompress_zst(bomb[:-3])


# ------------------------------------------------------------- credentials across redirects


def test_the_token_never_follows_a_redirect_to_another_origin(
    pair: tuple[_Server, _Server, _Server],
) -> None:
    upstream, other_host, other_port = pair
    config = SourceConfig(url=f"{upstream.url}/channel", token="stk-secret", outbound=LOOPBACK)
    for target in (other_host, other_port):
        upstream.redirect_to = f"{target.url}/moved"
        with guarded_client(LOOPBACK, http_client_options(config)) as client:
            assert client.get(f"{upstream.url}/redirect").status_code == 200
        assert target.seen == [("/moved", None, None)]
    assert {auth for _, auth, _ in upstream.seen} == {"Bearer stk-secret"}


def test_userinfo_credentials_never_follow_a_redirect(
    pair: tuple[_Server, _Server, _Server],
) -> None:
    upstream, other_host, _ = pair
    upstream.redirect_to = f"{other_host.url}/moved"
    with guarded_client(LOOPBACK) as client:
        with_user = upstream.url.replace("http://", "http://user:pw@")
        assert client.get(f"{with_user}/redirect").status_code == 200
    assert upstream.seen[0][1] is not None and other_host.seen == [("/moved", None, None)]


def test_proxy_credentials_go_to_the_proxy_only(pair: tuple[_Server, _Server, _Server]) -> None:
    proxy, target, _ = pair
    options = ClientOptions(proxy=proxy.url.replace("http://", "http://pu:ppw@"))
    with guarded_client(LOOPBACK, options) as client:
        assert client.get(f"{target.url}/p").status_code == 200
    assert proxy.seen[0][2] is not None and target.seen == []  # the (forwarding) proxy got it


def test_a_redirect_loop_ends(pair: tuple[_Server, _Server, _Server]) -> None:
    with guarded_client(LOOPBACK) as client, pytest.raises(httpx.TooManyRedirects):
        client.get(f"{pair[0].url}/loop")


# ----------------------------------------------------------------- spellings of an address


@pytest.mark.parametrize(
    "host",
    [
        "[::ffff:7f00:1]",  # IPv4-mapped, hex
        "[0:0:0:0:0:ffff:169.254.169.254]",  # IPv4-mapped metadata, long form
        "[::]",
        "0",
        "0x7f000001",
        "127.000.000.001",
    ],
)
def test_more_spellings_never_connect(pair: tuple[_Server, _Server, _Server], host: str) -> None:
    port = pair[0].server_address[1]
    with (
        guarded_client(OutboundPolicy()) as client,
        pytest.raises((RefusedDestinationError, httpx.HTTPError, httpx.InvalidURL)),
    ):
        client.get(f"http://{host}:{port}/x")
    assert pair[0].seen == []


def test_an_upper_case_scheme_is_the_same_guarded_url(
    pair: tuple[_Server, _Server, _Server],
) -> None:
    url = pair[0].url.replace("http://", "HTTP://")
    with guarded_client(OutboundPolicy()) as client, pytest.raises(RefusedDestinationError):
        client.get(f"{url}/x")
    assert pair[0].seen == []


def test_a_bomb_is_a_transport_error_not_retried() -> None:
    """Callers (mirror runs, the creation check, feeds) already answer a transport error without a
    500; it is not transient, so a bomb is not fetched again."""
    error = BodyTooLargeError("too large")
    assert isinstance(error, httpx.TransportError) and not is_transient_error(error)
