"""Export of a ``cve.zip`` (the format: ``vulns.bundlefile`` and ``docs/formats.md``).

Every advisory (``vulnerabilities/NNNNNN.jsonl``, :data:`PER_FILE` a file, in the
``vulns.serial`` representation), the KEV/EPSS rows (``enrichment.json``) and the admin name-map
entries (``name_map.json``), then ``manifest.json`` with each file's sha256 and size. Written
to a temporary file beside the target, renamed when complete.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.core.clock import utcnow
from stockade.vulns.bundle_curations import CURATIONS, export_decisions
from stockade.vulns.bundlefile import ENRICHMENT, FORMAT, FORMAT_VERSION, MANIFEST, NAME_MAP
from stockade.vulns.enrich import Enrichments
from stockade.vulns.models import NameMapEntry, NameOrigin
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.serial import record_fields
from stockade.vulns.store import load

__all__ = ["PER_FILE", "ExportCounts", "export_bundle"]

PER_FILE = 5000
_READ = 1 << 20


@dataclass
class ExportCounts:
    vulnerabilities: int = 0
    enrichment: int = 0
    name_map: int = 0
    curations: int = 0
    files: int = 0
    size: int = 0
    sha256: str = ""


def export_bundle(session: Session, out_path: Path, *, producer: str = "stockade") -> ExportCounts:
    """Every advisory, the enrichment and the admin name map as a ``cve.zip`` at ``out_path``
    (written beside it under a temporary name, then renamed)."""
    out_path = Path(out_path)
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=".cve-", suffix=".zip.part")
    tmp = Path(tmp_name)
    counts = ExportCounts()
    try:
        with (
            os.fdopen(fd, "wb") as fh,
            zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive,
        ):
            files: dict[str, dict[str, Any]] = {}
            for number, lines in enumerate(_advisory_lines(session), start=1):
                counts.vulnerabilities += len(lines)
                _put(archive, files, f"vulnerabilities/{number:06d}.jsonl", b"\n".join(lines))
            enrichment = Enrichments(session).rows()
            if enrichment:
                counts.enrichment = len(enrichment)
                _put(archive, files, ENRICHMENT, orjson.dumps({"rows": enrichment}))
            names = _admin_names(session)
            if names:
                counts.name_map = len(names)
                _put(archive, files, NAME_MAP, orjson.dumps({"entries": names}))
            decisions = export_decisions(session)
            if decisions:
                counts.curations = len(decisions)
                _put(archive, files, CURATIONS, orjson.dumps({"decisions": decisions}))
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created": utcnow().isoformat(),
                "producer": producer,
                "files": files,
                "counts": {
                    "vulnerabilities": counts.vulnerabilities,
                    "enrichment": counts.enrichment,
                    "name_map": counts.name_map,
                    "curations": counts.curations,
                },
            }
            _put(archive, {}, MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            counts.files = len(files)
        digest = hashlib.sha256()
        with tmp.open("rb") as fh_read:
            while block := fh_read.read(_READ):
                digest.update(block)
        counts.sha256, counts.size = digest.hexdigest(), tmp.stat().st_size
        tmp.replace(out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return counts


def _put(
    archive: zipfile.ZipFile, files: dict[str, dict[str, Any]], name: str, data: bytes
) -> None:
    info = zipfile.ZipInfo(name, date_time=utcnow().timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    archive.writestr(info, data)
    files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _advisory_lines(session: Session) -> Iterator[list[bytes]]:
    last = 0
    while True:
        query = select(VulnRow).where(VulnRow.id > last).order_by(VulnRow.id).limit(PER_FILE)
        rows = list(session.scalars(query))
        if not rows:
            return
        last = rows[-1].id
        lines = []
        for row in rows:
            fields = record_fields(load(row))
            fields.pop("best_score", None)
            fields.pop("severity", None)
            lines.append(orjson.dumps(fields))
        session.expunge_all()
        yield lines


def _admin_names(session: Session) -> list[dict[str, str]]:
    query = (
        select(NameMapEntry.conda_name, NameMapEntry.identifier, NameMapEntry.note)
        .where(NameMapEntry.origin == NameOrigin.ADMIN.value)
        .order_by(NameMapEntry.conda_name, NameMapEntry.identifier)
    )
    return [{"conda": c, "identifier": i, "note": n or ""} for c, i, n in session.execute(query)]
