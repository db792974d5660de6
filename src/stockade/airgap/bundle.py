"""Reading a package bundle from another network (:func:`open_bundle`).

Before anything is taken from it: the zip passes the one safe-zip reader (``core.safezip``:
names, links, encryption, methods, duplicates, member and size limits), the manifest parses
(``airgap.manifest``), every listed file is in the zip with its size and nothing else is, and the
manifest's signature verifies with a trusted key: a key of ``[airgap] trusted_keys``, or a
pkg_mgr key that the bundle's own key_mgr delegates to, reached by root updates from the root the
mirror trusts. Each file's sha256 is then checked while it is read (:meth:`OpenBundle.stream`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Final

import orjson

from stockade.airgap.errors import BundleRefusedError
from stockade.airgap.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    SIGNATURE,
    Manifest,
    is_signing_member,
    parse_manifest,
    verify_signature,
)
from stockade.core.safezip import (
    UnsafeZipError,
    ZipLimits,
    iter_member,
    open_zip,
    read_member,
    safe_members,
)
from stockade.signing.format import MAX_METADATA_BYTES, delegation
from stockade.signing.upstream import establish_trust, fingerprint

_PEEK_BYTES: Final = 64 << 10
_FORMAT_FIRST: Final = re.compile(rb'\A\s*\{\s*"format"\s*:\s*"([A-Za-z0-9._-]{1,64})"')


@dataclass(frozen=True)
class BundleTrust:
    """What a bundle's signature is checked with."""

    keys: tuple[str, ...] = ()  # [airgap] trusted_keys
    root: bytes | None = None  # a trusted root (the exporting server's N.root.json)

    @property
    def configured(self) -> bool:
        return bool(self.keys) or self.root is not None


@dataclass
class OpenBundle:
    path: Path
    archive: zipfile.ZipFile
    found: dict[str, zipfile.ZipInfo]
    manifest: Manifest
    manifest_data: bytes = b""
    signed_by: list[str] = field(default_factory=list)
    file: IO[bytes] | None = None  # what the archive reads (opened without following links)

    def close(self) -> None:
        self.archive.close()
        if self.file is not None:
            self.file.close()

    def signing_member(self, name: str) -> bytes | None:
        """``N.root.json`` or ``key_mgr.json`` as the bundle carries them (a trust ``Fetch``)."""
        info = self.found.get(f"signing/{name}")
        if info is None:
            return None
        return _read(self.archive, info, MAX_METADATA_BYTES)

    def has(self, path: str) -> bool:
        return path in self.manifest.files

    def stream(self, path: str, *, checked_by_caller: bool = False) -> Iterator[bytes]:
        """A listed member's bytes; BundleRefusedError at the end when they are not the ones the
        manifest lists (the caller discards what it received). ``checked_by_caller``: the caller
        hashes them itself against the sha256 the manifest lists (one pass, not two)."""
        sha, _ = self.manifest.files[path]
        digest = None if checked_by_caller else hashlib.sha256()
        try:
            for block in iter_member(self.archive, self.found[path]):
                if digest is not None:
                    digest.update(block)
                yield block
        except UnsafeZipError as exc:
            raise _refused(exc) from None
        if digest is not None and digest.hexdigest() != sha:
            raise BundleRefusedError(
                "sha256 differs from the manifest", code="airgap:bad-file", member=path
            )

    def read(self, path: str) -> bytes:
        return b"".join(self.stream(path))


def _refused(exc: UnsafeZipError) -> BundleRefusedError:
    return BundleRefusedError(
        exc.problem, code=exc.code.replace("zip:", "airgap:zip-"), member=exc.member
    )


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    try:
        return read_member(archive, info, max_size=cap)
    except UnsafeZipError as exc:
        raise _refused(exc) from None


