"""What a mirrored package is: its summary (and licence when the record has none), for channel
pages, the API and search (SPEC §5, §10).

Repodata records carry no summary. An **active** run reads each file it downloaded and will
publish, with the same untrusted-archive reader as uploads (what it holds is recorded once per
sha256 in ``package_contents``, shared with the link-script criterion), and takes ``summary`` and
``license`` from its ``info/about.json``. A **passive** run has no files: it takes them from the
upstream's ``channeldata.json`` (``packages`` → name → ``summary``, ``license``), fetched with the
repodata through the outbound guard. Summaries are nice to have: a channel without
``channeldata.json``, or one that cannot be read, gives records without summaries, never a failed
run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import url2pathname

import httpx
import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.models import Artifact, PackageContent
from stockade.conda.archive import ValidationLimits
from stockade.core.errors import StockadeError
from stockade.core.outbound import RefusedDestinationError, guarded_client
from stockade.core.urls import parse_url, redact_url
from stockade.db.engine import transaction
from stockade.mirroring.contents import KnownLinkScripts, read_downloaded
from stockade.mirroring.source_config import SourceConfig, http_client_options
from stockade.storage.interfaces import BlobStore

if TYPE_CHECKING:
    from stockade.mirroring.job import MirrorJob
    from stockade.mirroring.plan import Plan
    from stockade.mirroring.upstream import UpstreamSnapshot

log = logging.getLogger("stockade.mirroring")

CHANNELDATA = "channeldata.json"
CHANNELDATA_MAX = 256 * 1024 * 1024  # conda-forge's is tens of MB
SUMMARY_MAX = 4000  # as uploads keep it
LICENSE_MAX = 256
READ_CHUNK = 50  # files read per transaction (a write lock is not held for a whole run)


@dataclass(frozen=True)
class About:
    summary: str | None = None
    license: str | None = None


def _text(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] if value else None


def about_of(data: object) -> About | None:
    """The summary and licence of an ``about.json`` or a channeldata entry; None without both."""
    if not isinstance(data, Mapping):
        return None
    found = About(_text(data.get("summary"), SUMMARY_MAX), _text(data.get("license"), LICENSE_MAX))
    return found if found.summary or found.license else None


def parse_channeldata(raw: bytes) -> dict[str, About]:
    """Package name -> :class:`About` of a ``channeldata.json``; {} when it is not one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    packages = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(packages, dict):
        return {}
    return {
        name: about
        for name, entry in packages.items()
        if isinstance(name, str) and (about := about_of(entry)) is not None
    }


# ----------------------------------------------------------------------------- passive: upstream


def fetch_channeldata(config: SourceConfig) -> bytes | None:
    """The upstream's ``channeldata.json``; None when it has none or it cannot be read."""
    url = f"{config.url.rstrip('/')}/{CHANNELDATA}"
    if parse_url(url).scheme == "file":
        return _read_file(Path(url2pathname(parse_url(url).path)))
    try:
        with (
            guarded_client(config.outbound, http_client_options(config)) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                log.info("upstream %s: HTTP %s", redact_url(url), response.status_code)
                return None
            return _bounded(response.iter_bytes(), url)
    except (httpx.HTTPError, RefusedDestinationError, StockadeError) as exc:
        log.warning("upstream %s: not read (%s)", redact_url(url), type(exc).__name__)
        return None


def _read_file(path: Path) -> bytes | None:
    try:
        if path.stat().st_size > CHANNELDATA_MAX:
            log.warning("%s: larger than %d bytes, not read", path, CHANNELDATA_MAX)
            return None
        return path.read_bytes()
    except OSError:
        return None


def _bounded(chunks: Iterable[bytes], url: str) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > CHANNELDATA_MAX:
            log.warning("upstream %s: larger than %d bytes, not read", redact_url(url), size)
            return None
        parts.append(chunk)
    return b"".join(parts)


def channeldata_abouts(config: SourceConfig) -> dict[str, About]:
    """What the upstream's ``channeldata.json`` says of each package name ({} without one)."""
    raw = fetch_channeldata(config)
    return parse_channeldata(raw) if raw is not None else {}


# ----------------------------------------------------------------------------- active: files


def record_abouts(
    factory: sessionmaker[Session],
    blobs: BlobStore,
    limits: ValidationLimits,
    job: MirrorJob,
    plan: Plan,
    snapshot: UpstreamSnapshot,
) -> None:
    """After an active run's downloads: read the files it will publish, and the stored files of
    the mirror's records still without a summary (mirrored before summaries were kept), that
    were never read; keep what their ``about.json`` says on ``snapshot`` for the rows."""
    wanted: dict[str, str] = {}  # sha256 -> filename
    for key in [*plan.add, *plan.change]:
        rec = plan.kept.get(key[0], {}).get(key[1])
        if rec is not None and isinstance(rec.get("sha256"), str):
            wanted[str(rec["sha256"])] = key[1]
    with factory() as session:
        for sha, filename in session.execute(
            select(Artifact.sha256, Artifact.filename).where(
                Artifact.mirror_id == job.mirror_id, Artifact.summary.is_(None)
            )
        ):
            wanted.setdefault(sha, filename)
        found = _stored_abouts(session, wanted)
    unread = [(fn, sha) for sha, fn in wanted.items() if sha not in found]
    for start in range(0, len(unread), READ_CHUNK):
        chunk = unread[start : start + READ_CHUNK]
        with transaction(factory) as session:
            read_downloaded(session, blobs, limits, chunk, KnownLinkScripts())
            found.update(_stored_abouts(session, [sha for _, sha in chunk]))
    snapshot.abouts_by_sha = {
        sha: about for sha, data in found.items() if (about := about_of(data)) is not None
    }


def backfill_summaries(session: Session, mirror_id: int, snapshot: UpstreamSnapshot) -> int:
    """In the run's switching transaction: the summary (and missing licence) of the mirror's
    records that have none yet and that the run now knows one for; returns their count."""
    if not snapshot.abouts_by_sha and not snapshot.abouts_by_name:
        return 0
    changes: list[dict[str, Any]] = []
    for aid, name, sha, license_ in session.execute(
        select(Artifact.id, Artifact.name, Artifact.sha256, Artifact.license).where(
            Artifact.mirror_id == mirror_id, Artifact.summary.is_(None)
        )
    ):
        about = snapshot.about_for({"sha256": sha, "name": name})
        if about is not None and about.summary:
            change = {"id": aid, "summary": about.summary}
            if not license_ and about.license:
                change["license"] = about.license
            changes.append(change)
    for group in (
        [c for c in changes if "license" in c],
        [c for c in changes if "license" not in c],
    ):
        for start in range(0, len(group), 2000):
            session.execute(update(Artifact), group[start : start + 2000])  # by primary key
    return len(changes)


def _stored_abouts(session: Session, shas: Iterable[str]) -> dict[str, Any]:
    wanted = sorted(set(shas))
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), 2000):
        for sha, about in session.execute(
            select(PackageContent.sha256, PackageContent.about_json).where(
                PackageContent.sha256.in_(wanted[start : start + 2000])
            )
        ):
            found[sha] = about
    return found
