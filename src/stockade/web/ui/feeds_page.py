"""Vulnerability feeds in the UI: ``/admin/cve-feeds`` (every feed with its state, a new one) and
``/admin/cve-feeds/{name}`` (its settings, sync now, enable or disable, remove).

The same calls as ``/api/v1/cve/feeds``: ``cve:read`` to see the feeds, ``cve:manage`` to change
or sync them (:class:`~stockade.vulns.feedsync.FeedService` checks). A new source is checked
first (the file or folder exists, the URL answers with something of the format) unless the form
says it is offline on purpose. URLs are shown redacted (an API key in the query is not); a
redacted URL sent back unchanged keeps the stored one. A sync runs as a job: the page shows the
feed ``queued`` until it ends, then its outcome, when and the error if any.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.handoff import hand_off
from stockade.core.urls import redact_text, redact_url
from stockade.db.engine import transaction
from stockade.vulns.feed_check import authorize_source, changed_source, check_feed_source
from stockade.vulns.feed_state import unreachable_since
from stockade.vulns.feedsync import FeedService
from stockade.vulns.models import DEFAULT_FEED_SCHEDULE, FeedFormat, Vulnerability, VulnFeed
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import admin_context, confirmed
from stockade.web.ui.forms import FormError, FormText, clean, done, notice_of, path_part, submit
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
FEEDS = "/admin/cve-feeds"
FORMATS = tuple(f.value for f in FeedFormat)


def feed_url(name: str) -> str:
    return f"{FEEDS}/{path_part(name)}"


def advisory_counts(session: Session) -> dict[int, int]:
    query = select(Vulnerability.feed_id, func.count()).group_by(Vulnerability.feed_id)
    return {feed_id: count for feed_id, count in session.execute(query) if feed_id is not None}


def feed_row(feed: VulnFeed, advisories: int) -> dict[str, Any]:
    """A feed as the pages show it: the URL redacted, its state and when it changed."""
    return {
        "name": feed.name,
        "url": redact_url(feed.url),
        "format": feed.format,
        "schedule": feed.schedule,
        "enabled": feed.enabled,
        "status": feed.last_status or "never synced",
        "queued": feed.last_status == "queued",
        "last_sync_at": feed.last_sync_at,
        "last_error": redact_text(feed.last_error) if feed.last_error else "",
        "next_run_at": feed.next_run_at if feed.enabled else None,
        "unreachable_since": unreachable_since(
            feed.last_status, feed.last_error, feed.last_sync_at
        ),
        "advisories": advisories,
        "created_at": feed.created_at,
    }


def feeds_context(principal: Principal, error: FormError | None) -> dict[str, Any]:
    return {
        "formats": FORMATS,
        "default_schedule": DEFAULT_FEED_SCHEDULE,
        "error": error,
        **admin_context(principal, "cve-feeds"),
    }


def feeds_page(
    request: Request, container: Container, principal: Principal, *, error: FormError | None = None
) -> Response:
    with container.read_factory() as session:
        counts = advisory_counts(session)
        feeds = [feed_row(f, counts.get(f.id, 0)) for f in FeedService(session).list_all(principal)]
    context = {
        "title": "CVE feeds",
        "feeds": feeds,
        "notice": None if error else notice_of(request),
        **feeds_context(principal, error),
    }
    return render(request, "feeds.html", context, status=error.status if error else 200)


@router.get(FEEDS)
def list_feeds(request: Request, principal: CurrentPrincipal, container: ContainerDep) -> Response:
    return guarded(request, principal, lambda: feeds_page(request, container, principal))


def check_source(container: Container, url: str, fmt: str) -> None:
    """What the API does before a new source is stored: it answers with something of ``fmt``."""
    check_feed_source(
        url,
        fmt,
        outbound=container.settings.outbound.policy(),
        airgap_folder=container.settings.airgap.folder_in(container.settings.data_dir),
    )


@router.post(FEEDS)
def create_feed(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    name: FormText = "",
    url: FormText = "",
    format: FormText = "",
    schedule: FormText = "",
    enabled: FormText = "",
    no_check: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    feed_name, source, fmt = clean(name, 128), clean(url, 4096), clean(format, 16)
    cron = " ".join(schedule.split())[:128] or DEFAULT_FEED_SCHEDULE

    def change() -> Response:
        if no_check != "yes":
            with container.read_factory() as session:
                authorize_source(session, principal, source, fmt)
            check_source(container, source, fmt)
        with transaction(container.factory) as session:
            FeedService(session).create(
                principal, feed_name, source, fmt, schedule=cron, enabled=enabled == "yes"
            )
        return done(feed_url(feed_name), "feed-created")

    def redraw(error: FormError) -> Response:
        return feeds_page(request, container, principal, error=error)

    values = {"name": feed_name, "url": redact_url(source), "format": fmt, "schedule": schedule}
    values |= {"enabled": enabled, "no_check": no_check}
    return submit(
        request,
        principal,
        csrf_token,
        back=FEEDS,
        change=change,
        redraw=redraw,
        form="create",
        values=values,
    )


# ---------------------------------------------------------------------------------------- one feed


def feed_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
) -> Response:
    with container.read_factory() as session:
        feed = FeedService(session).get(principal, name)
        counts = advisory_counts(session)
        row = feed_row(feed, counts.get(feed.id, 0))
    context = {
        "title": f"Feed {row['name']}",
        "feed": row,
        "notice": None if error else notice_of(request),
        **feeds_context(principal, error),
    }
    return render(request, "feed.html", context, status=error.status if error else 200)


@router.get(FEEDS + "/{name}")
def show_feed(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: feed_page(request, container, principal, name))


def feed_change(
    request: Request,
    principal: Principal,
    container: Container,
    name: str,
    csrf_token: str,
    act: Callable[[], str],
    *,
    form: str,
    values: dict[str, str] | None = None,
) -> Response:
    """Run one change from a feed's page; ``act`` returns the notice to show after it."""

    def change() -> Response:
        notice = act()
        return done(FEEDS if notice == "feed-deleted" else feed_url(name), notice)

    def redraw(error: FormError) -> Response:
        return feed_page(request, container, principal, name, error=error)

    return submit(
        request,
        principal,
        csrf_token,
        back=feed_url(name),
        change=change,
        redraw=redraw,
        form=form,
        values=values,
    )


