"""The search page: a plain GET form (works without JavaScript) over ``search.SearchService``.

Every filter is a query parameter, so a search is a link. An unknown filter value redraws the
form with the reason (422), never a stack trace.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from stockade.channels.scanstate import ScanStatus
from stockade.channels.signature_names import SignatureState
from stockade.search.errors import SearchFilterError, SearchQueryError
from stockade.search.query import MAX_QUERY, SearchFilters, parse_filters
from stockade.search.service import SearchService
from stockade.vulns.model import Severity
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Query()]
PAGE = 50
SIGNED = ("signed", "upstream-verified")  # what the "signed only" box keeps


def _one(value: str) -> list[str]:
    """A form field: empty is "any"."""
    value = "".join(c for c in value if c.isprintable()).strip()
    return [value] if value else []


def _filters(
    channel: str,
    subdir: str,
    license_: str,
    severity: str,
    scan: str,
    signature: str,
    signed: bool,
    downloads: bool,
) -> SearchFilters:
    signatures = list(SIGNED) if signed and not signature else _one(signature)
    return parse_filters(
        channels=_one(channel),
        subdirs=_one(subdir),
        licenses=_one(license_),
        severities=_one(severity),
        verdicts=_one(scan),
        signatures=signatures,
        has_downloads=True if downloads else None,
    )


@router.get("/search")
def search(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    q: Text = "",
    channel: Text = "",
    subdir: Text = "",
    license: Text = "",
    severity: Text = "",
    scan: Text = "",
    signature: Text = "",
    signed: Text = "",
    downloads: Text = "",
    start: Text = "0",
) -> Response:
    text = "".join(c for c in q if c.isprintable()).strip()[:MAX_QUERY]
    only_signed = signed == "1"  # the form's checkboxes; anything else: no filter
    downloaded = downloads == "1"
    form: dict[str, object] = {
        "q": text, "channel": channel, "subdir": subdir, "license": license,
        "severity": severity, "scan": scan, "signature": signature,
        "signed": only_signed, "downloads": downloaded,
    }  # fmt: skip
    offset = int(start) if start.isascii() and start.isdigit() and len(start) < 7 else 0

    def build() -> Response:
        with container.read_factory() as session:
            context = {
                "title": f"Search: {text}" if text else "Search",
                "search_query": text,
                "form": form,
                "signed_only": only_signed,
                "severities": [s.value for s in Severity],
                "verdicts": [s.value for s in ScanStatus],
                "signatures": [s.value for s in SignatureState],
                "hits": [],
                "next_url": None,
                "error": None,
            }
            try:
                filters = _filters(
                    channel, subdir, license, severity, scan, signature,
                    only_signed, downloaded,
                )  # fmt: skip
                page = SearchService(session).search(
                    principal, text, filters, offset=offset, limit=PAGE
                )
            except (SearchFilterError, SearchQueryError) as exc:
                context["error"] = exc.detail
                return render(request, "search.html", context, status=422)
            context["hits"] = page.hits
            if page.next_offset is not None:
                kept = {k: v for k, v in form.items() if v not in ("", False)}
                flags = {k: "1" for k, v in kept.items() if v is True}
                context["next_url"] = "/search?" + urlencode(
                    {**kept, **flags, "start": page.next_offset}
                )
            context["searched"] = bool(text) or not filters.empty
            return render(request, "search.html", context)

    return guarded(request, principal, build)


@router.get("/search/where/{name}")
def where(
    request: Request, principal: CurrentPrincipal, container: ContainerDep, name: str
) -> Response:
    """Every channel, version and build holding ``name`` that the caller can read."""

    def build() -> Response:
        with container.read_factory() as session:
            held = SearchService(session).where(principal, name[:MAX_QUERY])
        context = {"title": f"Where is {name[:MAX_QUERY]}", "name": name[:MAX_QUERY], "held": held}
        return render(request, "search_where.html", context)

    return guarded(request, principal, build)
