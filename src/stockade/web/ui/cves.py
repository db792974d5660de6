"""Vulnerability pages (SPEC §7): ``/cves``, the advisories most severe first, and the package tab.

The list filters by severity, match status, channel, package, KEV and text, and pages with a
cursor ("Next"). Advisories are not channel-sensitive, their matches are: the counts of affected
artifacts and channels, and everything on the package tab, come from the channels the viewer can
read (``vulns.advisory_queries`` applies that rule). Both need ``cve:read``, as the API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.browse import BrowseService
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import NotFoundError, StockadeError
from stockade.vulns.advisory_queries import VulnFilters
from stockade.vulns.feed_state import unreachable_since
from stockade.vulns.feedsync import FeedService
from stockade.vulns.models import MatchStatus, VulnFeed
from stockade.vulns.package_vulns import package_figures, package_vulnerabilities
from stockade.vulns.reports import PackageTree, package_tree
from stockade.vulns.severity_list import list_most_severe
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.forms import FormError, clean
from stockade.web.ui.package_view import build_details, vulns_by_version
from stockade.web.ui.render import PAGE_ERRORS, guarded, render, sentence

router = APIRouter(include_in_schema=False)
CVES = "/cves"
PAGE_SIZE = 50
SEVERITIES = ("critical", "high", "medium", "low", "none")
#: Most severe first, as the filter offers them.
STATUSES = tuple(s.value for s in sorted(MatchStatus, key=lambda s: -s.rank))
KEV_CHOICES = ("", "yes", "no")
Many = Annotated[list[str] | None, Query()]


@dataclass(frozen=True)
class ListFilters:
    """The filter form as typed (shown again, and kept in the "Next" link)."""

    severity: tuple[str, ...] = ()
    status: str = ""
    channel: str = ""
    package: str = ""
    kev: str = ""
    q: str = ""

    def query(self) -> VulnFilters:
        return VulnFilters(
            severity=self.severity,
            status=(self.status,) if self.status else (),
            channel=self.channel or None,
            package=self.package or None,
            kev={"yes": True, "no": False}.get(self.kev),
            q=self.q or None,
        )

    def link(self, after: str | None = None) -> str:
        params: list[tuple[str, str]] = [("severity", s) for s in self.severity]
        for key in ("status", "channel", "package", "kev", "q"):
            if value := getattr(self, key):
                params.append((key, value))
        if after:
            params.append(("after", after))
        return f"{CVES}?{urlencode(params)}" if params else CVES

    @property
    def active(self) -> bool:
        return self != ListFilters()


def list_filters(
    severity: list[str], status: str, channel: str, package: str, kev: str, q: str
) -> ListFilters:
    """What was asked, unknown choices left out (a hand-edited address is not an error page)."""
    return ListFilters(
        severity=tuple(s for s in SEVERITIES if s in severity),
        status=status if status in STATUSES else "",
        channel=clean(channel, 512).strip("/"),
        package=clean(package, 256).lower(),
        kev=kev if kev in KEV_CHOICES else "",
        q=clean(q, 256),
    )


def cves_page(
    request: Request,
    container: Container,
    principal: Principal,
    filters: ListFilters,
    after: str,
) -> Response:
    error: FormError | None = None
    rows: list[Any] = []
    feeds: list[dict[str, Any]] = []
    following: str | None = None
    with container.read_factory() as session:
        try:
            rows, following = list_most_severe(
                session, principal, filters.query(), after=after or None, limit=PAGE_SIZE
            )
            feeds = [feed_row(f) for f in FeedService(session).list_all(principal)]
        except StockadeError as exc:
            if exc.kind not in FILTER_ERRORS:
                raise  # no cve:read: the error page (or sign-in)
            error = FormError(sentence(exc.detail), PAGE_ERRORS[exc.kind][0])
    context = {
        "title": "Vulnerabilities",
        "rows": rows,
        "feeds": feeds,
        "filters": filters,
        "severities": SEVERITIES,
        "statuses": STATUSES,
        "next_page": filters.link(following) if following else None,
        "first_page": filters.link() if after else None,
        "error": error,
        "notice": None,
    }
    return render(request, "cves.html", context, status=error.status if error else 200)


def feed_row(feed: VulnFeed) -> dict[str, Any]:
    """A feed as the page lists it: its state, with the time since when it is unreachable."""
    return {
        "name": feed.name,
        "format": feed.format,
        "enabled": feed.enabled,
        "status": feed.last_status or "never synced",
        "last_sync_at": feed.last_sync_at,
        "unreachable_since": unreachable_since(
            feed.last_status, feed.last_error, feed.last_sync_at
        ),
    }


FILTER_ERRORS = {kind for kind, (status, _) in PAGE_ERRORS.items() if status in (400, 404)}


@router.get(CVES)
def show_cves(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    severity: Many = None,
    status: str = "",
    channel: str = "",
    package: str = "",
    kev: str = "",
    q: str = "",
    after: str = "",
) -> Response:
    filters = list_filters(severity or [], status, channel, package, kev, q)
    cursor = clean(after, 64)
    return guarded(
        request, principal, lambda: cves_page(request, container, principal, filters, cursor)
    )


# ------------------------------------------------------------------- the package page's tab

#: Builds (newest first) whose dependency tree the tab resolves to show the highest score
#: reachable through their dependencies; the others link to the tree in the API.
REACHABLE_BUILDS = 8


def _reachable(
    session: Session, principal: Principal, channel: str, builds: list[Any]
) -> dict[int, PackageTree]:
    """Per build: its tree's figures (own score, highest reachable score and the path to it)."""
    found: dict[int, PackageTree] = {}
    for build in builds:
        try:
            found[build.id] = package_tree(
                session, principal, channel, build.name, build.version, build.build, build.subdir
            )
        except StockadeError:  # a build the solver cannot place shows "—", never an error page
            continue
    return found


@router.get("/channels/{name:path}/packages/{package}/vulnerabilities")
def package_vulnerability_tab(
    request: Request,
    name: str,
    package: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
) -> Response:
    return guarded(
        request,
        principal,
        lambda: _package_tab(request, container, principal, name.strip("/"), package),
    )


def _package_tab(
    request: Request, container: Container, principal: Principal, name: str, package: str
) -> Response:
    if not (name.isprintable() and package.isprintable()):
        raise NotFoundError("there is nothing at this address")
    with container.read_factory() as session:
        channel = ChannelService(session).get(principal, name, Permission.CHANNEL_READ)
        browse = BrowseService(session)
        builds = browse.builds(channel, package)
        figures = package_figures(session, principal, channel.name, package)
        found = package_vulnerabilities(session, principal, channel.name, package)
        reachable = _reachable(session, principal, channel.name, builds[:REACHABLE_BUILDS])
        context = {
            "reachable": reachable,
            "reachable_limit": REACHABLE_BUILDS,
            "title": f"{package} · {channel.name} · vulnerabilities",
            "tab": "vulnerabilities",
            "channel": channel,
            "package": package,
            "builds": builds,
            "details": build_details(builds[0], browse.content(builds[0].sha256)),
            "figures": figures,
            "by_version": vulns_by_version(builds, found),
            "matches": len(found),
        }
        return render(request, "package.html", context)
