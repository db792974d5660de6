"""Request ids, JSON logs and middleware options per application instance (issue 16, item 3).

- Two applications built in one process with different settings keep their own options: the
  security headers were a class attribute, so the last app built set HSTS for every other one.
- Each request has an id: a short safe ``X-Request-ID`` from the client (a load balancer) is
  kept, anything else replaced; it is echoed in the answer and bound into every log line written
  during the request (stdlib and structlog loggers alike), in the JSON format.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from fastapi import FastAPI
from starlette.responses import PlainTextResponse

from stockade.app import create_app
from stockade.container import Container
from stockade.core.logging import configure_logging
from stockade.settings import load_settings
from stockade.web.middleware import CondaFastPath, RequestContextMiddleware, TokenPathMiddleware
from tests.support.templates import clone_sqlite

HSTS = "strict-transport-security"


def get(app: object, path: str, **headers: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[object, object]]:
    containers = []
    apps = []
    for name, secure in (("plain", False), ("secure", True)):
        data = tmp_path / name
        data.mkdir()
        clone_sqlite(data / "db.sqlite")  # migrated
        settings = load_settings(
            data_dir=data,
            database_url=f"sqlite:///{data}/db.sqlite",
            auth={"secure_cookies": secure},
        )
        container = Container.build(settings)
        containers.append(container)
        apps.append(CondaFastPath(create_app(settings, container)))
    try:
        yield apps[0], apps[1]
    finally:
        for container in containers:
            container.close()


def test_two_apps_in_one_process_keep_their_own_options(two_apps: tuple[object, object]) -> None:
    plain, secure = two_apps
    for path in ("/healthz", "/conda/x/noarch/repodata.json", "/t/stk-abcdefgh12/conda/x/y"):
        assert HSTS not in get(plain, path).headers, path  # built first, not changed by the second
        assert HSTS in get(secure, path).headers, path
        assert get(plain, path).headers["x-content-type-options"] == "nosniff"


def test_options_are_per_middleware_instance() -> None:
    async def hello(_scope: object, _receive: object, send: object) -> None:
        await PlainTextResponse("hi")(_scope, _receive, send)  # type: ignore[arg-type]

    with_hsts = RequestContextMiddleware(hello, hsts=True)
    without = RequestContextMiddleware(hello)
    tokens = TokenPathMiddleware(hello, hsts=True)
    assert HSTS in get(with_hsts, "/").headers
    assert HSTS not in get(without, "/").headers
    assert HSTS not in get(tokens, "/").headers  # not a conda request: the app's own answer


def _logging_app() -> FastAPI:
    app = FastAPI()

    @app.get("/work")
    def work() -> PlainTextResponse:
        logging.getLogger("stockade.test").warning("stdlib line")
        structlog.get_logger("stockade.test").warning("structlog line", password="hunter2")
        return PlainTextResponse("done")

    app.add_middleware(RequestContextMiddleware)
    return app


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """JSON logs onto the test's captured stderr (set up by the test itself: the stream of the
    fixture's setup is closed once the test runs)."""
    try:
        yield capsys
    finally:
        configure_logging("info", "json")


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_every_log_line_of_a_request_carries_its_id(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    app = _logging_app()
    response = get(app, "/work", **{"x-request-id": "lb-42.abc"})
    assert response.headers["x-request-id"] == "lb-42.abc"
    events = {line["event"]: line for line in _lines(json_logs)}  # and httpx's, client side
    ours = [events[e] for e in ("stdlib line", "structlog line", "request")]
    assert all(line["request_id"] == "lb-42.abc" for line in ours), events
    assert events["structlog line"]["password"] == "***"
    # outside a request, no id is left behind
    logging.getLogger("stockade.test").warning("after")
    assert "request_id" not in _lines(json_logs)[0]


UNSAFE_IDS = ["", "has space", "x" * 65, "a/b", "-leading-dash", 'quote"d', "\u00e9t\u00e9"]


@pytest.mark.parametrize("sent", [*UNSAFE_IDS, "stk-" + "a1" * 12])  # the last: a token
def test_an_unsafe_request_id_is_replaced(sent: str, json_logs: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    raw = [(b"x-request-id", sent.encode())]
    response = get_raw(_logging_app(), raw)
    got = response.headers["x-request-id"]
    assert got != sent and len(got) == 16 and int(got, 16) >= 0
    lines = [line for line in _lines(json_logs) if "request_id" in line]
    assert len(lines) == 3 and all(line["request_id"] == got for line in lines), lines


def get_raw(app: object, headers: list[tuple[bytes, bytes]]) -> httpx.Response:
    """A GET with headers as bytes (httpx would refuse some of them)."""
    sent: list[dict[str, object]] = []

    async def call() -> None:
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "path": "/work",
            "raw_path": b"/work",
            "root_path": "",
            "scheme": "http",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app(scope, receive, send)  # type: ignore[operator]

    asyncio.run(call())
    start = sent[0]
    return httpx.Response(
        int(start["status"]),  # type: ignore[call-overload]
        headers=[(k.decode(), v.decode()) for k, v in start["headers"]],  # type: ignore[attr-defined]
    )
