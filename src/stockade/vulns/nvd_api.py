"""The NVD API 2.0 read page by page (the default ``nvd`` feed, ``vulns.default_feeds``).

A feed of format ``nvd`` whose ``https://`` URL path ends in ``/rest/json/cves/2.0`` is the API, not
one document: one request answers at most 2,000 CVEs (``resultsPerPage``) of ``totalResults``. The
sync asks for ``startIndex`` 0, 2000, … until every result is read, and stores and matches each
page in its own transaction, so memory holds one page. Between two requests it pauses ``pause_s``
(6 s by default, the NVD's advice to clients without an API key).

The first sync reads every CVE (some 150 pages: about a quarter of an hour). A sync that read every
page keeps the time it started in the feed's ``last_modified`` column; the next one asks only for
the CVEs changed since then (``lastModStartDate``/``lastModEndDate``), or everything again when
that is more than 120 days ago (the NVD's widest range). A sync that stops on an error stores the
pages it read and starts from the same time next time. Errors are those of ``vulns.fetching``: no
answer makes the feed ``unreachable``, an HTTP error ``failed``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import orjson
from sqlalchemy.orm import Session, sessionmaker

from stockade.core.clock import utcnow
from stockade.core.outbound import OutboundPolicy
from stockade.core.urls import URLParseError, parse_url, redact_url
from stockade.db.engine import transaction
from stockade.vulns.errors import FeedError, FeedFetchError
from stockade.vulns.feed_state import set_status
from stockade.vulns.feeds import parse_nvd
from stockade.vulns.fetching import fetch
from stockade.vulns.matcher import Matcher
from stockade.vulns.models import FeedFormat, VulnFeed
from stockade.vulns.security import SecurityReader
from stockade.vulns.store import VulnStore
from stockade.vulns.sync_counts import SyncCounts

__all__ = ["API_PATH", "MAX_WINDOW", "NvdApiSync", "is_nvd_api"]

API_PATH = "/rest/json/cves/2.0"
MAX_WINDOW = timedelta(days=120)
PAGE_SIZE = 2000


def is_nvd_api(url: str, fmt: str) -> bool:
    """Whether the feed is the NVD API (read page by page) rather than one document."""
    try:
        parts = parse_url(url)
    except URLParseError:
        return False
    return (
        fmt == FeedFormat.NVD
        and parts.scheme == "https"
        and parts.path.rstrip("/").endswith(API_PATH)
    )


class NvdApiSync:
    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        security: SecurityReader | None = None,
        client: httpx.Client | None = None,
        outbound: OutboundPolicy | None = None,
        pause_s: float = 6.0,
    ) -> None:
        self.factory = factory
        self.security = security
        self.client = client
        self.outbound = outbound
        self.pause_s = pause_s

    def sync(self, feed_id: int, url: str, since: str | None) -> SyncCounts:
        """Read every page (changed since ``since``, an ISO time, when recent enough)."""
        started = utcnow()
        window = _window(since, started)
        counts = SyncCounts()
        index, total, pages = 0, 1, 0
        while index < total:
            if pages:
                time.sleep(self.pause_s)
            params = {**window, "startIndex": str(index), "resultsPerPage": str(PAGE_SIZE)}
            page_url = str(httpx.URL(url).copy_merge_params(params))
            data = fetch(page_url, FeedFormat.NVD, client=self.client, outbound=self.outbound)
            body = data.documents[0][1] if data.documents else b""
            total, size = _extent(body, page_url)
            self._store(feed_id, f"startIndex={index}", body, counts)
            pages += 1
            if size <= 0:
                break
            index += size
        counts.not_modified = total == 0
        with transaction(self.factory) as session:
            feed = session.get(VulnFeed, feed_id)
            if feed is not None:
                feed.etag, feed.content_sha256 = None, None
                feed.last_modified = started.isoformat()
                status = "partial" if counts.failed else "unchanged" if total == 0 else "ok"
                set_status(feed, status, "\n".join(counts.errors))
        return counts

    def _store(self, feed_id: int, name: str, body: bytes, counts: SyncCounts) -> None:
        try:
            vulns = parse_nvd(body)
        except FeedError as exc:
            counts.document_failed(name, exc.detail)
            return
        with transaction(self.factory) as session:
            store = VulnStore(session)
            result = store.upsert(vulns, feed_id=feed_id)
            matched = Matcher(session, security=self.security, store=store).match_vulnerabilities(
                result.touched
            )
        counts.new += len(result.new)
        counts.changed += len(result.changed)
        counts.unchanged += result.unchanged
        counts.withdrawn += len(result.withdrawn)
        counts.matches_added += matched.added
        counts.matches_removed += matched.removed
        counts.matches_restatused += matched.restatused


def _window(since: str | None, now: datetime) -> dict[str, str]:
    """``lastModStartDate``/``lastModEndDate`` of an incremental sync; {} for a full one."""
    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:  # an HTTP Last-Modified kept before the URL was the API
        start = None
    if start is None or start.tzinfo is None or now - start > MAX_WINDOW:
        return {}
    return {"lastModStartDate": _nvd_time(start), "lastModEndDate": _nvd_time(now)}


def _nvd_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def _extent(body: bytes, url: str) -> tuple[int, int]:
    """``totalResults`` and the number of results on this page."""
    try:
        doc = orjson.loads(body)
        total, size = int(doc["totalResults"]), len(doc["vulnerabilities"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise FeedFetchError(
            f"{redact_url(url)}: not an NVD API 2.0 page (no totalResults)"
        ) from None
    return total, size
