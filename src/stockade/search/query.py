"""A search request: the text, its filters (parsed and checked), and the ranked statement.

Ranking (SPEC §10): exact name, then prefix, then names containing the text, then text relevance
(name, summary, description), then fuzzy names; within a kind by relevance, then downloads, then
name and channel. Permission, the ``servable`` rule and every filter are in the one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    union,
)

from stockade.channels.models import Artifact, Channel
from stockade.channels.scanstate import ScanStatus
from stockade.channels.signature_names import SignatureState
from stockade.channels.signature_state import signature_clause
from stockade.search.backends import SearchBackend
from stockade.search.errors import SearchFilterError, SearchQueryError
from stockade.search.models import SearchDocument
from stockade.vulns.model import Severity
from stockade.vulns.models import ArtifactVulnSummary

MAX_QUERY = 256
E = TypeVar("E", bound=StrEnum)
MAX_VALUES = 20  # values of one filter


class MatchKind(StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUBSTRING = "substring"
    TEXT = "text"
    FUZZY = "fuzzy"
    LISTED = "listed"  # no text: every package the filters keep


KIND_ORDER = list(MatchKind)


@dataclass(frozen=True)
class SearchFilters:
    channels: tuple[str, ...] = ()
    subdirs: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    severities: tuple[Severity, ...] = ()  # worst open CVE band of a build; NONE: no open CVE
    verdicts: tuple[ScanStatus, ...] = ()
    signatures: tuple[SignatureState, ...] = ()
    has_downloads: bool | None = None

    @property
    def empty(self) -> bool:
        return self == SearchFilters()


def _values(field: str, given: Iterable[str] | None) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip() for v in given or () if v and v.strip()))
    if len(values) > MAX_VALUES:
        raise SearchFilterError(f"at most {MAX_VALUES} values of {field}", field=field)
    if any(len(v) > 512 or not v.isprintable() for v in values):
        raise SearchFilterError(f"a value of {field} is too long or not printable", field=field)
    return values


def _enum(kind: type[E], field: str, given: Iterable[str] | None) -> tuple[E, ...]:
    values = _values(field, given)
    known = {e.value: e for e in kind}
    unknown = [v for v in values if v.lower() not in known]
    if unknown:
        raise SearchFilterError(
            f"unknown {field} {unknown[0]!r}: one of {', '.join(known)}",
            field=field,
            allowed=list(known),
        )
    return tuple(known[v.lower()] for v in values)


def parse_filters(
    *,
    channels: Iterable[str] | None = None,
    subdirs: Iterable[str] | None = None,
    licenses: Iterable[str] | None = None,
    severities: Iterable[str] | None = None,
    verdicts: Iterable[str] | None = None,
    signatures: Iterable[str] | None = None,
    has_downloads: bool | None = None,
) -> SearchFilters:
    """Filters from what a caller typed: unknown values are a :class:`SearchFilterError`."""
    return SearchFilters(
        channels=_values("channel", channels),
        subdirs=_values("subdir", subdirs),
        licenses=_values("license", licenses),
        severities=_enum(Severity, "severity", severities),
        verdicts=_enum(ScanStatus, "scan", verdicts),
        signatures=_enum(SignatureState, "signature", signatures),
        has_downloads=has_downloads,
    )


def clean_text(q: str | None) -> str:
    """The text searched: printable, trimmed, lower case (conda names are)."""
    value = "".join(c for c in q or "" if c.isprintable()).strip().lower()
    if len(value) > MAX_QUERY:
        raise SearchQueryError(f"a search is at most {MAX_QUERY} characters", field="q")
    return value


def build_conditions(filters: SearchFilters, signing: Sequence[int]) -> list[ColumnElement[bool]]:
    """What the filters ask of one servable build (SQL over ``artifacts`` and its CVE summary)."""
    # ``column || ''``: compared, not looked up -- the lookup is by (channel_id, name), which the
    # planners would otherwise trade for (channel_id, subdir) or (channel_id, scan_status) indexes
    # and read a whole subdir per document.
    where: list[ColumnElement[bool]] = []
    if filters.subdirs:
        where.append((Artifact.subdir + literal("")).in_(filters.subdirs))
    if filters.licenses:
        where.append(func.lower(Artifact.license).in_([v.lower() for v in filters.licenses]))
    if filters.verdicts:
        verdicts = [v.value for v in filters.verdicts]
        where.append((Artifact.scan_status + literal("")).in_(verdicts))
    if filters.signatures:
        where.append(or_(*(_signature(s, signing) for s in filters.signatures)))
    if filters.severities:
        where.append(_severity(filters.severities))
    return where


def _signature(state: SignatureState, signing: Sequence[int]) -> ColumnElement[bool]:
    here = Artifact.channel_id.in_(signing) if signing else false()
    return or_(
        and_(here, signature_clause(True, state)),
        and_(~here, signature_clause(False, state)),
    )


def _severity(severities: Sequence[Severity]) -> ColumnElement[bool]:
    bands = [s.value for s in severities if s is not Severity.NONE]
    found = select(ArtifactVulnSummary.artifact_id).where(
        ArtifactVulnSummary.artifact_id == Artifact.id
    )
    options: list[ColumnElement[bool]] = []
    if bands:
        options.append(exists(found.where(ArtifactVulnSummary.severity.in_(bands))))
    if Severity.NONE in severities:  # no open vulnerability with a score above 0
        options.append(
            ~exists(
                found.where(
                    ArtifactVulnSummary.severity.is_not(None),
                    ArtifactVulnSummary.severity != Severity.NONE.value,
                )
            )
        )
    return or_(*options)


def builds_exist(filters: SearchFilters, signing: Sequence[int]) -> ColumnElement[bool]:
    """A servable build of the document's name in its channel that every build filter keeps."""
    return exists(
        select(Artifact.id).where(
            Artifact.channel_id == SearchDocument.channel_id,
            Artifact.name == SearchDocument.name,
            Artifact.servable.is_(True),  # the one rule (channels/scanstate.py)
            *build_conditions(filters, signing),
        )
    )


