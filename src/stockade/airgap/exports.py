"""Making package bundles (SPEC §9): an export is planned and signed here; its bytes are then read
member by member (``member``), so a client writes the zip in constant memory and resumes an
interrupted copy where it stopped (``stockade airgap export``).

Needs ``mirror:manage`` and ``artifact:read`` on the channel. The manifest is signed with the
server's pkg_mgr key (content trust, ``signing/``); the chain (every root version and key_mgr)
travels in the bundle so the other side can verify from the root it trusts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.airgap.errors import BadExportRequestError, ExportFileGoneError, ExportNotFoundError
from stockade.airgap.exporting import SubdirExport, carried, export_subdir
from stockade.airgap.manifest import (
    MANIFEST,
    SIGNATURE,
    Manifest,
    SubdirEntry,
    manifest_bytes,
    new_bundle_id,
    package_path,
    repodata_path,
    signature_envelope,
    signature_message,
)
from stockade.airgap.models import AirgapEvent, AirgapExport
from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.channels.privacy import channel_ref
from stockade.conda.names import is_valid_subdir
from stockade.core.clock import utcnow
from stockade.settings import SigningSettings
from stockade.signing.chain import load_chain, metadata_file, require_chain
from stockade.signing.signers import open_signer
from stockade.storage.interfaces import BlobStore

LAST = "LAST"


def export_file_name(row: AirgapExport) -> str:
    """The bundle's file name as downloaded: ``conda_<channel>_airgap_<bundle id>.zip``."""
    channel = row.channel_name.replace("/", "_")
    return f"conda_{channel}_airgap_{row.bundle_id}.zip"


@dataclass(frozen=True)
class ExportRequest:
    channel: str
    subdirs: list[str] | None = None  # None: the subdirs the channel publishes
    since: str | None = None  # a bundle id, or LAST (the newest export of this channel)
    source: str = ""  # how the other side sees this server (informational)


@dataclass(frozen=True)
class MemberFile:
    """A member to send: its bytes are the blob ``sha256``, or ``data`` when given."""

    path: str
    sha256: str
    size: int
    data: bytes | None = None


