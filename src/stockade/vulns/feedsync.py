"""Feeds: configure, fetch conditionally, parse, store, match (SPEC §7).

A feed URL is ``https://`` (one document, fetched with ``If-None-Match`` / ``If-Modified-Since``
from the last answer's ``ETag`` / ``Last-Modified``; a 304 is "unchanged") or ``file://`` (a file,
or a folder whose feed files are read recursively in path order: ``.json``, ``.yaml`` and ``.yml``
for OSV, ``.json`` for NVD pages and CVE 5 records). The content's sha256 (of every file's path and
bytes for a folder) is kept: the same content again is "unchanged" without parsing.

A document that does not parse is counted in ``failed`` with its error in the feed's
``last_error``; the others are stored. One attempt per sync: the schedule is the retry.

Formats ``kev`` and ``epss`` are enrichment (``vulns.enrich``): the document replaces the set
known, all or nothing. Format ``bundle`` is a ``cve.zip`` (``vulns.bundle``): a ``file://`` path
or an ``https://`` URL of the zip, fetched to a temporary file, verified, imported whole; or
``airgap:`` (or the air-gap folder's ``file://`` path): every ``cve.zip`` dropped into the air-gap
folder, each applied whole and set aside (``vulns.feed_folder``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.core.errors import InvalidInputError, StockadeError
from stockade.core.outbound import OutboundPolicy
from stockade.core.urls import redact_url
from stockade.db.engine import transaction
from stockade.vulns.bundle import import_bundle
from stockade.vulns.enrich import EPSS_COLUMNS, KEV_COLUMNS, Enrichments, parse_epss, parse_kev
from stockade.vulns.errors import (
    FeedError,
    FeedExistsError,
    FeedFetchError,
    FeedNotFoundError,
    FeedUnreachableError,
)
from stockade.vulns.feed_fields import check_fields, next_run
from stockade.vulns.feed_folder import AIRGAP_URL, BundleFolder, names_folder, sync_folder
from stockade.vulns.feed_state import record_unreachable, set_status, unreachable_since
from stockade.vulns.feeds import parse_cve5, parse_nvd, parse_osv
from stockade.vulns.fetching import Fetched, fetch, fetch_file
from stockade.vulns.matcher import Matcher
from stockade.vulns.model import Vulnerability
from stockade.vulns.models import DEFAULT_FEED_SCHEDULE, FeedFormat, VulnFeed
from stockade.vulns.nvd_api import NvdApiSync, is_nvd_api
from stockade.vulns.security import SecurityReader
from stockade.vulns.store import VulnStore
from stockade.vulns.sync_counts import SyncCounts

__all__ = [
    "FeedService",
    "FeedSync",
    "Fetched",
    "SyncCounts",
    "check_fields",
    "fetch",
    "record_sync_failure",
]

_PARSERS: dict[str, Callable[[bytes], list[Vulnerability]]] = {
    FeedFormat.OSV.value: parse_osv,
    FeedFormat.NVD.value: parse_nvd,
    FeedFormat.CVE5.value: parse_cve5,
}
_ENRICHMENT = {
    FeedFormat.KEV.value: (parse_kev, KEV_COLUMNS),
    FeedFormat.EPSS.value: (parse_epss, EPSS_COLUMNS),
}


def parse_documents(fmt: str, fetched: Fetched, counts: SyncCounts) -> list[Vulnerability]:
    parse = _PARSERS[fmt]
    found: list[Vulnerability] = []
    for name, data in fetched.documents:
        try:
            found += parse(data)
        except FeedError as exc:
            counts.document_failed(name, exc.detail)
    return found


class FeedSync:
    """Runs a feed sync: fetch outside any transaction, then store and match in one."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        security: SecurityReader | None = None,
        client: httpx.Client | None = None,
        outbound: OutboundPolicy | None = None,
        nvd_pause_s: float = 6.0,
        bundle_folder: BundleFolder | None = None,
    ) -> None:
        self.factory = factory
        self.bundle_folder = bundle_folder  # the air-gap folder's cve.zip files (airgap.cve_folder)
        self.security = security
        self.client = client
        self.outbound = outbound  # the [outbound] policy (None: the strict default)
        self.nvd_pause_s = nvd_pause_s  # between two pages of the NVD API (vulns.nvd_api)

    def sync_feed(self, feed_id: int) -> SyncCounts:
        with self.factory() as session:
            feed = session.get(VulnFeed, feed_id)
            if feed is None:
                raise FeedNotFoundError(f"feed {feed_id} not found")
            url, fmt, etag, modified = feed.url, feed.format, feed.etag, feed.last_modified
            known_sha = feed.content_sha256
        if fmt == FeedFormat.BUNDLE.value:
            folder = self.bundle_folder.folder if self.bundle_folder is not None else None
            if names_folder(url, folder):
                return self._sync_folder(feed_id)
            return self._sync_bundle(feed_id, url, etag, modified, known_sha)
        if is_nvd_api(url, fmt):
            return self._sync_nvd_api(feed_id, url, modified)
        counts = SyncCounts()
        try:
            fetched = fetch(
                url,
                fmt,
                etag=etag,
                last_modified=modified,
                client=self.client,
                outbound=self.outbound,
            )
        except FeedFetchError as exc:
            self._failed(feed_id, exc)
            raise
        sha = fetched.sha256() if not fetched.not_modified else known_sha
        if fetched.not_modified or sha == known_sha:
            counts.not_modified = True
            self._finish(feed_id, "unchanged", None)
            return counts
        if fmt in _ENRICHMENT:
            return self._sync_enrichment(feed_id, fmt, fetched, sha, counts)
        vulns = parse_documents(fmt, fetched, counts)
        with transaction(self.factory) as session:
            store = VulnStore(session)
            result = store.upsert(vulns, feed_id=feed_id)
            matched = Matcher(session, security=self.security, store=store).match_vulnerabilities(
                result.touched
            )
            feed = session.get(VulnFeed, feed_id)
            if feed is not None:
                feed.etag, feed.last_modified = fetched.etag, fetched.last_modified
                feed.content_sha256 = sha
                set_status(feed, "ok" if not counts.failed else "partial", "\n".join(counts.errors))
        counts.new, counts.changed = len(result.new), len(result.changed)
        counts.unchanged, counts.withdrawn = result.unchanged, len(result.withdrawn)
        counts.matches_added, counts.matches_removed = matched.added, matched.removed
        counts.matches_restatused = matched.restatused
        return counts

    def _sync_enrichment(
        self, feed_id: int, fmt: str, fetched: Fetched, sha: str | None, counts: SyncCounts
    ) -> SyncCounts:
        parse, columns = _ENRICHMENT[fmt]
        rows: dict[str, dict[str, object]] = {}
        try:
            for name, data in fetched.documents:
                try:
                    rows.update(parse(data))
                except FeedError as exc:
                    raise FeedError(f"{name}: {exc.detail}") from None
            with transaction(self.factory) as session:
                enrich = Enrichments(session)
                changed = enrich.apply(enrich.replace(columns, rows))
                if changed:
                    VulnStore(session).bump()
                feed = session.get(VulnFeed, feed_id)
                if feed is not None:
                    feed.etag, feed.last_modified = fetched.etag, fetched.last_modified
                    feed.content_sha256 = sha
                    set_status(feed, "ok", None)
        except FeedError as exc:
            self._finish(feed_id, "failed", exc.detail)
            raise
        counts.enriched, counts.changed = len(rows), len(changed)
        return counts

    def _sync_bundle(
        self,
        feed_id: int,
        url: str,
        etag: str | None,
        modified: str | None,
        known_sha: str | None,
    ) -> SyncCounts:
        counts = SyncCounts()
        try:
            with fetch_file(
                url, etag=etag, last_modified=modified, client=self.client, outbound=self.outbound
            ) as got:
                if got.not_modified or got.sha256 == known_sha:
                    counts.not_modified = True
                    self._finish(feed_id, "unchanged", None)
                    return counts
                with transaction(self.factory) as session:
                    assert got.path is not None
                    done = import_bundle(session, got.path, feed_id=feed_id, security=self.security)
                    feed = session.get(VulnFeed, feed_id)
                    if feed is not None:
                        feed.etag, feed.last_modified = got.etag, got.last_modified
                        feed.content_sha256 = got.sha256
                        set_status(feed, "ok", None)
        except StockadeError as exc:
            self._failed(feed_id, exc)
            raise
        counts.new, counts.changed, counts.unchanged = done.added, done.updated, done.unchanged
        counts.withdrawn, counts.enriched = done.withdrawn, done.enrichment
        counts.matches_added, counts.matches_removed = done.matches_added, done.matches_removed
        counts.matches_restatused = done.matches_restatused
        return counts

    def _sync_folder(self, feed_id: int) -> SyncCounts:
        if self.bundle_folder is None:
            exc = FeedFetchError(f"{AIRGAP_URL}: this process has no air-gap folder")
            self._failed(feed_id, exc)
            raise exc
        return sync_folder(self.factory, feed_id, self.bundle_folder)

    def _sync_nvd_api(self, feed_id: int, url: str, since: str | None) -> SyncCounts:
        api = NvdApiSync(
            self.factory,
            security=self.security,
            client=self.client,
            outbound=self.outbound,
            pause_s=self.nvd_pause_s,
        )
        try:
            return api.sync(feed_id, url, since)
        except FeedFetchError as exc:
            self._failed(feed_id, exc)
            raise

    def _failed(self, feed_id: int, exc: StockadeError) -> None:
        if isinstance(exc, FeedUnreachableError):
            record_unreachable(self.factory, feed_id, exc)  # one warning, then silence
        else:
            self._finish(feed_id, "failed", exc.detail)

    def _finish(self, feed_id: int, status: str, error: str | None) -> None:
        with transaction(self.factory) as session:
            feed = session.get(VulnFeed, feed_id)
            if feed is not None:
                set_status(feed, status, error)


