"""The ``cve.zip`` file: its names, safe reading of uploaded zips, its manifest.

The safety rules are the one safe-zip reader's (:mod:`stockade.core.safezip`: names, links,
encryption, methods, duplicates, member counts and unpacked sizes, reads never past a member's
declared size); this module maps its refusals to :class:`BundleError` and
:class:`BundleTooLargeError`.
:func:`read_manifest` checks the manifest against the zip (format, version, every listed file
present with its size, nothing unlisted); :func:`verified` reads a file and checks its sha256.
The format is documented in ``docs/formats.md`` ("CVE bundle (cve.zip)").
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from stockade.core import safezip
from stockade.core.errors import InvalidInputError, TooLargeError

__all__ = [
    "ENRICHMENT",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "NAME_MAP",
    "BundleError",
    "BundleLimits",
    "BundleTooLargeError",
    "Manifest",
    "bundle_errors",
    "check_name",
    "members",
    "open_zip",
    "read_manifest",
    "read_member",
    "verified",
]

FORMAT = "stockade-cve-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ENRICHMENT = "enrichment.json"
NAME_MAP = "name_map.json"
CURATIONS = "curations.json"
_VULN_FILE = re.compile(r"^vulnerabilities/[A-Za-z0-9._-]+\.(jsonl|json)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BundleError(InvalidInputError):
    """A bundle or feed zip that is unsafe or broken; ``member`` names the file when known."""

    code = "vulns:bad-bundle"
    title = "Invalid CVE bundle"

    def __init__(self, detail: str, *, member: str | None = None) -> None:
        super().__init__(f"{safezip.shown(member)}: {detail}" if member else detail)
        if member is not None:
            self.extra["member"] = member


def listed_in(data: bytes, member: str, key: str) -> list[Any]:
    """The list under ``key`` of a JSON member (``{"rows": [...]}``), or a :class:`BundleError`."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"not JSON: {exc}", member=member) from None
    listed = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        raise BundleError(f"needs a {key!r} list", member=member)
    return listed


class BundleTooLargeError(TooLargeError):
    code = "vulns:bundle-too-large"
    title = "CVE bundle too large"


@dataclass(frozen=True)
class BundleLimits(safezip.ZipLimits):
    """The caps of :func:`members` (those of :class:`~stockade.core.safezip.ZipLimits`)."""


@contextmanager
def bundle_errors() -> Iterator[None]:
    """The safe-zip reader's refusals as :class:`BundleError` or :class:`BundleTooLargeError`."""
    try:
        yield
    except safezip.UnsafeZipError as exc:
        if exc.too_large:
            raise BundleTooLargeError(exc.detail, member=exc.member) from None
        raise BundleError(exc.problem, member=exc.member) from None


def check_name(name: str) -> None:
    """Refuse a member name that could leave the extraction folder or mean two things."""
    problem = safezip.path_problem(name)
    if problem is not None:
        raise BundleError(f"unsafe member name: it {problem.detail}", member=name)


def members(archive: zipfile.ZipFile, limits: BundleLimits) -> dict[str, zipfile.ZipInfo]:
    """The files of a zip by name, after the checks of :func:`stockade.core.safezip.safe_members`."""
    with bundle_errors():
        return safezip.safe_members(archive, limits)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, never more than it declares."""
    with bundle_errors():
        return b"".join(safezip.iter_member(archive, info))


def open_zip(source: Path | IO[bytes], limits: BundleLimits | None = None) -> zipfile.ZipFile:
    """``source`` opened as a zip (with ``limits``, its declared entry count checked first)."""
    with bundle_errors():
        return safezip.open_zip(source, limits)


# ----------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Manifest:
    files: dict[str, tuple[str, int]]  # path -> (sha256, size)
    created: str
    producer: str


def read_manifest(archive: zipfile.ZipFile, found: dict[str, zipfile.ZipInfo]) -> Manifest:
    info = found.get(MANIFEST)
    if info is None:
        raise BundleError("no manifest.json: not a Stockade CVE bundle")
    try:
        doc = orjson.loads(read_member(archive, info))
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"not JSON: {exc}", member=MANIFEST) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(f"'format' must be {FORMAT!r}", member=MANIFEST)
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"format_version {str(version)[:20]} is not supported (this Stockade reads "
            f"{FORMAT_VERSION})",
            member=MANIFEST,
        )
    listed = doc.get("files")
    if not isinstance(listed, dict):
        raise BundleError("'files' must map paths to {sha256, size}", member=MANIFEST)
    files: dict[str, tuple[str, int]] = {}
    for path, meta in listed.items():
        check_name(path)
        if not (_VULN_FILE.match(path) or path in (ENRICHMENT, NAME_MAP, CURATIONS)):
            raise BundleError("not a file a CVE bundle holds", member=path)
        sha = meta.get("sha256") if isinstance(meta, dict) else None
        size = meta.get("size") if isinstance(meta, dict) else None
        if not isinstance(sha, str) or not _SHA256.match(sha) or not isinstance(size, int):
            raise BundleError(f"files[{path!r}] needs a sha256 and a size", member=MANIFEST)
        info = found.get(path)
        if info is None:
            raise BundleError("listed in the manifest but missing from the zip", member=path)
        if info.file_size != size:
            raise BundleError(f"{info.file_size} bytes, the manifest says {size}", member=path)
        files[path] = (sha, size)
    extra = sorted(set(found) - set(files) - {MANIFEST})
    if extra:
        raise BundleError("in the zip but not listed in the manifest", member=extra[0])
    return Manifest(files, str(doc.get("created", "")), str(doc.get("producer", "")))


def verified(
    archive: zipfile.ZipFile, found: dict[str, zipfile.ZipInfo], manifest: Manifest, path: str
) -> bytes:
    data = read_member(archive, found[path])
    if hashlib.sha256(data).hexdigest() != manifest.files[path][0]:
        raise BundleError("sha256 differs from the manifest", member=path)
    return data
