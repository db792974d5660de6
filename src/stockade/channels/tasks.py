"""The channels domain's background work: publication of indexes (``channels.publication``).

Publication requests are intent rows written with the change; each pass publishes what is
requested (one publication per channel subdir at a time, by the publication lease), so every
runtime may run this loop. A committed change wakes it; a short pause lets a burst of uploads
land in one publication.
"""

from __future__ import annotations

from typing import Protocol

from stockade.channels.publication import PublicationService
from stockade.core.tasks import Declared, Loop
from stockade.settings import Settings

#: How often the loop looks for requested publications when nothing woke it.
POLL_S = 2.0


class ChannelTaskDeps(Protocol):
    settings: Settings
    publisher: PublicationService


def declare(deps: ChannelTaskDeps) -> Declared:
    publish = Loop(
        "stockade-publisher",
        POLL_S,
        deps.publisher.run_pending,
        drain=True,
        wake_on_change=True,
        coalesce_s=deps.settings.publication.coalesce_ms / 1000,
    )
    return Declared(loops=(publish,))
