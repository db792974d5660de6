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

from stockade.auth.credential_cache import REVISION_CHECK_SECONDS
from stockade.channels.servable import CHECK_SECONDS

# The product's bounds, with room for a loaded CI machine (a request may itself take a while).
AUTH_BOUND_S = REVISION_CHECK_SECONDS + 2.0  # a revocation, a role or password change
SERVING_BOUND_S = CHECK_SECONDS + 2.0  # a publication, quarantine, privacy change

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
