"""What the Air-gap page and ``GET /api/v1/airgap`` show: the bundles waiting in the folder, and
the bundles applied or refused (with why). Needs ``mirror:read``."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Boolean, column, func, select, table
from sqlalchemy.orm import Session

from stockade.airgap.folder import CVE_FORMAT, dropped
from stockade.airgap.manifest import FORMAT, MANIFEST
from stockade.airgap.models import AirgapImport
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.db.base import UTCDateTime
from stockade.settings import AirgapSettings

_PEEK_MAX = 8 << 20
#: The mirrors and their runs, read here (mirroring sits above this domain: its models are not
#: imported).
_MIRRORS = table(
    "mirrors",
    column("id"),
    column("name"),
    column("source_url"),
    column("mode"),
    column("enabled", Boolean()),
)
_RUNS = table(
    "mirror_runs",
    column("id"),
    column("mirror_id"),
    column("state"),
    column("summary"),
    column("created_at", UTCDateTime()),
    column("finished_at", UTCDateTime()),
)
AIRGAP_SCHEME = "airgap:"


@dataclass
class WaitingBundle:
    file_name: str
    size: int
    modified: datetime
    kind: str  # packages | cve | unreadable
    bundle_id: str | None = None
    parent_id: str | None = None
    channel: str | None = None
    created: str | None = None
    files: int | None = None


@dataclass
class ImportedBundle:
    file_name: str
    kind: str
    state: str
    bundle_id: str | None
    parent_id: str | None
    channel: str | None
    mirror: str | None
    reason: str | None
    code: str | None
    counts: dict[str, Any]
    run_id: int | None
    finished_at: datetime


@dataclass
class AirgapMirror:
    """A mirror whose source is ``airgap:CHANNEL``, with its newest run."""

    name: str
    channel: str
    mode: str
    enabled: bool
    run_id: int | None = None
    run_state: str | None = None
    run_summary: str | None = None
    run_at: datetime | None = None


@dataclass
class AirgapStatus:
    folder: str
    trusted_keys: list[str]
    waiting: list[WaitingBundle] = field(default_factory=list)
    history: list[ImportedBundle] = field(default_factory=list)


def _peek(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(MANIFEST)
            if info.file_size > _PEEK_MAX:
                return {}
            doc = orjson.loads(archive.read(info))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, RuntimeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _waiting(folder: Path) -> list[WaitingBundle]:
    found = []
    for entry in dropped(folder, 0):
        kind = {FORMAT: "packages", CVE_FORMAT: "cve"}.get(entry.format or "", "unreadable")
        try:
            modified = datetime.fromtimestamp(entry.path.stat().st_mtime, UTC)
        except FileNotFoundError:  # taken by a run meanwhile
            continue
        doc = _peek(entry.path) if kind == "packages" else {}
        files = doc.get("files")
        found.append(
            WaitingBundle(
                file_name=entry.name,
                size=entry.size,
                modified=modified,
                kind=kind,
                bundle_id=_text(doc.get("bundle_id")),
                parent_id=_text(doc.get("parent_id")),
                channel=_text(doc.get("channel")),
                created=_text(doc.get("created")),
                files=len(files) if isinstance(files, dict) else None,
            )
        )
    return found


def _text(value: Any) -> str | None:
    return value[:300] if isinstance(value, str) else None


def airgap_status(
    session: Session, principal: Principal, settings: AirgapSettings, data_dir: Path
) -> AirgapStatus:
    AccessService(session).require(principal, Permission.MIRROR_READ)
    folder = settings.folder_in(data_dir)
    rows = session.execute(
        select(AirgapImport, _MIRRORS.c.name)
        .outerjoin(_MIRRORS, _MIRRORS.c.id == AirgapImport.mirror_id)
        .order_by(AirgapImport.id.desc())
        .limit(200)
    ).all()
    history = [
        ImportedBundle(
            file_name=r.file_name,
            kind=r.kind,
            state=r.state,
            bundle_id=r.bundle_id,
            parent_id=r.parent_id,
            channel=r.channel,
            mirror=name,
            reason=r.reason,
            code=r.code,
            counts=r.counts or {},
            run_id=r.run_id,
            finished_at=r.finished_at,
        )
        for r, name in rows
    ]
    return AirgapStatus(str(folder), list(settings.trusted_keys), _waiting(folder), history)


def airgap_mirrors(session: Session, channel: str | None = None) -> list[AirgapMirror]:
    """The mirrors whose source is ``airgap:…`` (of ``channel`` only, when given), by name, each
    with its newest run. The caller has checked ``mirror:read`` (or more)."""
    source = _MIRRORS.c.source_url
    query = select(_MIRRORS).order_by(_MIRRORS.c.name)
    if channel is None:
        query = query.where(source.like(AIRGAP_SCHEME + "%"))
    else:
        query = query.where(source == AIRGAP_SCHEME + channel)
    rows = session.execute(query).all()
    newest = _newest_runs(session, [row.id for row in rows])
    found = []
    for row in rows:
        mirror = AirgapMirror(
            name=row.name,
            channel=row.source_url[len(AIRGAP_SCHEME) :],
            mode=row.mode,
            enabled=bool(row.enabled),
        )
        run = newest.get(row.id)
        if run is not None:
            mirror.run_id, mirror.run_state, mirror.run_summary = run.id, run.state, run.summary
            mirror.run_at = run.finished_at or run.created_at
        found.append(mirror)
    return found


def _newest_runs(session: Session, mirror_ids: list[int]) -> dict[int, Any]:
    if not mirror_ids:
        return {}
    newest = (
        select(func.max(_RUNS.c.id))
        .where(_RUNS.c.mirror_id.in_(mirror_ids))
        .group_by(_RUNS.c.mirror_id)
    )
    rows = session.execute(select(_RUNS).where(_RUNS.c.id.in_(newest)))
    return {row.mirror_id: row for row in rows}
