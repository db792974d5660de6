"""Keeping the search index current (docs/adr/0016-search-index.md).

:func:`refresh_names` rebuilds the documents of some package names of one channel from their
servable builds; the publisher calls it (through :class:`SearchIndexer`) in the transaction that
switches a subdir's index, with the names whose records changed there, so what a client can
install and what search finds change together: a new package is findable as soon as its index is
served, a removed or quarantined one is gone from search in the same commit.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, literal, select, true, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from stockade.audit.downloads_models import DownloadDaily
from stockade.channels.browse import version_key
from stockade.channels.models import Artifact, PackageContent
from stockade.core.clock import utcnow
from stockade.db.base import UTCDateTime
from stockade.db.engine import transaction
from stockade.search.models import SearchDocument

log = logging.getLogger("stockade.search")
_CHUNK = 500
#: Above this many changed names, a publication sketches their documents (``sketch_names``) and
#: the ``search-refresh`` job completes them.
SKETCH_ABOVE = 2000
MAX_DESCRIPTION = 4000  # characters of about.json's description (and keywords) kept as text
MAX_SUBDIRS = 1024  # SearchDocument.subdirs


@dataclass(frozen=True)
class _Build:
    name: str
    id: int
    version: str
    build_number: int
    subdir: str
    summary: str | None
    license: str | None
    sha256: str


def refresh_names(session: Session, channel_id: int, names: Iterable[str]) -> int:
    """Rebuild the documents of ``names`` in a channel; returns how many changed."""
    ordered = sorted(set(names))
    changed = 0
    for start in range(0, len(ordered), _CHUNK):
        changed += _refresh_chunk(session, channel_id, ordered[start : start + _CHUNK])
    return changed


def _refresh_chunk(session: Session, channel_id: int, names: Sequence[str]) -> int:
    builds: dict[str, list[_Build]] = defaultdict(list)
    for row in session.execute(
        select(
            Artifact.name,
            Artifact.id,
            Artifact.version,
            Artifact.build_number,
            Artifact.subdir,
            Artifact.summary,
            Artifact.license,
            Artifact.sha256,
        ).where(
            Artifact.channel_id == channel_id,
            Artifact.name.in_(names),
            Artifact.servable.is_(True),  # the one rule (channels/scanstate.py)
        )
    ):
        builds[row.name].append(_Build(*row))
    docs = {
        d.name: d
        for d in session.scalars(
            select(SearchDocument).where(
                SearchDocument.channel_id == channel_id, SearchDocument.name.in_(names)
            )
        )
    }
    gone = [d.id for n, d in docs.items() if n not in builds]
    if gone:
        session.execute(delete(SearchDocument).where(SearchDocument.id.in_(gone)))
    stale = {
        name: (found, fp)
        for name, found in builds.items()
        if (fp := _fingerprint(found)) != getattr(docs.get(name), "fingerprint", None)
    }
    latest = {name: _latest(found) for name, (found, _) in stale.items()}
    abouts = _abouts(session, {b.sha256 for b in latest.values()})
    for name, (found, fp) in stale.items():
        values = _document(found, latest[name], abouts.get(latest[name].sha256) or {}, fp)
        doc = docs.get(name)
        if doc is None:
            session.add(SearchDocument(channel_id=channel_id, name=name, **values))
        else:
            for key, value in values.items():
                setattr(doc, key, value)
    session.flush()
    return len(gone) + len(stale)


def _fingerprint(builds: list[_Build]) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for b in sorted(builds, key=lambda b: b.id):
        digest.update(f"{b.id}\0{b.summary or ''}\0{b.license or ''}\n".encode())
    return digest.hexdigest()


def _latest(builds: list[_Build]) -> _Build:
    return max(builds, key=lambda b: (version_key(b.version), b.build_number, b.subdir, b.id))


def _abouts(session: Session, shas: set[str]) -> dict[str, dict[str, Any]]:
    if not shas:
        return {}
    found = session.execute(
        select(PackageContent.sha256, PackageContent.about_json).where(
            PackageContent.sha256.in_(sorted(shas))
        )
    )
    return dict(found.all())  # (a Result has keys(): dict() would take it for a mapping)


def _document(
    builds: list[_Build], latest: _Build, about: dict[str, Any], fingerprint: str
) -> dict[str, Any]:
    return {
        "summary": latest.summary or next((b.summary for b in builds if b.summary), None),
        "description": _description(about),
        "latest_version": latest.version,
        "license": latest.license or next((b.license for b in builds if b.license), None),
        "subdirs": _subdirs({b.subdir for b in builds}),
        "build_count": len(builds),
        "fingerprint": fingerprint,
    }


def _subdirs(subdirs: set[str]) -> str:
    """The platforms shown in a hit, as many whole ones as ``SearchDocument.subdirs`` holds (a
    name may be built for more: filters read the builds, never this text)."""
    shown = ""
    for subdir in sorted(subdirs):
        longer = f"{shown} {subdir}" if shown else subdir
        if len(longer) > MAX_SUBDIRS:
            break
        shown = longer
    return shown


def _description(about: dict[str, Any]) -> str | None:
    """about.json's description and keywords, as plain text (bounded)."""
    parts: list[str] = []
    description = about.get("description")
    if isinstance(description, str):
        parts.append(description)
    keywords = about.get("keywords")
    if isinstance(keywords, list):
        parts.append(" ".join(k for k in keywords if isinstance(k, str)))
    text = " ".join(p.strip() for p in parts if p.strip())
    return text[:MAX_DESCRIPTION] or None


