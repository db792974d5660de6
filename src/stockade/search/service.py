"""Search and "where is X" over the channels a principal can read (SPEC §10).

The channels the principal may read (``ChannelService.list_visible``, the rule browsing uses) go
into the statement as ids; nothing is filtered after the database answers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from stockade.auth.principal import Principal
from stockade.channels.browse import build_sort_key
from stockade.channels.models import Artifact, Channel
from stockade.channels.service import ChannelService
from stockade.channels.signature_names import SignatureState
from stockade.channels.signature_state import signature_info
from stockade.search.backends import backend_for
from stockade.search.models import SearchDocument
from stockade.search.query import KIND_ORDER, MatchKind, SearchFilters, clean_text, ranked
from stockade.vulns.model import Severity
from stockade.vulns.models import ArtifactVulnSummary

MAX_LIMIT = 200
FUZZY_WHEN_FEWER = 5  # matches of the other kinds below which names close to a typo are added


@dataclass(frozen=True)
class SearchHit:
    channel: str
    name: str
    match: MatchKind
    score: float
    latest_version: str
    subdirs: tuple[str, ...]
    build_count: int
    summary: str | None
    license: str | None
    downloads: int
    signs: bool  # the channel signs every record it serves


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_offset: int | None  # where the next page starts; None: this was the last


@dataclass(frozen=True)
class Holding:
    """One servable build of a name: where it is and its state."""

    channel: str
    subdir: str
    version: str
    build: str
    filename: str
    scan_status: str
    signature: SignatureState
    cve_severity: Severity | None  # the worst band of its open vulnerabilities
    open_vulnerabilities: int


class SearchService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.channels = ChannelService(session)

    def _readable(self, principal: Principal, names: Sequence[str] = ()) -> list[Channel]:
        visible = self.channels.list_visible(principal)
        return [c for c in visible if c.name in set(names)] if names else visible

    def search(
        self,
        principal: Principal,
        q: str | None,
        filters: SearchFilters | None = None,
        *,
        offset: int = 0,
        limit: int = 50,
    ) -> SearchPage:
        """One page of hits, best first (``query.ranked``); nothing without text or filters."""
        text = clean_text(q)
        filters = filters or SearchFilters()
        if not text and filters.empty:
            return SearchPage([], None)
        channels = self._readable(principal, filters.channels)
        if not channels:
            return SearchPage([], None)
        ids = [c.id for c in channels]
        signing = [c.id for c in channels if c.sign]
        backend = backend_for(self.session)
        limit = max(1, min(limit, MAX_LIMIT))
        offset = max(0, offset)
        page = _Page(self.session, offset, limit)
        # The kinds rank in order, so a page the better kinds fill is the whole answer's page:
        # words (relevance over many documents) are only asked for when names leave the page
        # short, and names close to a typo (a trigram lookup) when everything else found fewer
        # than FUZZY_WHEN_FEWER packages and no package has that very name -- a typo's fallback,
        # not noise after real matches.
        rows = page.rows(ranked(backend, text, ids, filters, signing, {}, words=False))
        if page.short(rows) and text:
            rows = page.rows(ranked(backend, text, ids, filters, signing, {}))
        few = page.short(rows) and offset + len(rows) < FUZZY_WHEN_FEWER
        if few and _fuzzy_worthy(text) and not self._named(text, ids):
            fuzzy = backend.fuzzy(self.session, text, ids)
            if fuzzy:
                rows = page.rows(ranked(backend, text, ids, filters, signing, fuzzy))
        signs = set(signing)
        hits = [
            _hit(doc, channel, kind, score, doc.channel_id in signs)
            for doc, channel, kind, score in rows[:limit]
        ]
        return SearchPage(hits, offset + limit if len(rows) > limit else None)

    def _named(self, name: str, channel_ids: list[int]) -> bool:
        """Whether a readable channel has a package of exactly this name (then it is no typo)."""
        found = select(SearchDocument.id).where(
            SearchDocument.name == name, SearchDocument.channel_id.in_(channel_ids)
        )
        return self.session.scalar(found.limit(1)) is not None

    def where(self, principal: Principal, name: str) -> list[Holding]:
        """Every servable build of ``name`` in the channels the principal can read: by channel,
        newest version first."""
        wanted = clean_text(name)
        channels = {c.id: c for c in self._readable(principal)}
        if not wanted or not channels:
            return []
        rows = self.session.execute(
            select(Artifact, ArtifactVulnSummary)
            .outerjoin(ArtifactVulnSummary, ArtifactVulnSummary.artifact_id == Artifact.id)
            .where(
                Artifact.channel_id.in_(list(channels)),
                Artifact.name == wanted,
                Artifact.servable.is_(True),  # the one rule (channels/scanstate.py)
            )
        )
        by_channel: dict[int, list[tuple[Artifact, ArtifactVulnSummary | None]]] = defaultdict(list)
        for artifact, summary in rows:
            by_channel[artifact.channel_id].append((artifact, summary))
        held: list[Holding] = []
        for channel_id in sorted(by_channel, key=lambda c: channels[c].name):
            builds = sorted(by_channel[channel_id], key=lambda p: (p[0].subdir, p[0].filename))
            builds.sort(key=lambda p: build_sort_key(p[0]), reverse=True)
            held += [_holding(channels[channel_id], a, s) for a, s in builds]
        return held


@dataclass(frozen=True)
class _Page:
    session: Session
    offset: int
    limit: int

    def rows(self, statement: Select[SearchDocument, str, int, float]) -> list[Any]:
        """One more row than the page, to know whether another follows."""
        return list(self.session.execute(statement.offset(self.offset).limit(self.limit + 1)))

    def short(self, rows: list[Any]) -> bool:
        return len(rows) <= self.limit


def _fuzzy_worthy(text: str) -> bool:
    """A fuzzy name is looked for when the text could be a mistyped name (one word, 3+ chars)."""
    return len(text) >= 3 and not any(c.isspace() for c in text)


def _hit(
    doc: SearchDocument, channel: str, kind: int, score: float | None, signs: bool
) -> SearchHit:
    return SearchHit(
        channel=channel,
        name=doc.name,
        match=KIND_ORDER[int(kind)],
        score=round(float(score or 0.0), 4),
        latest_version=doc.latest_version,
        subdirs=tuple(doc.subdirs.split()),
        build_count=doc.build_count,
        summary=doc.summary,
        license=doc.license,
        downloads=doc.downloads,
        signs=signs,
    )


def _holding(channel: Channel, artifact: Artifact, summary: ArtifactVulnSummary | None) -> Holding:
    severity = summary.severity if summary is not None else None
    bands = {s.value: s for s in Severity}
    counts = summary.counts if summary is not None else {}
    return Holding(
        channel=channel.name,
        subdir=artifact.subdir,
        version=artifact.version,
        build=artifact.build,
        filename=artifact.filename,
        scan_status=artifact.scan_status,
        signature=signature_info(artifact, channel.sign).state,
        cve_severity=bands.get(severity or ""),
        open_vulnerabilities=sum(int(counts.get(s, 0)) for s in ("reported", "active")),
    )
