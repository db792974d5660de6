"""The header deadline on both of uvicorn's HTTP protocols (httptools, the default, and h11).

A bare ASGI app on a loopback port with a 0.5 s deadline: connections that send nothing, half a
request line or half the headers are closed; a kept-alive connection whose next request stops
half-way is closed; a complete request is answered, however long its handler takes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from stockade.web import serving
from stockade.web.serving import H11WithDeadline, HttpToolsWithDeadline
from tests.support.server import free_port

pytestmark = pytest.mark.functional

DEADLINE = 0.5


async def slow_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await asyncio.sleep(float(scope["query_string"] or b"0"))  # a handler slower than the deadline
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=[HttpToolsWithDeadline, H11WithDeadline], ids=["httptools", "h11"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    old = serving.HeaderDeadline.header_timeout
    serving.configure_header_timeout(DEADLINE)
    number = free_port()
    config = uvicorn.Config(
        slow_app,
        host="127.0.0.1",
        port=number,
        http=request.param,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield number
    finally:
        server.should_exit = True
        thread.join(10)
        serving.configure_header_timeout(old)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize(
    "beginning",
    [b"", b"GET / HT", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: "],
    ids=["nothing", "half-request-line", "half-headers"],
)
def test_half_sent_requests_are_closed(port: int, beginning: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(beginning)
        assert _closed_within(sock, DEADLINE * 6)


def test_a_kept_alive_connection_stopping_half_way_is_closed(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET / HTTP/1.1\r\n")
        assert _closed_within(sock, DEADLINE * 6)


def test_a_slow_handler_is_not_cut_off(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET /?{DEADLINE * 3} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
