"""Where a mirror run executes: in the worker's own process, or in a process of its own.

A run over a conda-forge-sized upstream allocates gigabytes of small objects. Once they are
garbage, CPython and glibc still keep much of it mapped (pymalloc arenas pinned by a few
survivors, ``memory.py``): a server that ran one stayed ~700 MiB above idle. A run in a process of
its own gives every byte back when that process exits, and its peak is not added to what the
serving process already holds. Starting that process costs about a second of CPU, so small runs
stay where they are.

``[mirror] run_apart``: ``always``, ``never``, or ``auto`` (the default): apart when the mirror has
not completed a run yet (its size is unknown) or when its last completed run saw
``apart_from_records`` upstream records or more.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stockade.mirroring.models import MirrorRun, MirrorSubdirState
from stockade.settings import MirrorSettings

#: Exit status of a run's own process when the run was not its to run (another worker has it,
#: or it was no longer pending). 0: it ran the run, whose outcome is in its row.
NOT_OURS = 3


class ApartExit(NamedTuple):
    """How a run's own process ended: its exit status (0: it ran the run, whose outcome is in its
    row; ``NOT_OURS``; anything else: it failed, and the run's lease lapses as after a crash) and
    its peak resident memory."""

    status: int
    peak_rss_bytes: int


def last_upstream_records(session: Session, mirror_id: int) -> int | None:
    """Upstream records the mirror's last completed run saw; None when it has none yet."""
    total, subdirs = session.execute(
        select(func.sum(MirrorSubdirState.upstream_count), func.count()).where(
            MirrorSubdirState.mirror_id == mirror_id
        )
    ).one()
    return int(total or 0) if subdirs else None


def runs_apart(session: Session, run_id: int, settings: MirrorSettings) -> bool:
    """Whether the run should execute in a process of its own."""
    if settings.run_apart != "auto":
        return settings.run_apart == "always"
    mirror_id = session.scalar(select(MirrorRun.mirror_id).where(MirrorRun.id == run_id))
    if mirror_id is None:
        return False  # gone: the worker's own process finds that out at once
    seen = last_upstream_records(session, mirror_id)
    return seen is None or seen >= settings.apart_from_records
