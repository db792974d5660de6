"""Transient answers retried with backoff, within a bounded total wait, for every CLI request.

A server that is briefly busy (``503`` with ``Retry-After``: the database is locked by a long
write, a verdict is not in yet) or a replica restarting behind a proxy (``502``/``503``/``504``, or
the connection reset or refused) should not fail a command, nor stop a ``--follow`` loop. Each
request is tried again after ``0.25, 0.5, 1, 2, 4, 8, 8 …`` s (or what ``Retry-After`` asks), as long
as the total wait stays within ``STOCKADE_RETRY_S`` seconds (default 60; 0 turns retries off); then
the last answer (or error) is reported as usual, with how long it was tried.

What is retried, by what the server can have done with the request:

- ``GET``/``HEAD``/``OPTIONS`` (no effect): on 502, 503, 504 and on a connection that was reset,
  closed or refused.
- Every other method (``POST``, ``PUT`` uploads, ``PATCH``, ``DELETE``): only when the request
  certainly never reached the server (the connection could not be made). A 503 is not retried:
  the server's busy answer rolls back the request's transaction, but a request can commit work
  before the step that found the database busy, so a second send could do that work twice.

A refused connection is retried only after this process has had an answer from the server (a
replica restarting under a command), so a wrong URL or a stopped server fails at once; a refused
connection never sent the request, so it is retried whatever the method.
"""

from __future__ import annotations

import email.utils
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRY_STATUSES = frozenset({502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_BUDGET_S = 60.0
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 8.0
# never sent: the connection could not be made
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
# sent, and the connection broke before an answer: only a safe method may be sent again
_BROKEN = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def budget_from_env() -> float:
    """``STOCKADE_RETRY_S`` (seconds, >= 0), else :data:`DEFAULT_BUDGET_S`."""
    raw = os.environ.get("STOCKADE_RETRY_S", "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_BUDGET_S
    except ValueError:
        return DEFAULT_BUDGET_S


@dataclass
class RetryState:
    """Shared by the requests of one command: the budget, and whether the server ever answered."""

    budget_s: float = field(default_factory=budget_from_env)
    answered: bool = False
    notify: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr))

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Attempts:
    """How one request went: tries made and seconds waited between them."""

    count: int = 0
    waited_s: float = 0.0

    def describe(self) -> str:
        return f"tried {self.count} times over {self.waited_s:.0f}s" if self.count > 1 else ""


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_s(attempt: int) -> float:
    return float(min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (attempt - 1)))


class RetryingClient(httpx.Client):
    """An ``httpx.Client`` whose every ``send`` (request, stream, auth) retries transient answers."""

    def __init__(self, *, retry: RetryState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry = retry

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        attempts = Attempts()
        safe = request.method.upper() in SAFE_METHODS
        while True:
            attempts.count += 1
            try:
                response = super().send(request, **kwargs)
            except _NOT_SENT as exc:  # refused: a restarting server, or none at this URL
                delay = self._delay_after_error(exc, attempts, retry=self.retry.answered)
            except _BROKEN as exc:  # reset: the server is there; the request may have run
                delay = self._delay_after_error(exc, attempts, retry=safe)
            else:
                self.retry.answered = True
                again = self._delay_after_answer(response, attempts, safe=safe)
                if again is None:
                    response.extensions["stockade_attempts"] = attempts
                    return response
                response.close()
                self._wait(again, attempts, f"HTTP {response.status_code}")
                continue
            self._wait(delay, attempts, "connection lost")

    def _delay_after_answer(
        self, response: httpx.Response, attempts: Attempts, *, safe: bool
    ) -> float | None:
        if not safe or response.status_code not in RETRY_STATUSES:
            return None
        asked = retry_after_s(response.headers.get("retry-after"))
        delay = backoff_s(attempts.count) if asked is None else max(asked, 0.05)
        return delay if self._fits(delay, attempts) else None

    def _delay_after_error(self, exc: httpx.HTTPError, attempts: Attempts, *, retry: bool) -> float:
        delay = backoff_s(attempts.count)
        if not (retry and self._fits(delay, attempts)):
            if attempts.count > 1:
                exc.args = (f"{exc} ({attempts.describe()})", *exc.args[1:])
            raise exc
        return delay

    def _fits(self, delay: float, attempts: Attempts) -> bool:
        return attempts.waited_s + delay <= self.retry.budget_s

    def _wait(self, delay: float, attempts: Attempts, why: str) -> None:
        if attempts.count == 1:
            self.retry.notify(
                f"server busy or restarting ({why}): retrying for up to {self.retry.budget_s:.0f}s"
            )
        self.retry.sleep(delay)
        attempts.waited_s += delay
