"""Review of issue 18 (CLI retries and errors): a server URL with userinfo
(``https://user:password@host``, as CI variables often hold it) is printed whole in the CLI's
errors: "cannot reach the Stockade server at URL" and "URL answered HTTP 503 ... a proxy
answered" (after the retries give up). Secrets are never shown: the password must not appear.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stockade.cli.main import app

SECRET = "s3cr3t-in-the-url"


class _Proxy503(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>503 Service Unavailable</html>"
        self.send_response(503)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def proxy() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy503)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> str:
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.setenv("STOCKADE_URL", url)
    monkeypatch.setenv("STOCKADE_RETRY_S", "0")
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["channel", "list"], catch_exceptions=False)
    assert result.exit_code == 1
    return result.output


def test_an_unreachable_url_with_userinfo_is_not_printed_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = _run(monkeypatch, tmp_path, f"http://ci:{SECRET}@127.0.0.1:{port}")
    assert "cannot reach" in out
    assert SECRET not in out, out


def test_a_proxy_answer_with_userinfo_url_is_not_printed_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, proxy: int
) -> None:
    out = _run(monkeypatch, tmp_path, f"http://ci:{SECRET}@127.0.0.1:{proxy}")
    assert "503" in out
    assert SECRET not in out, out
