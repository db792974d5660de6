"""Upload: validate an untrusted archive outside any transaction, then record it in one.

``validate`` reads the staged file (CPU and I/O, no database); ``store`` moves the bytes into the
blob store; ``record`` inserts rows and asks for a publication, in the caller's transaction. A crash
between the steps leaves at most an unreferenced blob, which ``stockade fsck`` collects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.errors import (
    ArtifactExistsError,
    ArtifactHeldError,
    ChecksumMismatchError,
)
from stockade.channels.intake import ScanReason, admit
from stockade.channels.models import Artifact, PackageContent
from stockade.channels.publishing import request_publications
from stockade.channels.scanstate import QUARANTINE_STATES, ArtifactSource
from stockade.channels.service import ChannelService
from stockade.conda.archive import PackageInfo, ValidationLimits, inspect_package
from stockade.conda.repodata import encode_record
from stockade.core.clock import now_ms
from stockade.db.upsert import insert_ignore
from stockade.storage.interfaces import BlobStore
from stockade.storage.models import Blob
from stockade.storage.staging import StagedFile


@dataclass(frozen=True)
class ValidatedUpload:
    staged: StagedFile
    info: PackageInfo


def validate_upload(
    staged: StagedFile,
    limits: ValidationLimits,
    *,
    expected_sha256: str | None = None,
    expected_subdir: str | None = None,
) -> ValidatedUpload:
    if expected_sha256 is not None and expected_sha256.lower() != staged.sha256:
        raise ChecksumMismatchError(
            f"{staged.filename}: received bytes have sha256 {staged.sha256}, "
            f"not the expected {expected_sha256.lower()[:64]}",
            field="sha256",
        )
    info = inspect_package(
        staged.path,
        staged.filename,
        limits=limits,
        now_ms=now_ms(),
        expected_subdir=expected_subdir,
    )
    return ValidatedUpload(staged=staged, info=info)


def build_record(info: PackageInfo, staged: StagedFile, indexed_timestamp: int) -> dict[str, Any]:
    """The repodata record: the package's own ``index.json`` (without null fields, as conda-index
    and rattler-index write them) plus what the server computed."""
    record = {k: v for k, v in info.index.items() if v is not None}
    record.update(
        md5=staged.md5,
        sha256=staged.sha256,
        size=staged.size,
        indexed_timestamp=indexed_timestamp,
    )
    return record


def _timestamp_ms(index: dict[str, Any]) -> int | None:
    value = index.get("timestamp")
    if not isinstance(value, int | float):
        return None
    return int(value if value > 1e11 else value * 1000)


class UploadService:
    def __init__(self, session: Session, blobs: BlobStore) -> None:
        self.session = session
        self.blobs = blobs
        self.channels = ChannelService(session)

    def check_target(self, principal: Principal, channel_name: str) -> None:
        self.channels.get(principal, channel_name, Permission.ARTIFACT_WRITE)

    def record_all(
        self,
        principal: Principal,
        channel_name: str,
        uploads: list[ValidatedUpload],
        *,
        force: bool,
    ) -> list[Artifact]:
        """Record several validated uploads in this transaction (all or none)."""
        channel = self.channels.get(principal, channel_name, Permission.ARTIFACT_WRITE)
        # Lock the subdir rows first, in one order for every writer (no deadlocks).
        request_publications(self.session, [(channel.id, u.info.subdir) for u in uploads])
        return [
            self.record(principal, channel_name, u, force=force, request=False) for u in uploads
        ]

    def record(
        self,
        principal: Principal,
        channel_name: str,
        upload: ValidatedUpload,
        *,
        force: bool,
        request: bool = True,
    ) -> Artifact:
        channel = self.channels.get(principal, channel_name, Permission.ARTIFACT_WRITE)
        info, staged = upload.info, upload.staged
        existing = self.session.scalar(
            select(Artifact).where(
                Artifact.channel_id == channel.id,
                Artifact.subdir == info.subdir,
                Artifact.filename == info.filename,
            )
        )
        if existing is not None:
            if not force:
                raise ArtifactExistsError(
                    f"{info.subdir}/{info.filename} already exists in channel {channel.name!r}",
                    field="filename",
                )
            self.channels.get(principal, channel_name, Permission.CHANNEL_MANAGE)
            if existing.scan_status in QUARANTINE_STATES and not existing.servable:
                raise ArtifactHeldError(
                    f"{info.subdir}/{info.filename} is held by the scanners: a security admin "
                    "releases or deletes it (the quarantine queue)",
                    field="filename",
                )
            self.session.delete(existing)
            self.session.flush()
        self._ensure_blob_rows(upload)
        indexed = now_ms()
        artifact = Artifact(
            channel_id=channel.id,
            subdir=info.subdir,
            filename=info.filename,
            name=info.name,
            version=info.version,
            build=info.build,
            build_number=info.build_number,
            format=info.format,
            sha256=staged.sha256,
            md5=staged.md5,
            size=staged.size,
            record_json=encode_record(build_record(info, staged, indexed)),
            timestamp_ms=_timestamp_ms(info.index),
            indexed_timestamp=indexed,
            license=_short(info.index.get("license")),
            summary=_short(info.about.get("summary"), 4000),
            source=ArtifactSource.UPLOAD,
            uploaded_by_id=principal.user_id,
        )
        admit(self.session, artifact, channel, reason=ScanReason.UPLOAD, request=request)
        AuditLog(self.session).record(
            "artifact.upload",
            principal,
            Target("channel", channel.name, channel.id),
            details={
                "file": f"{info.subdir}/{info.filename}",
                "sha256": staged.sha256,
                "size": staged.size,
                "replaced": existing is not None,
            },
        )
        return artifact

    def _ensure_blob_rows(self, upload: ValidatedUpload) -> None:
        staged, info = upload.staged, upload.info
        blob = {"sha256": staged.sha256, "size": staged.size, "md5": staged.md5, "kind": "package"}
        insert_ignore(self.session, Blob, blob, ["sha256"])
        record_content(self.session, staged.sha256, info)


def record_content(session: Session, sha256: str, info: PackageInfo) -> None:
    """What we read from a package's ``info/``, once per sha256 (shared by every copy)."""
    content = {
        "sha256": sha256,
        "index_json": info.index,
        "about_json": info.about,
        "run_exports_json": info.run_exports,
        "paths_json": [
            {"path": p.path, "type": p.path_type, "size": p.size, "sha256": p.sha256}
            for p in info.paths
        ],
        "link_scripts": info.link_scripts,
        "unpacked_size": info.unpacked_size,
        "vulns_mitigated": list(info.vulns_mitigated),
    }
    insert_ignore(session, PackageContent, content, ["sha256"])


def _short(value: object, limit: int = 256) -> str | None:
    return str(value)[:limit] if value else None