def peek_format(path: Path) -> str | None:
    """The ``format`` its manifest names (a package or a CVE bundle), None when unreadable.
    Only the manifest's head is read (every run and status call peeks at every zip): the
    ``format`` key written first, or a whole manifest of at most that size."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(MANIFEST) as stream:
            head = stream.read(_PEEK_BYTES + 1)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, RuntimeError):
        return None
    first = _FORMAT_FIRST.match(head)
    if first is not None:
        return first.group(1).decode()
    try:
        doc = orjson.loads(head) if len(head) <= _PEEK_BYTES else None
    except orjson.JSONDecodeError:
        return None
    value = doc.get("format") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def open_bundle(path: Path, limits: ZipLimits) -> OpenBundle:
    """The bundle at ``path`` with its zip and manifest checked (not its signature yet:
    :func:`verify`); BundleRefusedError naming why not."""
    stream = _open_file(path)
    try:
        archive = open_zip(stream, limits)  # the entry count checked before zipfile reads them
    except UnsafeZipError as exc:
        stream.close()
        raise _refused(exc) from None
    try:
        found = _safe(archive, limits)
        _stored_only(found)
        if MANIFEST not in found:
            raise BundleRefusedError("no manifest.json: not a Stockade package bundle")
        data = _read(archive, found[MANIFEST], MAX_MANIFEST_BYTES)
        manifest = parse_manifest(data)
        _check_members(found, manifest)
        return OpenBundle(path, archive, found, manifest, manifest_data=data, file=stream)
    except BaseException:
        archive.close()
        stream.close()
        raise


def _open_file(path: Path) -> IO[bytes]:
    """The file at ``path`` itself, open for reading: not a link swapped in after the folder was
    listed (O_NOFOLLOW), nor a pipe or device (which could block the run)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise BundleRefusedError(f"cannot be opened: {why}", code="airgap:unreadable") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleRefusedError("not a regular file", code="airgap:unreadable")
    return os.fdopen(fd, "rb")


def _safe(archive: zipfile.ZipFile, limits: ZipLimits) -> dict[str, zipfile.ZipInfo]:
    try:
        return safe_members(archive, limits)
    except UnsafeZipError as exc:
        raise _refused(exc) from None


def _stored_only(found: dict[str, zipfile.ZipInfo]) -> None:
    """A bundle's members are stored (what the export writes): nothing from another network is
    inflated, so no member can unpack to more than the bytes the folder holds (zip bombs)."""
    for name, info in found.items():
        if info.compress_type != zipfile.ZIP_STORED:
            raise BundleRefusedError(
                "compressed: a package bundle holds stored members only (as "
                "'stockade airgap export' writes them); do not repack it",
                code="airgap:zip-method",
                member=name,
            )


def verify(bundle: OpenBundle, trust: BundleTrust, now: datetime) -> None:
    """The manifest's signature, by a trusted key; BundleRefusedError otherwise."""
    if SIGNATURE not in bundle.found:
        raise BundleRefusedError(
            "the bundle is not signed", code="airgap:unsigned", member=SIGNATURE
        )
    keys = _trusted_keys(bundle, trust, now)
    envelope = _read(bundle.archive, bundle.found[SIGNATURE], MAX_SIGNATURE_BYTES)
    signers = verify_signature(bundle.manifest, bundle.manifest_data, envelope, keys)
    if not signers:
        raise BundleRefusedError(
            "the manifest is not signed by a trusted key (trusted: "
            + ", ".join(fingerprint(k) for k in keys)
            + ")",
            code="airgap:untrusted",
            member=SIGNATURE,
        )
    bundle.signed_by = sorted(signers)


def _check_members(found: dict[str, zipfile.ZipInfo], manifest: Manifest) -> None:
    for path, (_, size) in manifest.files.items():
        info = found.get(path)
        if info is None:
            raise BundleRefusedError(
                "listed in the manifest but missing from the zip",
                code="airgap:missing",
                member=path,
            )
        if info.file_size != size:
            raise BundleRefusedError(
                f"{info.file_size} bytes, the manifest says {size}",
                code="airgap:bad-file",
                member=path,
            )
    for name in found:
        listed = name in manifest.files or name in (MANIFEST, SIGNATURE)
        if not listed and not is_signing_member(name):
            raise BundleRefusedError(
                "in the zip but not listed in the manifest", code="airgap:unlisted", member=name
            )


def _trusted_keys(bundle: OpenBundle, trust: BundleTrust, now: datetime) -> list[str]:
    if not trust.configured:
        raise BundleRefusedError(
            "no key is trusted for air-gap bundles: set [airgap] trusted_keys to the exporting "
            "server's pkg_mgr key, or give the mirror the exporting server's root as its "
            "trusted root",
            code="airgap:no-trusted-key",
        )
    keys = list(trust.keys)
    if trust.root is not None:
        established = establish_trust(trust.root, bundle.signing_member, now)
        if established.key_mgr is not None:
            keys += delegation(established.key_mgr, "pkg_mgr")[0]
        elif not keys:
            raise BundleRefusedError(
                f"the bundle's trust chain does not verify from the trusted root: "
                f"{established.problem}",
                code="airgap:untrusted",
            )
    return keys
