"""Handing committed work to the job queue without making the caller fail.

A request that has committed its change (an upload recorded, a run requested) then queues the
follow-up by id (``Container.dispatch_*``). If the broker does not answer at that moment (Redis
restarting, a network blip), the change is still committed: the client must hear that it
succeeded, not a 500 that invites a retry of something already done (found by the fault suite,
tests/fault). What the queue would have done is picked up as each kind of work allows: a
requested mirror run is resumed by the mirror schedule once it has waited ``stale_after_s``,
webhook deliveries by the outbox's pass, a feed sync by its schedule, the matching of new
artifacts by the match-request loop (``vulns.match_requests``); the failure is logged with
the ids, so an administrator can queue the rest again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("stockade.jobs")
T = TypeVar("T")


def hand_off(dispatch: Callable[[T], None], ids: T, what: str) -> bool:
    """``dispatch(ids)``; False (logged, not raised) if the queue could not take it."""
    try:
        dispatch(ids)
    except Exception as error:  # noqa: BLE001 - the change is committed: never the caller's failure
        log.warning(
            "could not queue %s %s (%s): the change is saved; the work waits for its next pass",
            what,
            ids,
            type(error).__name__,
        )
        return False
    return True
