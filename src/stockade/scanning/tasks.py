"""The scanning domain's background work: scan what was admitted (``scanning.service``).

Scan requests are intent rows (``channels/intake.py``), so nothing here needs to remember work: a
wake-up only makes it sooner. Every runtime runs this loop; the request lease keeps one scan per
artifact at a time.
"""

from __future__ import annotations

from typing import Protocol

from stockade.core.tasks import Declared, Loop
from stockade.scanning.service import ScanRunner

#: How often the loop looks for scan requests when nothing woke it.
POLL_S = 2.0


class ScanTaskDeps(Protocol):
    scans: ScanRunner


def declare(deps: ScanTaskDeps) -> Declared:
    scan = Loop(
        "stockade-scanner",
        POLL_S,
        deps.scans.run_pending,
        drain=True,
        wake_on_change=True,
        on_stop=deps.scans.close,
    )
    return Declared(loops=(scan,))
