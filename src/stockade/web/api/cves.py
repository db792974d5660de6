"""Vulnerabilities: feeds (configure, sync), advisories with their matches, curation (SPEC §7).

A sync runs as a job: ``POST /cve/feeds/{name}/sync`` answers 202 with the feed, its
``last_status`` set to ``queued``, and a ``Location`` of the feed; poll it until ``last_status``
is no longer ``queued`` (``ok``, ``partial``, ``unchanged``, ``failed`` with ``last_error``, or
``unreachable`` with ``unreachable_since``).
The package tab of the UI is ``GET /cves?channel=C&package=P``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stockade.core.handoff import hand_off
from stockade.core.urls import redact_url
from stockade.db.engine import transaction
from stockade.vulns.advisory_queries import (
    VulnFilters,
    curation_record,
    list_vulnerabilities,
    show_vulnerability,
)
from stockade.vulns.curation import CurationService
from stockade.vulns.feed_check import authorize_source, changed_source, check_feed_source
from stockade.vulns.feed_state import unreachable_since
from stockade.vulns.feedsync import FeedService
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.models import VulnFeed
from stockade.vulns.security import BlobSecurityReader
from stockade.web.api import API
from stockade.web.api.cve_presenters import (
    curation_public,
    summary_public,
    vulnerability_public,
)
from stockade.web.api.cve_schemas import (
    CurationCreate,
    CurationPublic,
    FeedCreate,
    FeedPublic,
    FeedUpdate,
    SeverityLiteral,
    StatusLiteral,
    VulnerabilityPublic,
    VulnerabilitySummary,
)
from stockade.web.deps import ContainerDep, CurrentPrincipal, SignedIn

router = APIRouter(prefix=API, tags=["vulnerabilities"])
FeedName = Annotated[str, Path(min_length=1, max_length=128)]
VulnId = Annotated[str, Path(min_length=1, max_length=128)]


def feed_public(session: Session, feed: VulnFeed) -> FeedPublic:
    count = session.scalar(select(func.count()).where(VulnRow.feed_id == feed.id)) or 0
    return FeedPublic(
        name=feed.name,
        url=redact_url(feed.url),  # an API key in the query is not shown
        format=feed.format,
        schedule=feed.schedule,
        enabled=feed.enabled,
        next_run_at=feed.next_run_at if feed.enabled else None,
        last_sync_at=feed.last_sync_at,
        last_status=feed.last_status,
        last_error=feed.last_error,
        unreachable_since=unreachable_since(feed.last_status, feed.last_error, feed.last_sync_at),
        advisories=count,
        created_at=feed.created_at,
        href=f"{API}/cve/feeds/{feed.name}",
    )


@router.get("/cve/feeds", response_model=list[FeedPublic])
def list_feeds(principal: CurrentPrincipal, container: ContainerDep) -> list[FeedPublic]:
    with container.read_factory() as session:
        return [feed_public(session, f) for f in FeedService(session).list_all(principal)]


@router.post("/cve/feeds", response_model=FeedPublic, status_code=201)
def create_feed(body: FeedCreate, principal: SignedIn, container: ContainerDep) -> FeedPublic:
    """Add a feed; it syncs at its schedule's next time, or now with ``…/sync``. Its source is
    checked first unless ``check`` is false: 422 ``vulns:feed-source-check`` says what is wrong."""
    if body.check:
        with container.read_factory() as session:
            authorize_source(session, principal, body.url, body.format)
        check_feed_source(
            body.url,
            body.format,
            outbound=container.settings.outbound.policy(),
            airgap_folder=container.settings.airgap.folder_in(container.settings.data_dir),
        )
    with transaction(container.factory) as session:
        feed = FeedService(session).create(
            principal,
            body.name,
            body.url,
            body.format,
            schedule=body.schedule,
            enabled=body.enabled,
        )
        return feed_public(session, feed)


@router.get("/cve/feeds/{name}", response_model=FeedPublic)
def show_feed(name: FeedName, principal: CurrentPrincipal, container: ContainerDep) -> FeedPublic:
    with container.read_factory() as session:
        return feed_public(session, FeedService(session).get(principal, name))


@router.patch("/cve/feeds/{name}", response_model=FeedPublic)
def update_feed(
    name: FeedName, body: FeedUpdate, principal: SignedIn, container: ContainerDep
) -> FeedPublic:
    if body.check and (body.url is not None or body.format is not None):
        with container.read_factory() as session:
            source = changed_source(session, principal, name, body.url, body.format)
        if source is not None:
            check_feed_source(
                *source,
                outbound=container.settings.outbound.policy(),
                airgap_folder=container.settings.airgap.folder_in(container.settings.data_dir),
            )
    with transaction(container.factory) as session:
        feed = FeedService(session).update(
            principal,
            name,
            url=body.url,
            fmt=body.format,
            schedule=body.schedule,
            enabled=body.enabled,
        )
        return feed_public(session, feed)


@router.delete("/cve/feeds/{name}", status_code=204)
def delete_feed(name: FeedName, principal: SignedIn, container: ContainerDep) -> Response:
    """Remove a feed; the advisories it brought stay, with their matches and curations."""
    with transaction(container.factory) as session:
        FeedService(session).delete(principal, name)
    return Response(status_code=204)


@router.post("/cve/feeds/{name}/sync", response_model=FeedPublic, status_code=202)
def sync_feed(
    name: FeedName, principal: SignedIn, container: ContainerDep, response: Response
) -> FeedPublic:
    """Queue a sync now (202); poll the feed at ``Location`` until ``last_status`` is not
    ``queued``."""
    with transaction(container.factory) as session:
        feed = FeedService(session).request_sync(principal, name)
        feed_id = feed.id
        public = feed_public(session, feed)
    hand_off(container.dispatch_feed_sync, feed_id, "feed sync")
    response.headers["Location"] = public.href
    return public


@router.get("/cves", response_model=list[VulnerabilitySummary])
def list_cves(
    response: Response,
    principal: CurrentPrincipal,
    container: ContainerDep,
    severity: Annotated[list[SeverityLiteral] | None, Query()] = None,
    status: Annotated[list[StatusLiteral] | None, Query(description="match status")] = None,
    channel: Annotated[str | None, Query(max_length=512)] = None,
    package: Annotated[str | None, Query(max_length=256, description="conda name")] = None,
    kev: bool | None = None,
    q: Annotated[str | None, Query(max_length=256, description="id, alias or summary")] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="cursor: the last row seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[VulnerabilitySummary]:
    """Advisories, oldest stored first. With ``channel``, ``package`` or ``status``, only those
    matching artifacts of channels you can read, each row listing the matched versions. When
    more rows follow, the ``X-Next-Cursor`` header holds the ``after`` of the next page."""
    filters = VulnFilters(
        severity=severity or (),
        status=status or (),
        channel=channel,
        package=package,
        kev=kev,
        q=q,
    )
    with container.read_factory() as session:
        rows, cursor = list_vulnerabilities(session, principal, filters, after=after, limit=limit)
    if cursor is not None:
        response.headers["X-Next-Cursor"] = str(cursor)
    return [summary_public(r) for r in rows]


@router.get("/cves/{vuln_id}", response_model=VulnerabilityPublic)
def show_cve(
    vuln_id: VulnId, principal: CurrentPrincipal, container: ContainerDep
) -> VulnerabilityPublic:
    with container.read_factory() as session:
        return vulnerability_public(show_vulnerability(session, principal, vuln_id))


@router.post("/cves/{vuln_id}/curations", response_model=CurationPublic, status_code=201)
def curate(
    vuln_id: VulnId, body: CurationCreate, principal: SignedIn, container: ContainerDep
) -> CurationPublic:
    """Record a decision for a package version (or the builds matching ``builds``); the matches
    it covers take its status at once."""
    security = BlobSecurityReader(container.blobs)
    with transaction(container.factory) as session:
        row, counts = CurationService(session, security=security).curate(
            principal,
            vuln_id,
            body.package,
            body.version,
            body.status,
            body.note,
            builds=body.builds,
        )
        public = curation_public(curation_record(session, vuln_id.strip(), row))
    # matches turned active: after the commit
    hand_off(container.dispatch_webhooks, counts.deliveries, "webhook deliveries")
    return public


@router.get("/cves/{vuln_id}/curations", response_model=list[CurationPublic])
def curation_history(
    vuln_id: VulnId, principal: CurrentPrincipal, container: ContainerDep
) -> list[CurationPublic]:
    """Every decision on the advisory, oldest first."""
    with container.read_factory() as session:
        rows = CurationService(session).history(principal, vuln_id)
        return [curation_public(curation_record(session, vuln_id.strip(), r)) for r in rows]
