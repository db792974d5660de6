"""Repodata patches: hot-fixes stored as rows and re-applied on every publication."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Channel, RepodataPatch
from stockade.channels.publishing import request_publication
from stockade.channels.service import ChannelService
from stockade.conda.names import validate_subdir
from stockade.conda.patches import PatchInstructions
from stockade.core.errors import InvalidInputError

PROTECTED_FIELDS = {"sha256", "md5", "size", "name", "version", "build", "subdir"}


def instructions_for(patches: list[RepodataPatch]) -> PatchInstructions:
    """Turn a subdir's patch rows into patch instructions (the ``patch_instructions.json`` model)."""
    doc: dict[str, Any] = {
        "patch_instructions_version": 1,
        "packages": {},
        "packages.conda": {},
        "revoke": [],
        "remove": [],
    }
    for patch in patches:
        key = "packages.conda" if patch.filename.endswith(".conda") else "packages"
        if patch.changes:
            doc[key][patch.filename] = patch.changes
        if patch.revoked:
            doc["revoke"].append(patch.filename)
        if patch.removed:
            doc["remove"].append(patch.filename)
    return PatchInstructions.from_json(doc)


def _state(patch: RepodataPatch) -> dict[str, Any]:
    return {"changes": patch.changes, "revoked": patch.revoked, "removed": patch.removed}


def _target(channel: Channel, subdir: str, filename: str, patch_id: int) -> Target:
    return Target("patch", f"{channel.name}/{subdir}/{filename}", patch_id)


class PatchService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.channels = ChannelService(session)

    def list(self, channel: Channel, subdir: str | None = None) -> list[RepodataPatch]:
        query = select(RepodataPatch).where(RepodataPatch.channel_id == channel.id)
        if subdir:
            query = query.where(RepodataPatch.subdir == subdir)
        return list(self.session.scalars(query.order_by(RepodataPatch.filename)).all())

    def set(
        self,
        principal: Principal,
        channel_name: str,
        subdir: str,
        filename: str,
        *,
        changes: dict[str, Any] | None = None,
        revoked: bool = False,
        removed: bool = False,
    ) -> RepodataPatch:
        """Create or replace the patch of one file; every value is checked (``patch:invalid``,
        naming the field) before anything is stored. Audited with before and after."""
        channel = self.channels.get(principal, channel_name, Permission.ARTIFACT_WRITE)
        changes = changes or {}
        bad = PROTECTED_FIELDS & changes.keys()
        if bad:
            raise InvalidInputError(
                f"a patch may not change {', '.join(sorted(bad))}",
                code="patch:protected-field",
                field="changes",
            )
        validate_subdir(subdir)
        if not filename.endswith((".conda", ".tar.bz2")):
            raise InvalidInputError(
                f"{filename!r} is not a package filename", code="patch:filename", field="filename"
            )
        candidate = RepodataPatch(
            filename=filename, changes=changes, revoked=revoked, removed=removed
        )
        instructions_for([candidate])  # validates shape, types and ranges before storing
        patch = self._find(channel, subdir, filename)
        before = _state(patch) if patch is not None else None
        if patch is None:
            patch = RepodataPatch(channel_id=channel.id, subdir=subdir, filename=filename)
            self.session.add(patch)
        patch.changes, patch.revoked, patch.removed = changes, revoked, removed
        patch.created_by_id = principal.user_id
        request_publication(self.session, channel.id, subdir)
        self.session.flush()
        AuditLog(self.session).record(
            "patch.update" if before is not None else "patch.create",
            principal,
            _target(channel, subdir, filename, patch.id),
            before=before,
            after=_state(patch),
        )
        return patch

    def clear(self, principal: Principal, channel_name: str, subdir: str, filename: str) -> None:
        channel = self.channels.get(principal, channel_name, Permission.ARTIFACT_WRITE)
        patch = self._find(channel, subdir, filename)
        if patch is None:
            return
        AuditLog(self.session).record(
            "patch.delete",
            principal,
            _target(channel, subdir, filename, patch.id),
            before=_state(patch),
        )
        self.session.execute(delete(RepodataPatch).where(RepodataPatch.id == patch.id))
        request_publication(self.session, channel.id, subdir)

    def _find(self, channel: Channel, subdir: str, filename: str) -> RepodataPatch | None:
        return self.session.scalar(
            select(RepodataPatch).where(
                RepodataPatch.channel_id == channel.id,
                RepodataPatch.subdir == subdir,
                RepodataPatch.filename == filename,
            )
        )

    def import_instructions(
        self, principal: Principal, channel_name: str, subdir: str, doc: dict[str, Any]
    ) -> int:
        """Store every entry of a ``patch_instructions.json`` document as a patch row."""
        instructions = PatchInstructions.from_json(doc)
        entries: dict[str, dict[str, Any]] = {}
        for filename, changes in {**instructions.packages, **instructions.packages_conda}.items():
            entries.setdefault(filename, {"changes": {}})["changes"] = dict(changes)
        for filename in instructions.revoke:
            entries.setdefault(filename, {})["revoked"] = True
        for filename in instructions.remove:
            entries.setdefault(filename, {})["removed"] = True
        for filename, entry in entries.items():
            self.set(principal, channel_name, subdir, filename, **entry)
        return len(entries)
