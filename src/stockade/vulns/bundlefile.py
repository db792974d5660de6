"""The ``cve.zip`` file: its names, safe reading of uploaded zips, its manifest.

:func:`members` refuses, before anything is read: absolute names, ``..`` or empty parts,
backslashes and drive letters, symbolic links, encrypted members, members compressed other than
stored or deflate, a name present twice, more than ``max_members`` members, a member above
``max_member`` or a total above ``max_total`` bytes unpacked (zip bombs). :func:`read_member` never
returns more bytes than a member declares, and turns any failure to decompress into
:class:`BundleError`.
:func:`read_manifest` checks the manifest against the zip (format, version, every listed file
present with its size, nothing unlisted); :func:`verified` reads a file and checks its sha256.
The format is documented in ``docs/formats.md`` ("CVE bundle (cve.zip)").
"""

from __future__ import annotations

import hashlib
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

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

_DRIVE = re.compile(r"^[A-Za-z]:")
_READ = 1 << 20
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_OTHER_METHODS = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "deflate64"}


class BundleError(InvalidInputError):
    """A bundle or feed zip that is unsafe or broken; ``member`` names the file when known."""

    code = "vulns:bad-bundle"
    title = "Invalid CVE bundle"

    def __init__(self, detail: str, *, member: str | None = None) -> None:
        super().__init__(f"{member}: {detail}" if member else detail)
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
class BundleLimits:
    max_members: int = 500_000
    max_total: int = 16 * 1024**3  # unpacked bytes of every member together
    max_member: int = 512 * 1024**2  # one member is read whole


def check_name(name: str) -> None:
    """Refuse a member name that could leave the extraction folder or mean two things."""
    parts = name.rstrip("/").split("/")
    if (
        not name
        or len(name) > 1024
        or name.startswith("/")
        or "\\" in name
        or _DRIVE.match(name)
        or any(p in ("", ".", "..") for p in parts)
        or not name.isprintable()
    ):
        raise BundleError(
            "unsafe member name (absolute, '..', backslash or empty part)", member=name
        )


def members(archive: zipfile.ZipFile, limits: BundleLimits) -> dict[str, zipfile.ZipInfo]:
    """The files of a zip by name, after the safety checks of the module docstring."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise BundleTooLargeError(f"the zip has {len(infos)} members, over {limits.max_members}")
    found: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        check_name(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise BundleError("symbolic links are refused", member=info.filename)
        if info.flag_bits & 0x1:
            raise BundleError("encrypted members are refused", member=info.filename)
        if info.compress_type not in _METHODS:
            method = _OTHER_METHODS.get(info.compress_type, f"method {info.compress_type}")
            raise BundleError(
                f"compressed with {method}: only stored and deflate members are accepted",
                member=info.filename,
            )
        if info.is_dir():
            continue
        if info.filename in found:
            raise BundleError("the zip holds this name twice", member=info.filename)
        if info.file_size > limits.max_member:
            raise BundleTooLargeError(
                f"{info.filename}: {info.file_size} bytes unpacked, over {limits.max_member}",
                member=info.filename,
            )
        total += info.file_size
        if total > limits.max_total:
            raise BundleTooLargeError(
                f"the zip unpacks to more than {limits.max_total} bytes", member=info.filename
            )
        found[info.filename] = info
    return found


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, never more than it declares."""
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as fh:
            while block := fh.read(_READ):
                size += len(block)
                if size > info.file_size:
                    raise BundleError("more bytes than the zip declares", member=info.filename)
                chunks.append(block)
    except BundleError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to unpack untrusted bytes is the zip's
        raise BundleError(
            f"cannot be read ({exc.__class__.__name__}: {exc})", member=info.filename
        ) from None
    return b"".join(chunks)


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise BundleError(f"not a zip file: {exc}") from None


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
