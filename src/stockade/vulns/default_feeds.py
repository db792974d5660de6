"""The default feeds a fresh install creates on its first start (SPEC §7, ``[vulns]`` settings).

Four feeds, hourly (staggered minutes): NVD API 2.0 (CPE ranges, CVSS), OSV PyPI (the ecosystem
the shipped name map and the default ``pkg:pypi/<x>`` -> conda ``x`` rule cover; OSV's other
ecosystems — npm, crates.io, CRAN… — have no mapping to conda names yet, so they would match
nothing), CISA KEV and EPSS (enrichment). ``[vulns] default_feed_urls`` points one at another
URL (an internal copy); ``[vulns] default_feeds = false`` (air-gapped sites) adds none.

Seeding happens once per installation: a ``scheduled_jobs`` row named :data:`SEEDED_MARK`
records that it was done (its ``last_message`` says what was added); its primary key makes two
processes starting together seed once. After that, a default feed the administrator edited or
deleted is never touched again. A default whose name or URL an existing feed already has is
skipped. The first sync of each is at its schedule's next time; a feed that cannot be reached
shows ``unreachable`` (``vulns.feed_state``), with one warning in the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stockade.audit.service import SYSTEM, AuditLog, Target
from stockade.core.clock import utcnow
from stockade.core.cron import next_fire
from stockade.core.urls import redact_url
from stockade.db.engine import transaction
from stockade.db.schedules import ScheduledJob
from stockade.settings import DEFAULT_FEED_NAMES, VulnSettings
from stockade.vulns.models import FeedFormat, VulnFeed

__all__ = ["DEFAULT_FEEDS", "SEEDED_MARK", "DefaultFeed", "default_feeds", "seed_default_feeds"]

SEEDED_MARK = "vulns:default-feeds-seeded"  # a scheduled_jobs row that never comes due
log = logging.getLogger("stockade.vulns")


@dataclass(frozen=True)
class DefaultFeed:
    name: str
    url: str
    format: FeedFormat
    schedule: str


DEFAULT_FEEDS: tuple[DefaultFeed, ...] = (
    DefaultFeed(
        "nvd", "https://services.nvd.nist.gov/rest/json/cves/2.0", FeedFormat.NVD, "5 * * * *"
    ),
    DefaultFeed(
        "osv-pypi",
        "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip",
        FeedFormat.OSV,
        "15 * * * *",
    ),
    DefaultFeed(
        "cisa-kev",
        "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json",
        FeedFormat.KEV,
        "25 * * * *",
    ),
    DefaultFeed(
        "epss",
        "https://epss.empiricalsecurity.com/epss_scores-current.csv.gz",
        FeedFormat.EPSS,
        "35 * * * *",
    ),
)
assert tuple(f.name for f in DEFAULT_FEEDS) == DEFAULT_FEED_NAMES


def default_feeds(settings: VulnSettings) -> list[DefaultFeed]:
    """The definitions, with the URLs ``default_feed_urls`` replaces; none when turned off."""
    if not settings.default_feeds:
        return []
    urls = settings.default_feed_urls
    return [
        DefaultFeed(f.name, urls.get(f.name, f.url), f.format, f.schedule) for f in DEFAULT_FEEDS
    ]


def seed_default_feeds(factory: sessionmaker[Session], settings: VulnSettings) -> list[str]:
    """Create the default feeds once per installation: the names added (none when already
    seeded, turned off, or another process seeds them at the same time)."""
    feeds = default_feeds(settings)
    if not feeds:
        return []
    with factory() as session:
        if session.get(ScheduledJob, SEEDED_MARK) is not None:
            return []
    try:
        with transaction(factory) as session:
            added = _add(session, feeds)
    except IntegrityError:  # another process took the mark (or a name) first: it seeds
        return []
    if added:
        log.info("default vulnerability feeds added: %s", ", ".join(added))
    return added


def _add(session: Session, feeds: list[DefaultFeed]) -> list[str]:
    now = utcnow()
    taken = session.execute(select(VulnFeed.name, VulnFeed.url)).all()
    names, urls = {row.name for row in taken}, {row.url for row in taken}
    added: list[str] = []
    for feed in feeds:
        if feed.name in names or feed.url in urls:
            continue
        row = VulnFeed(
            name=feed.name,
            url=feed.url,
            format=feed.format.value,
            schedule=feed.schedule,
            enabled=True,
            next_run_at=next_fire(feed.schedule, now),
        )
        session.add(row)
        session.flush()
        AuditLog(session).record(
            "cve.feed.create",
            SYSTEM,
            Target("vuln_feed", row.name, row.id),
            after={
                "url": redact_url(row.url),
                "format": row.format,
                "schedule": row.schedule,
                "enabled": True,
                "default": True,
            },
        )
        added.append(feed.name)
    message = f"added: {', '.join(added)}" if added else "added none (names or URLs taken)"
    session.add(
        ScheduledJob(
            name=SEEDED_MARK,
            schedule="once",
            next_run_at=now,
            last_started_at=now,
            last_finished_at=now,
            last_status="ok",
            last_message=message,
        )
    )
    session.flush()
    return added
