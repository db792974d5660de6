"""``HeadAsGetMiddleware``: HEAD on every GET-only route, the GET's status and headers, no body."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from stockade.web.middleware import HeadAsGetMiddleware

SEEN: list[str] = []


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/page")
    def page() -> PlainTextResponse:
        return PlainTextResponse("hello", headers={"x-kind": "page"})

    @app.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b", b"c"]), media_type="text/plain")

    @app.post("/form")
    def form() -> PlainTextResponse:
        return PlainTextResponse("posted")

    async def native(request: object) -> PlainTextResponse:
        SEEN.append(getattr(request, "method", ""))
        return PlainTextResponse("native")

    app.router.routes.append(Route("/native", native, methods=["GET"]))  # GET adds HEAD
    app.add_middleware(HeadAsGetMiddleware)
    return app


def call(method: str, path: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path)

    return asyncio.run(send())


def test_head_of_a_get_only_route_answers_headers_without_body() -> None:
    got, head = call("GET", "/page"), call("HEAD", "/page")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["x-kind"] == "page"
    assert head.headers["content-length"] == got.headers["content-length"] == "5"
    streamed = call("HEAD", "/stream")
    assert (streamed.status_code, streamed.content) == (200, b"")


def test_head_is_refused_where_get_is() -> None:
    assert call("HEAD", "/form").status_code == 405
    assert call("HEAD", "/nowhere").status_code == 404


def test_routes_that_answer_head_themselves_see_head() -> None:
    SEEN.clear()
    assert call("HEAD", "/native").status_code == 200
    assert SEEN == ["HEAD"]
