"""Waiting out a documented bound: what another process (a replica, ``serve --workers N``) sees of
a change made elsewhere is allowed to lag by a documented time (docs/admin-guide.md). A test
that reads through a load balancer checks that the change is seen WITHIN that bound::

    eventually(lambda: assert_status(client.get("/api/v1/whoami"), 401), within=AUTH_BOUND_S)

On one server the first attempt passes (the process that made a change sees it at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

from stockade.auth.credential_cache import REVISION_CHECK_SECONDS
from stockade.channels.servable import CHECK_SECONDS

# The product's bounds, with room for a loaded CI machine (a request may itself take a while).
AUTH_BOUND_S = REVISION_CHECK_SECONDS + 2.0  # a revocation, a role or password change
SERVING_BOUND_S = CHECK_SECONDS + 2.0  # a publication, quarantine, privacy change
CHANNEL_FILES_BOUND_S = 2.0 + 2.0  # channeldata.json, notices.json (IndexLocator's ttl: 2 s)

T = TypeVar("T")


def eventually(check: Callable[[], T], *, within: float) -> T:
    """``check()``'s value once it raises no AssertionError, retried for ``within`` seconds
    (the last failure is raised)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def answers(
    request: Callable[[], httpx.Response], status: int, *, within: float = AUTH_BOUND_S
) -> httpx.Response:
    """``request()``'s response once it has ``status`` (by default within the auth bound: a
    revocation, a disabled user, a changed password or grant)."""

    def check() -> httpx.Response:
        response = request()
        assert response.status_code == status, response.text
        return response

    return eventually(check, within=within)


def holds(predicate: Callable[[], bool], *, within: float = AUTH_BOUND_S) -> None:
    """``predicate()`` becomes true within the bound (by default the auth bound)."""

    def check() -> None:
        assert predicate(), "not within the documented bound"

    eventually(check, within=within)
