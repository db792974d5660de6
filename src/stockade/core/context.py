"""Who is asking and from where, for the current request or command (read by the audit log).

Edges set it once per request (web middleware) or per command (CLI); domain code only reads it.
Context variables follow ``anyio.to_thread.run_sync``, so sync endpoints see the request's value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    channel: str = "system"  # api | ui | conda | cli | system | job


_current: ContextVar[Origin] = ContextVar("stockade_origin", default=Origin())  # noqa: B039


def current_origin() -> Origin:
    return _current.get()


def set_origin(origin: Origin) -> None:
    _current.set(origin)


@contextmanager
def origin(value: Origin) -> Iterator[None]:
    token = _current.set(value)
    try:
        yield
    finally:
        _current.reset(token)
