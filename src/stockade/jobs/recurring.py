"""The recurring jobs the configuration asks for."""

from __future__ import annotations

from stockade.container import Container
from stockade.jobs.audit import audit_jobs
from stockade.jobs.downloads import download_jobs
from stockade.jobs.scheduler import Job
from stockade.search.index import SearchIndexer


def recurring_jobs(container: Container) -> list[Job]:
    settings = container.settings
    # search: documents left stale by a migration rebuilt, download counts copied for ranking
    jobs: list[Job] = [
        Job("search-refresh", "*/5 * * * *", SearchIndexer(container.factory).refresh)
    ]
    if settings.ldap.enabled and settings.ldap.sync_schedule:

        def ldap_sync() -> str:
            from stockade.auth.ldap import run_ldap_sync

            result = run_ldap_sync(container.factory, settings.ldap)
            container.authenticator.forget_all()
            return (
                f"{result.users} users: {len(result.created)} created, "
                f"{len(result.updated)} updated, {len(result.disabled)} disabled"
            )

        jobs.append(Job("ldap-sync", settings.ldap.sync_schedule, ldap_sync))
    jobs.extend(download_jobs(container))  # raw download rows past their retention
    jobs.extend(audit_jobs(container))  # new audit events to the export folder
    return jobs