@router.post(FEEDS + "/{name}")
def update_feed(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    url: FormText = "",
    format: FormText = "",
    schedule: FormText = "",
    enabled: FormText = "",
    no_check: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    source, fmt = clean(url, 4096) or None, clean(format, 16) or None
    cron = " ".join(schedule.split())[:128] or None

    def act() -> str:
        if no_check != "yes":
            with container.read_factory() as session:
                changed = changed_source(session, principal, name, source, fmt)
            if changed is not None:
                check_source(container, *changed)
        with transaction(container.factory) as session:
            FeedService(session).update(
                principal, name, url=source, fmt=fmt, schedule=cron, enabled=enabled == "yes"
            )
        return "feed-updated"

    values = {"url": redact_url(url), "format": format, "schedule": schedule}
    values["enabled"] = enabled
    return feed_change(
        request, principal, container, name, csrf_token, act, form="edit", values=values
    )


@router.post(FEEDS + "/{name}/sync")
def sync_feed(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    def act() -> str:
        with transaction(container.factory) as session:
            feed_id = FeedService(session).request_sync(principal, name).id
        hand_off(container.dispatch_feed_sync, feed_id, "feed sync")
        return "feed-sync-queued"

    return feed_change(request, principal, container, name, csrf_token, act, form="sync")


@router.post(FEEDS + "/{name}/delete")
def delete_feed(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    confirm: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def act() -> str:
        confirmed(confirm, "this feed")
        with transaction(container.factory) as session:
            FeedService(session).delete(principal, name)
        return "feed-deleted"

    return feed_change(request, principal, container, name, csrf_token, act, form="delete")


@router.post(FEEDS + "/{name}/enabled")
def enable_feed(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    enabled: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def act() -> str:
        with transaction(container.factory) as session:
            FeedService(session).update(principal, name, enabled=enabled == "yes")
        return "feed-updated"

    return feed_change(request, principal, container, name, csrf_token, act, form="enabled")
