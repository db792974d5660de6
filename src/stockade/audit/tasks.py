"""The audit domain's background work, as periodic jobs (each due run claimed once across
replicas, ``db.schedules.claim_due``):

- ``audit-export``: the audit events after the last exported one to ``[audit] export_folder``;
- ``downloads-prune``: raw download rows older than ``[downloads] retention_days`` (the daily
  counts stay).

Served downloads are buffered by each serving process and written by its flusher
(``jobs/downloads.py``): that is per-request work, not a job of the runtime.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from stockade.audit.downloads import prune_events
from stockade.audit.export import AuditExporter
from stockade.core.clock import utcnow
from stockade.core.tasks import Declared, Periodic
from stockade.db.engine import transaction
from stockade.settings import Settings

__all__ = ["AuditTaskDeps", "declare", "export_audit", "prune_downloads"]


class AuditTaskDeps(Protocol):
    settings: Settings
    factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]


def declare(deps: AuditTaskDeps) -> Declared:
    periodic: list[Periodic] = []
    audit = deps.settings.audit
    if audit.export_folder is not None and audit.export_schedule:
        periodic.append(Periodic("audit-export", audit.export_schedule, lambda: export_audit(deps)))
    downloads = deps.settings.downloads
    if downloads.retention_days > 0 and downloads.prune_schedule:
        prune = Periodic("downloads-prune", downloads.prune_schedule, lambda: prune_downloads(deps))
        periodic.append(prune)
    return Declared(periodic=tuple(periodic))


def export_audit(deps: AuditTaskDeps) -> str:
    """Write the audit events after the last exported one to the export folder; a summary."""
    settings = deps.settings
    folder = settings.audit.export_folder_in(settings.data_dir)
    if folder is None:
        return "no audit export folder configured"
    with deps.read_factory() as session:
        exporter = AuditExporter(
            session,
            folder,
            fmt=settings.audit.export_format,
            max_events=settings.audit.export_max_events,
        )
        return exporter.run(utcnow()).summary()


def prune_downloads(deps: AuditTaskDeps) -> str:
    """Raw download rows older than ``[downloads] retention_days`` go (daily counts stay)."""
    days = deps.settings.downloads.retention_days
    with transaction(deps.factory) as session:
        removed = prune_events(session, utcnow(), days)
    return f"{removed} download rows older than {days} days removed"
