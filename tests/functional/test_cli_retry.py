"""Every CLI command retries a server's transient answers (503 with Retry-After, a proxy's 502/504,
a connection reset while a replica restarts) with backoff, within a bounded total wait, and gives
up with a clear message and a non-zero exit; requests that change something are sent again only
when they never reached the server; ``--follow`` survives a 503 (issue 18 target 5).

The server is a small local HTTP server that answers from a script: a few 503s, then 200."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stockade.cli import retry
from stockade.cli.main import app

pytestmark = pytest.mark.functional

BUSY = (
    503,
    {"retry-after": "2"},
    {
        "title": "Service busy",
        "detail": "the database is busy or unavailable; retry shortly",
        "code": "unavailable:database",
    },
)
RESET = (0, {}, None)  # close the connection without answering


@dataclass
class Script:
    """Answers per ``METHOD path``: the first entries in turn, then the last one for good."""

    answers: dict[str, list[tuple[int, dict[str, str], Any]]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, key: str) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.seen.append(key)
            queue = self.answers.get(key)
            if not queue:
                return 404, {}, {"title": "Not found", "detail": key, "code": "not-found"}
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def count(self, key: str) -> int:
        return self.seen.count(key)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            status, headers, body = script.next(f"{self.command} {self.path.split('?')[0]}")
            if status == 0:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            data = json.dumps(body).encode()
            kind = "application/problem+json" if status >= 400 else "application/json"
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between tries, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(retry.RetryState, "sleep", lambda _self, seconds: waits.append(seconds))
    return waits


@pytest.fixture
def cli(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.setenv("STOCKADE_URL", server)
    monkeypatch.setenv("STOCKADE_TOKEN", "stk-test")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("STOCKADE_RETRY_S", raising=False)
    return CliRunner()


def invoke(cli: CliRunner, *args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def test_get_retried_after_503s_then_succeeds(
    cli: CliRunner, script: Script, slept: list[float]
) -> None:
    script.answers["GET /api/v1/channels"] = [BUSY, BUSY, (200, {}, [])]
    code, out = invoke(cli, "channel", "list", "--json")
    assert code == 0, out
    assert script.count("GET /api/v1/channels") == 3
    assert slept == [2.0, 2.0]  # as Retry-After asked
    assert "retrying" in out  # the user is told why it waits


def test_backoff_without_retry_after_and_proxy_statuses(
    cli: CliRunner, script: Script, slept: list[float]
) -> None:
    proxy = (502, {}, {"title": "Bad gateway"})
    gateway = (504, {}, {"title": "Gateway timeout"})
    script.answers["GET /api/v1/channels"] = [proxy, gateway, (503, {}, {}), (200, {}, [])]
    code, out = invoke(cli, "channel", "list", "--json")
    assert code == 0, out
    assert slept == [0.25, 0.5, 1.0]


def test_gives_up_after_the_bound_with_a_clear_message(
    cli: CliRunner, script: Script, slept: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_RETRY_S", "7")
    script.answers["GET /api/v1/channels"] = [BUSY]
    code, out = invoke(cli, "channel", "list")
    assert code == 1
    assert sum(slept) <= 7
    assert slept == [2.0, 2.0, 2.0]  # a fourth wait would pass the bound
    assert "the database is busy or unavailable; retry shortly" in out
    assert "[HTTP 503, unavailable:database]" in out
    assert "tried 4 times over 6s, giving up" in out


def test_retries_off_with_zero(
    cli: CliRunner, script: Script, slept: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_RETRY_S", "0")
    script.answers["GET /api/v1/channels"] = [BUSY, (200, {}, [])]
    code, out = invoke(cli, "channel", "list")
    assert code == 1
    assert "HTTP 503" in out
    assert slept == []
    assert script.count("GET /api/v1/channels") == 1


def test_post_answered_503_is_not_sent_again(
    cli: CliRunner, script: Script, slept: list[float]
) -> None:
    """A request that changes something may have done part of its work before the server found
    the database busy: it is reported, not repeated."""
    script.answers["POST /api/v1/mirrors/m/runs"] = [BUSY, (202, {}, {"id": 1})]
    code, out = invoke(cli, "mirror", "run", "m")
    assert code == 1
    assert script.count("POST /api/v1/mirrors/m/runs") == 1
    assert slept == []
    assert "[HTTP 503, unavailable:database]" in out


def test_connection_reset_retried_for_a_get_not_for_a_post(
    cli: CliRunner, script: Script, slept: list[float]
) -> None:
    script.answers["GET /api/v1/channels"] = [RESET, (200, {}, [])]
    code, out = invoke(cli, "channel", "list", "--json")
    assert code == 0, out
    assert script.count("GET /api/v1/channels") == 2
    script.answers["POST /api/v1/mirrors/m/runs"] = [RESET, (202, {}, {"id": 1})]
    code, out = invoke(cli, "mirror", "run", "m")
    assert code == 1
    assert script.count("POST /api/v1/mirrors/m/runs") == 1
    assert "cannot reach the Stockade server" in out


def _run(state: str) -> dict[str, Any]:
    step = {"name": "fetch", "label": "fetch upstream", "state": "done", "total": 1, "done": 1}
    return {
        "id": 1,
        "state": state,
        "steps": [step],
        "counts": {"added": 2} if state == "completed" else {},
        "summary": "2 added" if state == "completed" else None,
        "error": None,
    }


def test_follow_survives_a_503(cli: CliRunner, script: Script, slept: list[float]) -> None:
    """`mirror run --follow` polls the run and its log: a 503 between polls (the database busy
    with the run's own writes) is waited out, and the run is followed to its end."""
    script.answers["POST /api/v1/mirrors/m/runs"] = [(202, {}, _run("queued"))]
    script.answers["GET /api/v1/runs/1"] = [
        (200, {}, _run("running")),
        BUSY,
        BUSY,
        (200, {}, _run("completed")),
    ]
    script.answers["GET /api/v1/runs/1/logs"] = [BUSY, (200, {}, [])]
    code, out = invoke(cli, "mirror", "run", "m", "--follow")
    assert code == 0, out
    assert "run 1: completed" in out
    assert script.count("GET /api/v1/runs/1") == 4
    assert slept == [2.0, 2.0, 2.0]


def test_logs_follow_survives_a_503(cli: CliRunner, script: Script, slept: list[float]) -> None:
    line = {"id": 1, "at": "2026-12-07T08:00:00", "level": "info", "message": "fetched"}
    script.answers["GET /api/v1/runs/1/logs"] = [BUSY, (200, {}, [line]), (200, {}, [])]
    script.answers["GET /api/v1/runs/1"] = [BUSY, (200, {}, _run("completed"))]
    code, out = invoke(cli, "mirror", "logs", "1", "--follow")
    assert code == 0, out
    assert "fetched" in out
    assert len(slept) == 2


def test_refused_on_first_contact_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slept: list[float]
) -> None:
    """A stopped server or a wrong port: no waiting, the usual message (test_cli_unreachable)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.setenv("STOCKADE_URL", f"http://127.0.0.1:{port}")
    code, out = invoke(CliRunner(), "channel", "list")
    assert code == 1
    assert "connection refused" in out
    assert slept == []


@pytest.mark.parametrize(
    ("value", "seconds"), [("3", 3.0), ("0", 0.0), ("soon", None), (None, None)]
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    assert retry.retry_after_s(value) == seconds


def test_retry_after_http_date() -> None:
    assert retry.retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
