"""Schemas of the search API (``web/api/search.py``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from stockade.search.service import Holding, SearchHit


class SearchHitPublic(BaseModel):
    channel: str
    name: str
    match: str = Field(description="exact | prefix | substring | text | fuzzy | listed")
    score: float = Field(description="text relevance or name similarity within its match kind")
    latest_version: str
    subdirs: list[str]
    build_count: int
    summary: str | None
    license: str | None
    downloads: int
    signed: bool = Field(description="the channel signs every record it serves")


class HoldingPublic(BaseModel):
    channel: str
    subdir: str
    version: str
    build: str
    filename: str
    scan_status: str
    signature: str
    cve_severity: str | None = Field(description="worst band of its open vulnerabilities")
    open_vulnerabilities: int


def hit_public(hit: SearchHit) -> SearchHitPublic:
    return SearchHitPublic(
        channel=hit.channel,
        name=hit.name,
        match=hit.match.value,
        score=hit.score,
        latest_version=hit.latest_version,
        subdirs=list(hit.subdirs),
        build_count=hit.build_count,
        summary=hit.summary,
        license=hit.license,
        downloads=hit.downloads,
        signed=hit.signs,
    )


def holding_public(held: Holding) -> HoldingPublic:
    return HoldingPublic(
        channel=held.channel,
        subdir=held.subdir,
        version=held.version,
        build=held.build,
        filename=held.filename,
        scan_status=held.scan_status,
        signature=held.signature.value,
        cve_severity=held.cve_severity.value if held.cve_severity else None,
        open_vulnerabilities=held.open_vulnerabilities,
    )
