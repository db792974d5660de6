"""Placing a bundle into the air-gap folder by API or CLI (``stockade airgap import``).

A bundle sent to the server (``POST /api/v1/airgap/bundles``) is staged outside the folder, then
checked: a package bundle must open (``airgap.bundle.open_bundle``: the safe-zip rules, the
manifest, its members), a ``cve.zip`` must be a safe zip whose manifest names the CVE bundle
format; anything else is refused with the reason and nothing reaches the folder. A good one is
moved in under a temporary name that no run takes (not ``*.zip``), then renamed: a run sees the
whole file or nothing. Its signature is checked by the run that applies it (with the mirror's
trust), as for a bundle copied in by hand.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy.orm import Session

from stockade.airgap.bundle import open_bundle
from stockade.airgap.errors import BundleRefusedError
from stockade.airgap.folder import CVE_FORMAT, ensure
from stockade.airgap.manifest import FORMAT, MANIFEST, MAX_MANIFEST_BYTES, Manifest
from stockade.airgap.models import BundleKind
from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.core.errors import InvalidInputError, UnavailableError
from stockade.core.safezip import UnsafeZipError, ZipLimits, open_zip, read_member, safe_members
from stockade.settings import AirgapSettings

#: A name given to a bundle: a plain file name ending in .zip (no folder, not hidden).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,195}\.zip", re.IGNORECASE)
_INCOMING = ".incoming-"


@dataclass(frozen=True)
class Checked:
    kind: BundleKind
    manifest: Manifest | None = None  # a package bundle's


@dataclass(frozen=True)
class Placed:
    path: Path
    kind: BundleKind
    size: int
    manifest: Manifest | None = None

    @property
    def channel(self) -> str | None:
        return self.manifest.channel if self.manifest else None


def require_import(session: Session, principal: Principal) -> None:
    """Placing bundles needs ``mirror:manage`` (checked before the body is read)."""
    AccessService(session).require(principal, Permission.MIRROR_MANAGE)


def limits_of(settings: AirgapSettings) -> ZipLimits:
    return ZipLimits(settings.max_members, settings.max_bytes, settings.max_bytes)


def accept(staged: Path, settings: AirgapSettings, data_dir: Path, name: str | None) -> Placed:
    """Check the ``staged`` file and place it into the air-gap folder as ``name`` (default: the
    name an export gives it); BundleRefusedError or InvalidInputError, with nothing placed."""
    checked = check_bundle(staged, limits_of(settings))
    target = target_name(name, checked)
    return place(staged, settings.folder_in(data_dir), target, checked, settings.settle_s)


def check_bundle(path: Path, limits: ZipLimits) -> Checked:
    """What the zip at ``path`` is (a package bundle or a ``cve.zip``); BundleRefusedError
    naming why it is neither."""
    fmt = _format(path, limits)
    if fmt == CVE_FORMAT:
        return Checked(BundleKind.CVE)
    if fmt != FORMAT:
        raise BundleRefusedError(
            f"its manifest.json names the format {fmt[:80]!r}: not {FORMAT!r} (a package "
            f"bundle) nor {CVE_FORMAT!r} (a cve.zip)",
            code="airgap:not-a-bundle",
        )
    bundle = open_bundle(path, limits)
    bundle.close()
    return Checked(BundleKind.PACKAGES, bundle.manifest)


def _format(path: Path, limits: ZipLimits) -> str:
    try:
        with open_zip(path, limits) as archive:
            members = safe_members(archive, limits)
            info = members.get(MANIFEST)
            if info is None:
                raise BundleRefusedError(
                    "no manifest.json: not a Stockade package bundle nor a cve.zip",
                    code="airgap:not-a-bundle",
                )
            data = read_member(archive, info, max_size=MAX_MANIFEST_BYTES)
    except UnsafeZipError as exc:
        code = exc.code.replace("zip:", "airgap:zip-")
        raise BundleRefusedError(exc.problem, code=code, member=exc.member) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleRefusedError(f"not a readable zip: {exc}", code="airgap:zip-not-zip") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if not isinstance(fmt, str):
        raise BundleRefusedError(
            "manifest.json is not a JSON object naming its format",
            code="airgap:not-a-bundle",
            member=MANIFEST,
        )
    return fmt


def target_name(given: str | None, checked: Checked) -> str:
    """The name the bundle gets in the folder: the one given, else what an export names it."""
    if given:
        if not _NAME.fullmatch(given):
            raise InvalidInputError(
                "the bundle's name must be a plain file name ending in .zip (letters, digits, "
                "'.', '_', '+', '-'; at most 200 characters)",
                code="airgap:bad-name",
                field="name",
            )
        return given
    if checked.manifest is None:
        return "cve.zip"
    channel = checked.manifest.channel.replace("/", "_")
    return f"conda_{channel}_airgap_{checked.manifest.bundle_id}.zip"


def place(staged: Path, folder: Path, name: str, checked: Checked, settle_s: float) -> Placed:
    """Move the checked ``staged`` file into ``folder`` as ``name`` (or ``name.N.zip`` when that
    is taken): under a temporary name first, then linked or renamed in whole."""
    try:
        ensure(folder)
        incoming = _move_in(staged, folder)
        try:
            # Complete once it is in: dated back past settle_s so that a run asked for now takes it.
            stat = incoming.stat()
            os.utime(incoming, (stat.st_atime, time.time() - settle_s - 1))
            final = _publish(incoming, folder, name)
        finally:
            incoming.unlink(missing_ok=True)
        _sync_dir(folder)
    except OSError as exc:
        raise UnavailableError(
            f"the air-gap folder cannot be written: {exc.strerror or exc}",
            code="airgap:folder-unwritable",
        ) from None
    return Placed(final, checked.kind, stat.st_size, checked.manifest)


def _move_in(staged: Path, folder: Path) -> Path:
    incoming = folder / f"{_INCOMING}{secrets.token_hex(8)}.part"
    try:
        os.replace(staged, incoming)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        try:  # the staging folder is on another file system: copy
            shutil.copyfile(staged, incoming)
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
    with incoming.open("rb") as stream:
        os.fsync(stream.fileno())
    return incoming


def _publish(incoming: Path, folder: Path, name: str) -> Path:
    stem, _, ext = name.rpartition(".")
    for counter in range(10_000):
        target = folder / (name if counter == 0 else f"{stem}.{counter}.{ext}")
        try:
            os.link(incoming, target)  # never replaces a file already there
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if target.exists():
                continue
            os.replace(incoming, target)  # no hard links on this file system
        return target
    raise FileExistsError(errno.EEXIST, f"too many files named {name} in the folder")


def _sync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def record_import(session: Session, principal: Principal, placed: Placed) -> None:
    """The audit event of a bundle placed in the folder by API."""
    manifest = placed.manifest
    AuditLog(session).record(
        "airgap:import",
        principal,
        Target("airgap-bundle", placed.path.name),
        details={
            "kind": str(placed.kind),
            "size": placed.size,
            "bundle_id": manifest.bundle_id if manifest else None,
            "parent_id": manifest.parent_id if manifest else None,
            "channel": manifest.channel if manifest else None,
        },
    )