def record_sync_failure(factory: sessionmaker[Session], feed_id: int, error: str) -> None:
    """Mark a sync that ended with an error outside the fetch (a store or match failure)."""
    with transaction(factory) as session:
        feed = session.get(VulnFeed, feed_id)
        if feed is not None:
            set_status(feed, "failed", error)


class FeedService:
    """Feed configuration: ``cve:read`` to see feeds, ``cve:manage`` to change or sync them.

    A feed's first scheduled sync is at the schedule's next time after it is created (or enabled,
    or its schedule changed); :meth:`request_sync` marks it ``queued`` for the edge to enqueue.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.access = AccessService(session)

    def find(self, name: str) -> VulnFeed | None:
        return self.session.scalar(select(VulnFeed).where(VulnFeed.name == name))

    def list_all(self, principal: Principal) -> Sequence[VulnFeed]:
        self.access.require(principal, Permission.CVE_READ)
        return self.session.scalars(select(VulnFeed).order_by(VulnFeed.name)).all()

    def get(self, principal: Principal, name: str) -> VulnFeed:
        self.access.require(principal, Permission.CVE_READ)
        row = self.find(name)
        if row is None:
            raise FeedNotFoundError(f"feed {name!r} not found")
        return row

    def create(
        self,
        principal: Principal,
        name: str,
        url: str,
        fmt: str,
        *,
        schedule: str = DEFAULT_FEED_SCHEDULE,
        enabled: bool = True,
    ) -> VulnFeed:
        self.access.require(principal, Permission.CVE_MANAGE)
        clean = name.strip()
        if not clean or len(clean) > 128 or not clean.isprintable() or "/" in clean:
            raise InvalidInputError("feed names are 1-128 printable characters", field="name")
        check_fields(url, fmt, schedule)
        row = VulnFeed(
            name=clean,
            url=url,
            format=fmt,
            schedule=schedule,
            enabled=enabled,
            next_run_at=next_run(schedule) if enabled else None,
        )
        try:
            with self.session.begin_nested():
                self.session.add(row)
                self.session.flush()
        except IntegrityError:
            raise FeedExistsError(f"feed {clean!r} already exists", field="name") from None
        AuditLog(self.session).record(
            "cve.feed.create",
            principal,
            Target("vuln_feed", clean, row.id),
            after={"url": redact_url(url), "format": fmt, "schedule": schedule, "enabled": enabled},
        )
        return row

    def update(
        self,
        principal: Principal,
        name: str,
        *,
        url: str | None = None,
        fmt: str | None = None,
        schedule: str | None = None,
        enabled: bool | None = None,
    ) -> VulnFeed:
        self.access.require(principal, Permission.CVE_MANAGE)
        row = self.get(principal, name)
        before = _state(row)
        if url is not None and url.strip() == redact_url(row.url) != row.url:
            url = None  # the redacted URL as shown, sent back: the stored one (and its key) stays
        new_url, new_fmt = url or row.url, fmt or row.format
        new_schedule = schedule if schedule is not None else row.schedule
        check_fields(new_url, new_fmt, new_schedule)
        if (new_url, new_fmt) != (row.url, row.format):  # another source: fetch it in full
            row.etag = row.last_modified = row.content_sha256 = None
        row.url, row.format, row.schedule = new_url, new_fmt, new_schedule
        if enabled is not None:
            row.enabled = enabled
        if schedule is not None or enabled is not None:
            row.next_run_at = next_run(row.schedule) if row.enabled else None
        self.session.flush()
        AuditLog(self.session).record(
            "cve.feed.update",
            principal,
            Target("vuln_feed", row.name, row.id),
            before=before,
            after=_state(row),
        )
        return row

    def delete(self, principal: Principal, name: str) -> None:
        """Remove the feed; its advisories stay (``feed_id`` set to null)."""
        self.access.require(principal, Permission.CVE_MANAGE)
        row = self.get(principal, name)
        AuditLog(self.session).record(
            "cve.feed.delete", principal, Target("vuln_feed", row.name, row.id), before=_state(row)
        )
        self.session.delete(row)
        self.session.flush()

    def request_sync(self, principal: Principal, name: str) -> VulnFeed:
        """Mark the feed ``queued``; the caller enqueues the sync after the commit."""
        self.access.require(principal, Permission.CVE_MANAGE)
        row = self.get(principal, name)
        if unreachable_since(row.last_status, row.last_error, row.last_sync_at) is None:
            row.last_error = None  # an unreachable feed's error stays: its streak goes on
        row.last_status = "queued"
        self.session.flush()
        AuditLog(self.session).record(
            "cve.feed.sync", principal, Target("vuln_feed", row.name, row.id)
        )
        return row


def _state(row: VulnFeed) -> dict[str, object]:
    return {
        "url": redact_url(row.url),  # an API key in the query is not recorded
        "format": row.format,
        "schedule": row.schedule,
        "enabled": row.enabled,
    }
