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
from stockade.channels.intake import ScanReason, admit_many
from stockade.channels.models import Artifact, Channel, PackageContent
from stockade.channels.publishing import request_publications
from stockade.channels.scanstate import (
    QUARANTINE_STATES,
    ArtifactSource,
    ScanStatus,
    is_servable,
)
from stockade.channels.service import ChannelService
from stockade.conda.archive import PackageInfo, ValidationLimits, inspect_package
from stockade.conda.repodata import encode_record
from stockade.core.clock import now_ms
from stockade.core.errors import StockadeError
from stockade.db.upsert import insert_ignore, insert_ignore_many
from stockade.storage.interfaces import BlobStore
from stockade.storage.models import Blob
from stockade.storage.staging import StagedFile


@dataclass(frozen=True)
class ValidatedUpload:
    staged: StagedFile
    info: PackageInfo


@dataclass(frozen=True)
class Refusal:
    """A file of a batch that was not recorded, and why (the others were)."""

    staged: StagedFile
    error: StockadeError

    @property
    def filename(self) -> str:
        return self.staged.filename


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
        recorded, refused = self.record_each(principal, channel_name, uploads, force=force)
        if refused:
            raise refused[0].error
        return recorded

    def record_each(
        self,
        principal: Principal,
        channel_name: str,
        uploads: list[ValidatedUpload],
        *,
        force: bool,
    ) -> tuple[list[Artifact], list[Refusal]]:
        """Record, in this transaction, each upload that may enter (the artifacts in the order of
        ``uploads``); name why each other one may not (it exists, the scanners hold it, it was
        sent twice). One permission check, one
        lookup of the files already there, one flush for the batch."""
        channel = self.channels.get(principal, channel_name, Permission.ARTIFACT_WRITE)
        existing = self._existing(channel.id, uploads)
        accepted: list[tuple[ValidatedUpload, Artifact | None]] = []
        refused: list[Refusal] = []
        seen: set[tuple[str, str]] = set()
        for upload in uploads:
            key = (upload.info.subdir, upload.info.filename)
            try:
                if key in seen:
                    raise ArtifactExistsError(
                        f"{key[0]}/{key[1]} is sent twice in this request", field="filename"
                    )
                self._may_replace(principal, channel, existing.get(key), upload, force=force)
            except StockadeError as exc:
                refused.append(Refusal(upload.staged, exc))
                continue
            seen.add(key)
            accepted.append((upload, existing.get(key)))
        if not accepted:
            return [], refused
        # What is served changes only if the new files are served before their verdict or a
        # served file is replaced; else the verdict asks for the publication (one per file
        # batch less to build). Lock those subdir rows first, in one order (no deadlocks).
        serves_now = is_servable(ScanStatus.PENDING, channel, ArtifactSource.UPLOAD)
        request_publications(
            self.session,
            sorted(
                {
                    (channel.id, u.info.subdir)
                    for u, old in accepted
                    if serves_now or (old is not None and old.servable)
                }
            ),
        )
        replaced = [old for _, old in accepted if old is not None]
        for row in replaced:
            self.session.delete(row)
        if replaced:
            self.session.flush()
        self._ensure_blob_rows([u for u, _ in accepted])
        artifacts = [self._artifact(principal, channel, u) for u, _ in accepted]
        admit_many(self.session, artifacts, channel, reason=ScanReason.UPLOAD)
        audit = AuditLog(self.session)
        for upload, old in accepted:
            self._audit(audit, principal, channel, upload, replaced=old is not None)
        return artifacts, refused

    def _existing(
        self, channel_id: int, uploads: list[ValidatedUpload]
    ) -> dict[tuple[str, str], Artifact]:
        subdirs = {u.info.subdir for u in uploads}
        names = {u.info.filename for u in uploads}
        rows = self.session.scalars(
            select(Artifact).where(
                Artifact.channel_id == channel_id,
                Artifact.subdir.in_(subdirs),
                Artifact.filename.in_(names),
            )
        )
        return {(a.subdir, a.filename): a for a in rows}

    def _may_replace(
        self,
        principal: Principal,
        channel: Channel,
        existing: Artifact | None,
        upload: ValidatedUpload,
        *,
        force: bool,
    ) -> None:
        if existing is None:
            return
        where = f"{upload.info.subdir}/{upload.info.filename}"
        if not force:
            raise ArtifactExistsError(
                f"{where} already exists in channel {channel.name!r}", field="filename"
            )
        self.channels.get(principal, channel.name, Permission.CHANNEL_MANAGE)
        if existing.scan_status in QUARANTINE_STATES and not existing.servable:
            raise ArtifactHeldError(
                f"{where} is held by the scanners: a security admin "
                "releases or deletes it (the quarantine queue)",
                field="filename",
            )

    def _artifact(
        self, principal: Principal, channel: Channel, upload: ValidatedUpload
    ) -> Artifact:
        info, staged = upload.info, upload.staged
        indexed = now_ms()
        return Artifact(
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

    @staticmethod
    def _audit(
        audit: AuditLog,
        principal: Principal,
        channel: Channel,
        upload: ValidatedUpload,
        *,
        replaced: bool,
    ) -> None:
        info, staged = upload.info, upload.staged
        audit.record(
            "artifact.upload",
            principal,
            Target("channel", channel.name, channel.id),
            details={
                "file": f"{info.subdir}/{info.filename}",
                "sha256": staged.sha256,
                "size": staged.size,
                "replaced": replaced,
            },
        )

    def _ensure_blob_rows(self, uploads: list[ValidatedUpload]) -> None:
        blobs: dict[str, dict[str, Any]] = {}
        contents: dict[str, dict[str, Any]] = {}
        for upload in uploads:
            staged = upload.staged
            blobs[staged.sha256] = {
                "sha256": staged.sha256,
                "size": staged.size,
                "md5": staged.md5,
                "kind": "package",
            }
            contents[staged.sha256] = content_row(staged.sha256, upload.info)
        insert_ignore_many(self.session, Blob, list(blobs.values()), ["sha256"])
        insert_ignore_many(self.session, PackageContent, list(contents.values()), ["sha256"])


def record_content(session: Session, sha256: str, info: PackageInfo) -> None:
    """What we read from a package's ``info/``, once per sha256 (shared by every copy)."""
    insert_ignore(session, PackageContent, content_row(sha256, info), ["sha256"])


def content_row(sha256: str, info: PackageInfo) -> dict[str, Any]:
    return {
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


def _short(value: object, limit: int = 256) -> str | None:
    return str(value)[:limit] if value else None
