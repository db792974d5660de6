"""A woken loop with ``coalesce_s`` (the publisher) works on the first change after a quiet spell
at once, and waits the coalescing pause for the rest of a burst (jobs/loops.py). The clock of
the loop is the test's; the pause is long (an hour), so a pass that came only after it would
never come within the test."""

from __future__ import annotations

import threading

from stockade.core.tasks import Loop
from stockade.jobs.loops import LoopThread

HOUR = 3600.0


class Passes:
    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def tick(self) -> bool:
        with self.changed:
            self.count += 1
            self.changed.notify_all()
        return False

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout)


def test_first_change_after_a_quiet_spell_is_worked_on_at_once_the_burst_waits() -> None:
    now = [1000.0]
    passes = Passes()
    loop = LoopThread(
        Loop("test-loop", HOUR, passes.tick, wake_on_change=True, coalesce_s=HOUR),
        clock=lambda: now[0],
    )
    loop.start()
    try:
        assert passes.wait_for(1)  # the first pass at start: no pass before it
        now[0] += HOUR + 1  # quiet for longer than the pause
        loop.notify()
        assert passes.wait_for(2)  # at once (was: after the hour's pause)
        loop.notify()  # a burst goes on: just after that pass
        assert not passes.wait_for(3, timeout=0.5)  # waits the pause
    finally:
        loop.stop(timeout=5)
