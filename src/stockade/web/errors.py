"""Domain errors to HTTP: RFC 9457 problem details, in one place."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from stockade.core.errors import ErrorKind, StockadeError

log = structlog.get_logger("stockade.web")

STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 422,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TOO_MANY: 429,
}
PROBLEM_TYPE = "https://stockade.dev/problems/"
REALM = 'Basic realm="stockade", charset="UTF-8"'


def problem(status: int, title: str, detail: str, *, code: str = "error", **extra: Any) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": REALM} if status == 401 else {}
    if status in (429, 503) and isinstance(extra.get("retry_after"), int):
        headers["Retry-After"] = str(extra["retry_after"])
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def error_response(exc: StockadeError) -> Response:
    return problem(STATUS[exc.kind], exc.title, exc.detail, code=exc.code, **_jsonable(exc.extra))


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, str | int | float | bool | list | dict) else str(v)
        for k, v in extra.items()
    }


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StockadeError)
    async def _domain(_request: Request, exc: StockadeError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "request", "message": "invalid"}
        return problem(
            422,
            "Invalid request",
            f"{first['field']}: {first['message']}",
            code="request:invalid",
            errors=errors,
        )

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> Response:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Request failed")
        return problem(exc.status_code, title, str(exc.detail), code=f"http:{exc.status_code}")

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> Response:
        # A unique constraint lost a race with a concurrent request (the service checked first).
        log.info("integrity conflict", error=str(exc.orig)[:200])
        return problem(
            409,
            "Conflict",
            "the change conflicts with a concurrent change; retry",
            code="conflict:concurrent",
        )

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> Response:
        log.info("data refused by the database", error=str(exc.orig)[:200])
        return problem(
            422,
            "Invalid input",
            "the input has characters or values the database cannot store (for example NUL)",
            code="request:invalid-data",
        )

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, _exc: OverflowError) -> Response:
        # SQLite's driver refuses integers beyond 64 bits (ids, cursors in the URL).
        return problem(
            422,
            "Invalid input",
            "a number in the request is too large",
            code="request:number-too-large",
        )

    @app.exception_handler(OperationalError)
    async def _busy(_request: Request, exc: OperationalError) -> Response:
        # Deadlock victim, lock timeout, database restarting: the client may simply retry.
        log.warning("database busy or unavailable", error=str(exc.orig)[:200])
        response = problem(
            503,
            "Service busy",
            "the database is busy or unavailable; retry shortly",
            code="unavailable:database",
        )
        response.headers["retry-after"] = "1"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return problem(500, "Internal error", "an unexpected error occurred; see the server log")
