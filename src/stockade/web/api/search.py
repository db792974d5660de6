"""Search across the channels the caller can read, and "where is X" (SPEC §10).

``GET /search``: ranked hits (exact name, prefix, substring, text, fuzzy; then downloads), with
filters; the next page's ``cursor`` is in the ``X-Next-Cursor`` header. ``GET /search/where/{name}``:
every servable build of a name, with its state. Unknown filter values: 422 ``search:bad-filter``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from stockade.search.query import parse_filters
from stockade.search.service import MAX_LIMIT, SearchService
from stockade.web.api import API
from stockade.web.api.search_schemas import (
    HoldingPublic,
    SearchHitPublic,
    hit_public,
    holding_public,
)
from stockade.web.deps import ContainerDep, CurrentPrincipal

router = APIRouter(prefix=API, tags=["search"])
Values = Annotated[list[str] | None, Query()]


@router.get("/search", response_model=list[SearchHitPublic])
def search(
    response: Response,
    principal: CurrentPrincipal,
    container: ContainerDep,
    q: Annotated[str, Query(max_length=256, description="name, prefix, typo or words")] = "",
    channel: Values = None,
    subdir: Values = None,
    license: Values = None,
    severity: Annotated[
        list[str] | None, Query(description="none|low|medium|high|critical")
    ] = None,
    scan: Annotated[list[str] | None, Query(description="scan verdict")] = None,
    signature: Values = None,
    has_downloads: bool | None = None,
    cursor: Annotated[int, Query(ge=0, le=100_000, description="X-Next-Cursor")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> list[SearchHitPublic]:
    """Packages of the channels you can read, best first. Repeat a filter for several values."""
    filters = parse_filters(
        channels=channel,
        subdirs=subdir,
        licenses=license,
        severities=severity,
        verdicts=scan,
        signatures=signature,
        has_downloads=has_downloads,
    )
    with container.read_factory() as session:
        page = SearchService(session).search(principal, q, filters, offset=cursor, limit=limit)
    if page.next_offset is not None:
        response.headers["X-Next-Cursor"] = str(page.next_offset)
    return [hit_public(h) for h in page.hits]


@router.get("/search/where/{name}", response_model=list[HoldingPublic])
def where(
    principal: CurrentPrincipal,
    container: ContainerDep,
    name: Annotated[str, Path(max_length=256)],
) -> list[HoldingPublic]:
    """Every servable build of package ``name`` in the channels you can read: channel, version,
    build, scan verdict, signature state and worst open CVE severity."""
    with container.read_factory() as session:
        return [holding_public(h) for h in SearchService(session).where(principal, name)]