def ranked(
    backend: SearchBackend,
    q: str,
    channel_ids: Sequence[int],
    filters: SearchFilters,
    signing: Sequence[int],
    fuzzy: dict[str, float],
    *,
    words: bool = True,
) -> Select[SearchDocument, str, int, float]:
    """Documents matching ``q`` in ``channel_ids`` that the filters keep, best first; without
    ``words``, only those whose name matches (exact, prefix, substring)."""
    doc = SearchDocument
    # With a text, the candidates' ids drive the statement; ``channel_id + 0`` keeps SQLite from
    # walking every document of the channels by the (channel_id, name) index instead.
    channel = doc.channel_id + 0 if q else doc.channel_id
    where: list[ColumnElement[bool]] = [
        channel.in_(channel_ids),
        builds_exist(filters, signing),
    ]
    if filters.has_downloads is not None:
        where.append(doc.downloads > 0 if filters.has_downloads else doc.downloads == 0)
    if not q:
        kind: ColumnElement[int] = literal(KIND_ORDER.index(MatchKind.LISTED))
        score: ColumnElement[float] = literal(0.0)
        statement: Select[SearchDocument, str, int, float] = select(doc, Channel.name, kind, score)
    else:
        hits = backend.text_hits(q) if words else None
        candidates = [
            select(doc.id).where(doc.name == q),
            select(doc.id).where(backend.prefix(q)),
            backend.substring_ids(q),
        ]
        if hits is not None:
            candidates.append(select(hits.c.id))
        if fuzzy:
            candidates.append(select(doc.id).where(doc.name.in_(list(fuzzy))))
        where.append(doc.id.in_(union(*candidates).scalar_subquery()))
        text_score = hits.c.score if hits is not None else literal(0.0, Float)
        has_text = hits.c.id.is_not(None) if hits is not None else false()
        kind = case(
            (doc.name == q, 0),
            (doc.name.startswith(q, autoescape=True), 1),
            (doc.name.contains(q, autoescape=True), 2),
            (has_text, 3),
            else_=4,
        )
        fuzzy_score = case(fuzzy, value=doc.name, else_=0.0) if fuzzy else literal(0.0)
        score = case((kind == 3, text_score), (kind == 4, fuzzy_score), else_=0.0)
        statement = select(doc, Channel.name, kind, score)
        if hits is not None:
            statement = statement.outerjoin(hits, hits.c.id == doc.id)
    return (
        statement.join(Channel, Channel.id == doc.channel_id)
        .where(*where)
        .order_by(kind, score.desc(), doc.downloads.desc(), doc.name, Channel.name)
    )