def refresh_downloads(session: Session, names: Collection[tuple[int, str]] | None = None) -> int:
    """Copy each document's total downloads from ``download_daily`` (only the (channel id, name)
    pairs in ``names`` when given: the download flusher's batch); returns rows changed."""
    total = (
        select(func.coalesce(func.sum(DownloadDaily.count), 0))
        .where(
            DownloadDaily.channel_id == SearchDocument.channel_id,
            DownloadDaily.name == SearchDocument.name,
        )
        .scalar_subquery()
    )
    scope = (
        tuple_(SearchDocument.channel_id, SearchDocument.name).in_(sorted(names))
        if names is not None
        else true()
    )
    if names is not None and not names:
        return 0
    result = session.execute(
        update(SearchDocument)
        .where(scope, SearchDocument.downloads != total)
        .values(downloads=total)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def sketch_names(session: Session, channel_id: int, names: Iterable[str]) -> None:
    """Documents of many names at once, in a few statements: what SQL alone can say (name,
    a summary, build count), marked stale (``fingerprint`` NULL) for :func:`reconcile` to finish.

    A publication that changes thousands of names (a new mirror's first one) would otherwise hold
    its switching transaction -- SQLite's one write lock -- for seconds per thousand names."""
    ordered = sorted(set(names))
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        mine = (SearchDocument.channel_id == channel_id) & SearchDocument.name.in_(chunk)
        served = select(Artifact.id).where(
            Artifact.channel_id == channel_id,
            Artifact.name == SearchDocument.name,
            Artifact.servable.is_(True),  # the one rule (channels/scanstate.py)
        )
        session.execute(delete(SearchDocument).where(mine, ~served.exists()))
        session.execute(update(SearchDocument).where(mine).values(fingerprint=None))
        rows = (
            select(
                Artifact.channel_id,
                Artifact.name,
                func.max(Artifact.summary),
                func.max(Artifact.version),
                func.max(Artifact.license),
                func.min(Artifact.subdir),
                func.count(),
                literal(0),
                literal(utcnow(), UTCDateTime()),
            )
            .where(
                Artifact.channel_id == channel_id,
                Artifact.name.in_(chunk),
                Artifact.servable.is_(True),
            )
            .group_by(Artifact.channel_id, Artifact.name)
        )
        columns = [
            "channel_id", "name", "summary", "latest_version", "license", "subdirs",
            "build_count", "downloads", "updated_at",
        ]  # fmt: skip
        dialect = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(dialect(SearchDocument).from_select(columns, rows).on_conflict_do_nothing())


def reconcile(factory: sessionmaker[Session], *, budget_s: float = 120.0) -> int:
    """Rebuild documents marked stale (``fingerprint`` NULL: sketched, or left so by migration
    0014), a chunk of names per transaction, for at most about ``budget_s`` seconds."""
    done = 0
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        with transaction(factory) as session:
            pairs = session.execute(
                select(SearchDocument.channel_id, SearchDocument.name)
                .where(SearchDocument.fingerprint.is_(None))
                .order_by(SearchDocument.channel_id, SearchDocument.name)
                .limit(_CHUNK)
            ).all()
            by_channel: dict[int, list[str]] = defaultdict(list)
            for channel_id, name in pairs:
                by_channel[channel_id].append(name)
            for channel_id, names in by_channel.items():
                refresh_names(session, channel_id, names)
        done += len(pairs)
        if len(pairs) < _CHUNK:
            break
    return done


class SearchIndexer:
    """What the publisher and the recurring job call; one per process (container.py)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def on_switch(self, session: Session, channel_id: int, _subdir: str, names: set[str]) -> None:
        """In the publisher's switching transaction: the names whose records changed."""
        if not names:
            return
        try:
            with session.begin_nested():  # a failure here never stops the publication
                if len(names) > SKETCH_ABOVE:
                    sketch_names(session, channel_id, names)
                else:
                    refresh_names(session, channel_id, names)
        except Exception:
            log.exception("search index of channel id %s not refreshed", channel_id)

    def refresh(self) -> str:
        """The recurring job: stale documents rebuilt, download counts copied."""
        rebuilt = reconcile(self.factory)
        with transaction(self.factory) as session:
            counted = refresh_downloads(session)
        return f"{rebuilt} documents rebuilt, {counted} download counts changed"
