"""The one registry of background work: every domain's ``tasks.py`` declarations, gathered.

A domain declares its queued tasks, periodic jobs and loops in its own ``tasks.py``
(``declare(deps) -> Declared``, types in ``stockade.core.tasks``); this module is the only list of
those modules. The job queue registers the tasks (``jobs/queue.py``); the runtime runs the loops
and the periodic jobs (``jobs/runtime.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stockade.audit import tasks as audit_tasks
from stockade.auth import tasks as auth_tasks
from stockade.channels import tasks as channels_tasks
from stockade.container import Container
from stockade.core.tasks import Declared, Loop, Periodic, QueueTask
from stockade.mirroring import tasks as mirroring_tasks
from stockade.scanning import tasks as scanning_tasks
from stockade.search import tasks as search_tasks
from stockade.vulns import tasks as vulns_tasks

__all__ = ["Registry", "declarations", "gather", "recurring_jobs"]


def declarations(container: Container) -> list[Declared]:
    """Every domain that has background work; the runtime starts loops in this order."""
    return [
        channels_tasks.declare(container),
        scanning_tasks.declare(container),
        mirroring_tasks.declare(container),
        vulns_tasks.declare(container),
        auth_tasks.declare(container),
        audit_tasks.declare(container),
        search_tasks.declare(container),
    ]


@dataclass(frozen=True)
class Registry:
    tasks: tuple[QueueTask, ...]
    periodic: tuple[Periodic, ...]
    loops: tuple[Loop, ...]
    on_stop: tuple[Callable[[], None], ...]

    def task(self, name: str) -> QueueTask:
        return next(t for t in self.tasks if t.name == name)


def gather(container: Container) -> Registry:
    """Every domain's declarations for this container's settings; names must be unique."""
    declared = declarations(container)
    registry = Registry(
        tasks=tuple(t for d in declared for t in d.tasks),
        periodic=tuple(p for d in declared for p in d.periodic),
        loops=tuple(loop for d in declared for loop in d.loops),
        on_stop=tuple(f for d in declared for f in d.on_stop),
    )
    for kind in (registry.tasks, registry.periodic, registry.loops):
        names = [item.name for item in kind]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"background work declared twice: {', '.join(twice)}")
    return registry


def recurring_jobs(container: Container) -> list[Periodic]:
    """The periodic jobs the configuration asks for."""
    return list(gather(container).periodic)
