"""Every CLI command that talks to the server says clearly what went wrong when the server cannot be
reached, or when the URL answers with something that is not the Stockade API (a wrong path, a web
page, a proxy): the URL, the cause, what to type; a non-zero exit and no traceback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stockade.cli.main import app
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = pytest.mark.functional

# every command that calls the server, with arguments that need nothing else
SERVER_COMMANDS = [
    ["whoami"],
    ["token", "list"],
    ["channel", "list"],
    ["channel", "show", "main"],
    ["channel", "files", "main"],
    ["mirror", "list"],
    ["mirror", "runs", "m"],
    ["policy", "list"],
    ["cve", "list"],
    ["cve", "show", "CVE-2019-10906"],
    ["cve", "feed", "list"],
    ["cve", "names", "list"],
    ["webhook", "list", "main"],
    ["report", "channel", "main"],
    ["report", "package", "main", "flask", "--version", "1", "--build", "0"],
    ["user", "list"],
    ["group", "list"],
    ["role", "list"],
    ["audit", "query"],
    ["remove", "main", "noarch/x-1-0.conda"],
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connections are refused


class _NotStockade(BaseHTTPRequestHandler):
    """A web server that is not Stockade: GET answers an HTML page, everything else 405."""

    def _page(self, status: int) -> None:
        body = b"<html><body>Method Not Allowed</body></html>"
        self.send_response(status)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._page(200)

    def do_POST(self) -> None:
        self._page(405)

    do_PUT = do_DELETE = do_PATCH = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def html_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotStockade)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.delenv("STOCKADE_URL", raising=False)
    monkeypatch.delenv("STOCKADE_TOKEN", raising=False)
    return CliRunner()


def fails(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # Rich wraps long lines


@pytest.mark.parametrize("args", SERVER_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_closed_port_names_url_and_cause(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("STOCKADE_URL", url)
    monkeypatch.setenv("STOCKADE_TOKEN", "stk-x")
    out = fails(cli, *args)
    assert f"cannot reach the Stockade server at {url}: connection refused" in out
    assert "ConnectError" not in out


@pytest.mark.parametrize("args", SERVER_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_html_answer_says_base_url(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, html_server: str, args: list[str]
) -> None:
    monkeypatch.setenv("STOCKADE_URL", html_server)
    monkeypatch.setenv("STOCKADE_TOKEN", "stk-x")
    out = fails(cli, *args)
    assert "text/html), not the Stockade API" in out
    assert f"is {html_server} the server's base URL?" in out


@pytest.mark.parametrize("server", ["closed", "html"])
def test_exports_and_uploads_say_the_same(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, html_server: str, server: str
) -> None:
    url = f"http://127.0.0.1:{_free_port()}" if server == "closed" else html_server
    monkeypatch.setenv("STOCKADE_URL", url)
    package = tmp_path / "x-1-0.conda"
    package.write_bytes(b"x")
    expected = "connection refused" if server == "closed" else "not the Stockade API"
    for args in (
        ["audit", "export", str(tmp_path / "a.json")],
        ["cve", "export", str(tmp_path / "cve.zip")],
        ["report", "env", "--spec", "flask"],
        ["upload", "-c", "main", str(package)],
    ):
        assert expected in fails(cli, *args), args
    assert not (tmp_path / "cve.zip").exists()
    assert not (tmp_path / "a.json").exists()


def test_login_closed_port_and_unknown_host(cli: CliRunner) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    out = fails(cli, "login", url, "-u", "a", "-p", "b")
    assert f"cannot reach the Stockade server at {url}: connection refused" in out
    out = fails(cli, "login", "http://no-such-host.invalid", "-u", "a", "-p", "b")
    assert "host name not found (DNS)" in out


def test_login_tls_to_plain_http_server(cli: CliRunner, html_server: str) -> None:
    https = html_server.replace("http://", "https://")
    out = fails(cli, "login", https, "-u", "a", "-p", "b")
    assert f"cannot reach the Stockade server at {https}: TLS error" in out
    assert "use http://" in out


def test_login_to_a_page_that_is_not_stockade(cli: CliRunner, html_server: str) -> None:
    out = fails(cli, "login", f"{html_server}/conda", "-u", "a", "-p", "b")
    assert f"note: using {html_server}, the server's base URL (not {html_server}/conda)" in out
    assert "HTTP 405 Method Not Allowed (text/html), not the Stockade API" in out
    assert "e.g. http://host:8000 (without /conda or /api)" in out


def test_login_not_http(cli: CliRunner) -> None:
    out = fails(cli, "login", "host:8000", "-u", "a", "-p", "b")
    assert "is not an http(s) URL: give the server's base URL, e.g. http://host:8000" in out


@pytest.mark.parametrize("suffix", ["/conda", "/conda/main/", "/api/v1", "/api/docs", "/t/stk-abc"])
def test_login_with_a_path_uses_the_base_url(
    cli: CliRunner, live_server: LiveServer, suffix: str
) -> None:
    result = cli.invoke(
        app, ["login", live_server.url + suffix, "-u", "admin", "-p", ADMIN_PASSWORD]
    )
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert f"note: using {live_server.url}, the server's base URL" in out
    assert "stk-abc" not in out  # a token in a URL is never echoed
    assert f"signed in to {live_server.url} as admin" in out
