"""The search domain's background work: ``search-refresh`` every five minutes (documents left
stale by a migration rebuilt, download counts copied for ranking), a periodic job claimed once
across replicas (``db.schedules.claim_due``)."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from stockade.core.tasks import Declared, Periodic
from stockade.search.index import SearchIndexer

__all__ = ["SearchTaskDeps", "declare"]

SCHEDULE = "*/5 * * * *"


class SearchTaskDeps(Protocol):
    factory: sessionmaker[Session]


def declare(deps: SearchTaskDeps) -> Declared:
    refresh = Periodic("search-refresh", SCHEDULE, SearchIndexer(deps.factory).refresh)
    return Declared(periodic=(refresh,))