class ExportService:
    def __init__(
        self, session: Session, blobs: BlobStore, signing: SigningSettings, data_dir: Path
    ) -> None:
        self.session = session
        self.blobs = blobs
        self.signing = signing
        self.data_dir = data_dir
        self.access = AccessService(session)

    # --------------------------------------------------------------------------- create

    def create(self, principal: Principal, request: ExportRequest) -> AirgapExport:
        self.access.require(principal, Permission.MIRROR_MANAGE)
        channel = self._channel(principal, request.channel)
        parent = self._parent(channel, request.since)
        subdirs = self._subdirs(channel, request.subdirs, parent)
        chain = require_chain(self.session)
        parent_covered = self._covered(parent) if parent else {}
        exports = [
            export_subdir(
                self.session, self.blobs, channel, s, parent_covered.get(s) if parent else None
            )
            for s in subdirs
        ]
        now = utcnow()
        bundle_id = new_bundle_id(now)
        files: dict[str, tuple[str, int]] = {}
        for export in exports:
            sha = self.blobs.put_bytes(export.repodata_zst)
            files[repodata_path(export.subdir)] = (sha, len(export.repodata_zst))
            covered = parent_covered.get(export.subdir) if parent else None
            for filename, meta in carried(export, covered).items():
                files[package_path(export.subdir, filename)] = meta
        manifest = Manifest(
            bundle_id=bundle_id,
            parent_id=parent.bundle_id if parent else None,
            created=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            source={"server": request.source or "stockade"},
            channel=channel.name,
            subdirs={e.subdir: SubdirEntry(repodata_path(e.subdir), **e.counts) for e in exports},
            files=files,
        )
        return self._store(principal, channel, manifest, exports, chain.pkg_mgr_keys)

    def _store(
        self,
        principal: Principal,
        channel: Channel,
        manifest: Manifest,
        exports: list[SubdirExport],
        keys: list[str],
    ) -> AirgapExport:
        data = manifest_bytes(manifest)
        signer = open_signer(self.signing, self.data_dir, keys)
        try:
            sig = signer.sign_many([signature_message(manifest.bundle_id, data)])[0]
            key = signer.public_key
        finally:
            signer.close()
        covered = {e.subdir: e.covered for e in exports}
        row = AirgapExport(
            bundle_id=manifest.bundle_id,
            parent_id=manifest.parent_id,
            channel_id=channel.id,
            channel_name=channel.name,
            subdirs=[e.subdir for e in exports],
            manifest_sha256=self.blobs.put_bytes(data),
            covered_sha256=self.blobs.put_bytes(orjson.dumps(covered)),
            signature=signature_envelope(manifest.bundle_id, data, key, sig),
            files=len(manifest.files),
            bytes=manifest.total_bytes,
            counts={
                "subdirs": {e.subdir: e.counts for e in exports},
                "signing": self._chain(),
                "repodata": {
                    p: v[0] for p, v in manifest.files.items() if p.startswith("repodata/")
                },
            },
            created_by=principal.user_id,
        )
        self.session.add(row)
        self.session.flush()
        AuditLog(self.session).record(
            AirgapEvent.EXPORT,
            principal,
            Target("channel", channel.name, channel.id),
            details={"bundle_id": row.bundle_id, "parent_id": row.parent_id, "files": row.files},
        )
        return row

    def _chain(self) -> dict[str, str]:
        """The trust chain as it is now: every root version and the current key_mgr."""
        chain = load_chain(self.session)
        assert chain is not None
        found: dict[str, str] = {}
        for version in range(1, chain.root_version + 1):
            body = metadata_file(self.session, f"{version}.root.json")
            if body is not None:
                found[f"signing/{version}.root.json"] = self.blobs.put_bytes(body)
        key_mgr = metadata_file(self.session, "key_mgr.json")
        if key_mgr is not None:
            found["signing/key_mgr.json"] = self.blobs.put_bytes(key_mgr)
        return found

    def _channel(self, principal: Principal, name: str) -> Channel:
        channel = self.session.scalar(select(Channel).where(Channel.name == name))
        if channel is None:
            raise BadExportRequestError(f"no channel {name!r}", code="airgap:no-channel")
        self.access.require_channel(
            principal, Permission.ARTIFACT_READ, channel_ref(channel, self.session)
        )
        return channel

    def _parent(self, channel: Channel, since: str | None) -> AirgapExport | None:
        if since is None:
            return None
        query = select(AirgapExport).where(AirgapExport.channel_id == channel.id)
        if since.upper() == LAST:
            parent = self.session.scalar(query.order_by(AirgapExport.id.desc()).limit(1))
            if parent is None:
                raise BadExportRequestError(
                    f"--since LAST: channel {channel.name!r} was never exported; make a full "
                    "bundle first",
                    code="airgap:no-parent",
                )
            return parent
        parent = self.session.scalar(query.where(AirgapExport.bundle_id == since))
        if parent is None:
            raise BadExportRequestError(
                f"no export {since[:60]!r} of channel {channel.name!r} was made here",
                code="airgap:no-parent",
            )
        return parent

    def _subdirs(
        self, channel: Channel, wanted: list[str] | None, parent: AirgapExport | None
    ) -> list[str]:
        if wanted is None:
            wanted = list(parent.subdirs) if parent else self._published_subdirs(channel)
        for subdir in wanted:
            if not is_valid_subdir(subdir):
                raise BadExportRequestError(f"{subdir[:40]!r} is not a subdir name")
        if parent is not None and set(wanted) - set(parent.subdirs):
            extra = ", ".join(sorted(set(wanted) - set(parent.subdirs)))
            raise BadExportRequestError(
                f"the parent bundle {parent.bundle_id} did not carry {extra}: make a full bundle",
                code="airgap:bad-export",
            )
        if not wanted:
            raise BadExportRequestError(f"channel {channel.name!r} publishes no subdir yet")
        return sorted(set(wanted))

    def _published_subdirs(self, channel: Channel) -> list[str]:
        return list(
            self.session.scalars(
                select(SubdirIndex.subdir).where(
                    SubdirIndex.channel_id == channel.id, SubdirIndex.repodata_sha256.is_not(None)
                )
            )
        )

    def _covered(self, parent: AirgapExport) -> dict[str, dict[str, list[str]]]:
        data: dict[str, dict[str, list[str]]] = orjson.loads(
            self.blobs.read_bytes(parent.covered_sha256)
        )
        return data

    # --------------------------------------------------------------------------- read

    def list_exports(self, principal: Principal, limit: int = 100) -> list[AirgapExport]:
        self.access.require(principal, Permission.MIRROR_READ)
        query = select(AirgapExport).order_by(AirgapExport.id.desc()).limit(limit)
        return list(self.session.scalars(query))

    def get(self, principal: Principal, bundle_id: str) -> AirgapExport:
        self.access.require(principal, Permission.MIRROR_MANAGE)
        row = self.session.scalar(select(AirgapExport).where(AirgapExport.bundle_id == bundle_id))
        if row is None:
            raise ExportNotFoundError(f"no export {bundle_id[:60]!r}")
        channel = self.session.get(Channel, row.channel_id)
        assert channel is not None
        self.access.require_channel(
            principal, Permission.ARTIFACT_READ, channel_ref(channel, self.session)
        )
        return row

    def members(self, row: AirgapExport) -> list[str]:
        """The members written before the files, in order."""
        return [MANIFEST, SIGNATURE, *sorted(row.counts.get("signing", {}))]

    def member(
        self, principal: Principal, bundle_id: str, path: str, sha256: str | None = None
    ) -> MemberFile:
        """One member, for a client writing the bundle. A package file is asked for with
        the sha256 its manifest lists, and must still be servable: one quarantined or removed
        since the export was planned is refused (409)."""
        row = self.get(principal, bundle_id)
        if path == SIGNATURE:
            data = row.signature
            return MemberFile(path, hashlib.sha256(data).hexdigest(), len(data), data)
        known = {MANIFEST: row.manifest_sha256, **row.counts.get("signing", {})}
        known.update(row.counts.get("repodata", {}))
        sha = known.get(path) or self._package(row, path, sha256)
        return MemberFile(path, sha, self.blobs.size(sha))

    def _package(self, row: AirgapExport, path: str, sha256: str | None) -> str:
        parts = path.split("/")
        if len(parts) != 3 or parts[0] != "pkgs" or parts[1] not in row.subdirs:
            raise ExportNotFoundError(f"{path[:200]!r} is not a member of bundle {row.bundle_id}")
        if sha256 is None:
            raise BadExportRequestError("a package member is asked for with its sha256")
        still = self.session.scalar(
            select(Artifact.id).where(
                Artifact.channel_id == row.channel_id,
                Artifact.subdir == parts[1],
                Artifact.filename == parts[2],
                Artifact.sha256 == sha256,
                Artifact.servable.is_(True),  # the one rule (channels/scanstate.py)
            )
        )
        if still is None or not self.blobs.exists(sha256):
            raise ExportFileGoneError(
                f"{parts[1]}/{parts[2]} is no longer served by {row.channel_name!r} "
                "(quarantined or removed since the export was planned): make a new export"
            )
        return sha256
