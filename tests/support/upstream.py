"""A test upstream channel: a threaded HTTP/1.1 server on 127.0.0.1 serving a folder.

    with Upstream(channel_root, require_token="s3cret", corrupt={"linux-64/a-1-0.conda"}) as up:
        up.url                                  # http://127.0.0.1:PORT
        ...                                     # mirror from it
        up.full_downloads("linux-64/a-1-0.conda")   # bodies sent completely: 0, 1, 2...

Features: strong ETag (size + mtime) and Last-Modified, 304 on ``If-None-Match`` /
``If-Modified-Since``; a log of every request (method, path, status, body fully sent, headers,
whether it came through as a proxy request); ``require_token`` (401 without
``Authorization: Bearer <token>``); ``throttle_bps`` / ``chunk_delay_s`` (slow bodies, for stop and
kill tests); ``corrupt`` (paths whose bytes are altered on the fly, same length); ``fail_times``
(path -> number of 500 answers before it succeeds). It also answers proxy requests
(``GET http://any.host/path``) from the same folder, so a test can prove a proxy was used without
touching the network, and serves HTTPS when given an ``ssl.SSLContext``
(see :func:`self_signed_cert`). Paths in ``corrupt`` / ``fail_times`` are relative to the root.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stockade.core.outbound import OutboundPolicy
from stockade.mirroring.sources import SourceConfig

BLOCK = 64 * 1024


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # relative to the root, no leading slash
    status: int
    complete: bool  # the whole body was sent (False for 304/404/... and for aborted bodies)
    bytes_sent: int
    headers: Mapping[str, str]  # names in lower case
    proxied: bool  # absolute-form request line: it came through as a proxy request


@dataclass
class Upstream:
    root: Path
    require_token: str | None = None
    throttle_bps: int | None = None
    chunk_delay_s: float = 0.0
    corrupt: set[str] = field(default_factory=set)
    fail_times: dict[str, int] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None
    requests: list[LoggedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Upstream:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.block_on_close = False
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        server.upstream = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- the log ---------------------------------------------------------------------------

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def take_failure(self, path: str) -> bool:
        with self._lock:
            left = self.fail_times.get(path, 0)
            if left > 0:
                self.fail_times[path] = left - 1
            return left > 0

    def requests_for(self, path: str) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path.lstrip("/")]

    def full_downloads(self, path: str) -> int:
        return sum(1 for r in self.requests_for(path) if r.status == 200 and r.complete)

    def downloaded_paths(self) -> list[str]:
        """Every path whose body was sent completely, once per time it was sent."""
        with self._lock:
            return [r.path for r in self.requests if r.status == 200 and r.complete]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


def etag_of(path: Path) -> str:
    stat = path.stat()
    return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


def _not_modified(headers: Any, etag: str, mtime: float) -> bool:
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [t.strip() for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = headers.get("If-Modified-Since")
    if since:
        try:
            return int(mtime) <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is Upstream.requests

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        upstream: Upstream = self.server.upstream
        proxied = self.path.startswith(("http://", "https://"))
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        status, sent, complete = self._answer(upstream, rel, body=body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        upstream.record(LoggedRequest(self.command, rel, status, complete, sent, headers, proxied))

    def _answer(self, upstream: Upstream, rel: str, *, body: bool) -> tuple[int, int, bool]:
        token = upstream.require_token
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            return self._empty(401), 0, False
        if upstream.take_failure(rel):
            return self._empty(500), 0, False
        root = upstream.root.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return self._empty(404), 0, False
        stat = path.stat()
        etag = etag_of(path)
        headers = {"ETag": etag, "Last-Modified": formatdate(stat.st_mtime, usegmt=True)}
        if _not_modified(self.headers, etag, stat.st_mtime):
            return self._empty(304, headers), 0, False
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stat.st_size))
        self.end_headers()
        if not body:
            return 200, 0, False
        sent = self._send_body(upstream, path, corrupt=rel in upstream.corrupt)
        return 200, sent, sent == stat.st_size

    def _empty(self, status: int, headers: Mapping[str, str] | None = None) -> int:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return status

    def _send_body(self, upstream: Upstream, path: Path, *, corrupt: bool) -> int:
        sent = 0
        middle = path.stat().st_size // 2
        try:
            with path.open("rb") as fh:
                while block := fh.read(BLOCK):
                    if corrupt and sent <= middle < sent + len(block):
                        i = middle - sent
                        block = block[:i] + bytes([block[i] ^ 0xFF]) + block[i + 1 :]
                    self.wfile.write(block)
                    sent += len(block)
                    if upstream.throttle_bps:
                        time.sleep(len(block) / upstream.throttle_bps)
                    if upstream.chunk_delay_s:
                        time.sleep(upstream.chunk_delay_s)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        return sent


def serve(root: Path, **options: Any) -> Upstream:
    """An Upstream for ``root``; use it as a context manager."""
    return Upstream(root, **options)


def self_signed_cert(directory: Path, hosts: Iterable[str] = ("127.0.0.1",)) -> tuple[Path, Path]:
    """A self-signed certificate for ``hosts`` (its own CA) and its key: ``(cert.pem, key.pem)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stockade-test-upstream")])
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


#: The outbound policy of tests whose upstream is this server on 127.0.0.1: loopback is refused
#: by default (docs/adr/0010), so every such test allows it explicitly.
LOOPBACK = OutboundPolicy(allow_loopback=True)


def local_config(url: str, **options: Any) -> SourceConfig:
    """A SourceConfig for an upstream on loopback (this server)."""
    return SourceConfig(url, outbound=LOOPBACK, **options)
