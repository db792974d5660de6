"""The audit log's scheduled export (``[audit] export_folder``), claimed once across replicas."""

from __future__ import annotations

from stockade.audit.export import AuditExporter
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.jobs.scheduler import Job

__all__ = ["audit_jobs", "export_audit"]


def export_audit(container: Container) -> str:
    """Write the audit events after the last exported one to the export folder; a summary."""
    settings = container.settings
    folder = settings.audit.export_folder_in(settings.data_dir)
    if folder is None:
        return "no audit export folder configured"
    with container.read_factory() as session:
        exporter = AuditExporter(
            session,
            folder,
            fmt=settings.audit.export_format,
            max_events=settings.audit.export_max_events,
        )
        return exporter.run(utcnow()).summary()


def audit_jobs(container: Container) -> list[Job]:
    settings = container.settings.audit
    if settings.export_folder is None or not settings.export_schedule:
        return []
    return [Job("audit-export", settings.export_schedule, lambda: export_audit(container))]
