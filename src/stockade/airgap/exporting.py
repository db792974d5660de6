"""What a package bundle of one channel subdir carries: its served records, and their files.

Only what the channel serves leaves: a record is exported when its artifact is servable, has its
scan verdict (never a quarantined file, nor one still waiting for its scan) and its bytes are
stored. The repodata is the channel's published ``repodata.json`` (patches applied, signatures
kept) narrowed to those records.

``covered`` (filename -> [sha256, record digest]) is what the other side holds once the bundle is
applied: an incremental bundle compares against its parent's to carry only new files, and to
count records added, changed (a new file or patched metadata) and removed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import zstandard
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.airgap.errors import BadExportRequestError
from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.channels.scanstate import ScanStatus
from stockade.storage.interfaces import BlobStore

_WAITING = (ScanStatus.PENDING, ScanStatus.UNFETCHED)
_SECTIONS = ("packages", "packages.conda")


@dataclass
class SubdirExport:
    subdir: str
    repodata_zst: bytes
    records: int
    files: dict[str, tuple[str, int]]  # filename -> (sha256, size): every exported record's file
    covered: dict[str, list[str]]  # filename -> [sha256, record digest]
    counts: dict[str, int] = field(default_factory=dict)


def exportable_files(session: Session, channel_id: int, subdir: str) -> dict[str, tuple[str, int]]:
    rows = session.execute(
        select(Artifact.filename, Artifact.sha256, Artifact.size).where(
            Artifact.channel_id == channel_id,
            Artifact.subdir == subdir,
            Artifact.servable.is_(True),  # the one rule (channels/scanstate.py)
            Artifact.scan_status.not_in([s.value for s in _WAITING]),
        )
    ).all()
    return {r.filename: (r.sha256, r.size) for r in rows}


def _published(session: Session, blobs: BlobStore, channel: Channel, subdir: str) -> Any:
    row = session.scalar(
        select(SubdirIndex).where(
            SubdirIndex.channel_id == channel.id, SubdirIndex.subdir == subdir
        )
    )
    if row is None or row.repodata_sha256 is None:
        raise BadExportRequestError(
            f"channel {channel.name!r} has no published index for {subdir!r}",
            code="airgap:no-subdir",
        )
    return orjson.loads(blobs.read_bytes(row.repodata_sha256))


def export_subdir(
    session: Session,
    blobs: BlobStore,
    channel: Channel,
    subdir: str,
    parent_covered: dict[str, list[str]] | None,
) -> SubdirExport:
    published = _published(session, blobs, channel, subdir)
    stored = exportable_files(session, channel.id, subdir)
    files: dict[str, tuple[str, int]] = {}
    covered: dict[str, list[str]] = {}
    out: dict[str, Any] = {
        "info": {"subdir": subdir},
        "repodata_version": 1,
        "packages": {},
        "packages.conda": {},
    }
    signatures = published.get("signatures") or {}
    kept_signatures: dict[str, Any] = {}
    for section in _SECTIONS:
        for filename, record in (published.get(section) or {}).items():
            found = stored.get(filename)
            if found is None or record.get("sha256") != found[0] or not blobs.exists(found[0]):
                continue
            out[section][filename] = record
            files[filename] = found
            digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
            covered[filename] = [found[0], digest]
            if filename in signatures:
                kept_signatures[filename] = signatures[filename]
    if kept_signatures:
        out["signatures"] = kept_signatures
    raw = orjson.dumps(out, option=orjson.OPT_SORT_KEYS)
    export = SubdirExport(
        subdir, zstandard.ZstdCompressor(level=10).compress(raw), len(files), files, covered
    )
    export.counts = _counts(covered, parent_covered)
    return export


def _counts(covered: dict[str, list[str]], parent: dict[str, list[str]] | None) -> dict[str, int]:
    if parent is None:
        return {"records": len(covered), "added": len(covered), "changed": 0, "removed": 0}
    added = sum(1 for f in covered if f not in parent)
    changed = sum(1 for f, v in covered.items() if f in parent and parent[f] != v)
    removed = sum(1 for f in parent if f not in covered)
    return {"records": len(covered), "added": added, "changed": changed, "removed": removed}


def carried(
    export: SubdirExport, parent: dict[str, list[str]] | None
) -> dict[str, tuple[str, int]]:
    """The files the bundle carries: all of them, or those whose bytes the parent did not."""
    if parent is None:
        return dict(export.files)
    return {
        fn: meta
        for fn, meta in export.files.items()
        if fn not in parent or parent[fn][0] != meta[0]
    }
