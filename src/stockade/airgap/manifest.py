"""The package bundle's manifest and its detached signature (``docs/formats.md``, "Package bundle").

A bundle is a zip64 of stored members:

- ``manifest.json``: ``{"format": "stockade-airgap-bundle", "format_version": 1, "bundle_id",
  "parent_id", "created", "source", "channel", "subdirs": {subdir: {"repodata", "records",
  "added", "changed", "removed"}}, "files": {path: {"sha256", "size"}}}``;
- ``manifest.sig``: a conda-content-trust envelope ``{"signed": {"type": "airgap-manifest",
  "bundle_id", "manifest_sha256"}, "signatures": {pkg_mgr_public_key: {"signature"}}}``: the
  exporting server's pkg_mgr key signs the canonical bytes of ``signed``, which names the sha256 of
  the manifest's bytes; the manifest names every other member's sha256;
- ``signing/N.root.json`` and ``signing/key_mgr.json``: the exporting server's trust chain, so a
  site that trusts its root (rather than a pkg_mgr key) can follow rotations;
- ``repodata/<subdir>/repodata.json.zst``: the subdir's records as the channel served them, every
  one of them (an incremental bundle carries whole repodata too: records removed are the ones
  missing from it);
- ``pkgs/<subdir>/<filename>``: the package files (an incremental bundle: only those its parent
  did not carry).

:func:`parse_manifest` checks every field (a bundle comes from another network) and raises
:class:`BundleRefusedError` naming what is wrong.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from stockade.airgap.errors import BundleRefusedError
from stockade.channels.naming import validate_channel_name
from stockade.conda.names import is_valid_subdir, split_extension
from stockade.core.errors import InvalidInputError
from stockade.core.safezip import shown
from stockade.signing.format import canonical, good_signers

FORMAT: Final = "stockade-airgap-bundle"
FORMAT_VERSION: Final = 1
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
SIGNATURE_TYPE: Final = "airgap-manifest"
MAX_MANIFEST_BYTES: Final = 1 << 30  # about 4 million files
MAX_SIGNATURE_BYTES: Final = 1 << 16
BUNDLE_ID_RE: Final = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_FILENAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+!-]{0,210}")  # _r-mutex, _openmp_mutex
_SIGNING_MEMBER: Final = re.compile(r"signing/(?:[1-9][0-9]{0,8}\.root|key_mgr)\.json")


def new_bundle_id(now: datetime) -> str:
    """Sortable by time: ``20261207T020000Z-1a2b3c4d5e6f``."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(6)}"


def repodata_path(subdir: str) -> str:
    return f"repodata/{subdir}/repodata.json.zst"


def package_path(subdir: str, filename: str) -> str:
    return f"pkgs/{subdir}/{filename}"


def is_signing_member(name: str) -> bool:
    return _SIGNING_MEMBER.fullmatch(name) is not None


@dataclass(frozen=True)
class SubdirEntry:
    repodata: str  # member path
    records: int
    added: int = 0
    changed: int = 0
    removed: int = 0


@dataclass(frozen=True)
class Manifest:
    bundle_id: str
    parent_id: str | None
    created: str
    source: dict[str, str]
    channel: str
    subdirs: dict[str, SubdirEntry]
    files: dict[str, tuple[str, int]]  # member path -> (sha256, size)
    raw_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def package_files(self, subdir: str) -> dict[str, tuple[str, int]]:
        """filename -> (sha256, size) of the package files carried for ``subdir``."""
        prefix = f"pkgs/{subdir}/"
        return {p[len(prefix) :]: v for p, v in self.files.items() if p.startswith(prefix)}

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files.values())

    def summary(self) -> dict[str, Any]:
        return {
            "bundle_id": self.bundle_id,
            "parent_id": self.parent_id,
            "created": self.created,
            "channel": self.channel,
            "source": self.source,
            "subdirs": {s: e.__dict__ for s, e in self.subdirs.items()},
            "files": len(self.files),
            "bytes": self.total_bytes,
        }


def manifest_bytes(manifest: Manifest) -> bytes:
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bundle_id": manifest.bundle_id,
        "parent_id": manifest.parent_id,
        "created": manifest.created,
        "source": manifest.source,
        "channel": manifest.channel,
        "subdirs": {s: e.__dict__ for s, e in sorted(manifest.subdirs.items())},
        "files": {p: {"sha256": s, "size": n} for p, (s, n) in manifest.files.items()},
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def signed_part(bundle_id: str, manifest_data: bytes) -> dict[str, str]:
    return {
        "type": SIGNATURE_TYPE,
        "bundle_id": bundle_id,
        "manifest_sha256": hashlib.sha256(manifest_data).hexdigest(),
    }


def signature_message(bundle_id: str, manifest_data: bytes) -> bytes:
    """The bytes the pkg_mgr key signs (canonical, as every signature of the trust format)."""
    return canonical(signed_part(bundle_id, manifest_data))


def signature_envelope(bundle_id: str, manifest_data: bytes, key: str, sig: str) -> bytes:
    envelope = {
        "signed": signed_part(bundle_id, manifest_data),
        "signatures": {key: {"signature": sig}},
    }
    return orjson.dumps(envelope, option=orjson.OPT_INDENT_2) + b"\n"


def verify_signature(
    manifest: Manifest, manifest_data: bytes, envelope_data: bytes, keys: list[str]
) -> set[str]:
    """The trusted keys among ``keys`` that signed this manifest (empty: refused by the caller)."""
    try:
        envelope = orjson.loads(envelope_data)
    except orjson.JSONDecodeError as exc:
        raise BundleRefusedError(f"not JSON: {exc}", member=SIGNATURE) from None
    if not isinstance(envelope, dict) or envelope.get("signed") != signed_part(
        manifest.bundle_id, manifest_data
    ):
        raise BundleRefusedError(
            "the signature is not for this manifest (its bundle id or sha256 differ)",
            code="airgap:bad-signature",
            member=SIGNATURE,
        )
    return good_signers(envelope, keys, openpgp=False)


# ------------------------------------------------------------------------------------ parsing


def _refuse(detail: str, member: str = MANIFEST) -> BundleRefusedError:
    return BundleRefusedError(detail, code="airgap:bad-manifest", member=member)


def parse_manifest(data: bytes) -> Manifest:
    """The manifest of a bundle from another network, every field checked."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _refuse(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _refuse(f"'format' must be {FORMAT!r}: not a Stockade package bundle")
    if doc.get("format_version") != FORMAT_VERSION:
        raise _refuse(
            f"format_version {shown(str(doc.get('format_version'))[:20])} is not supported "
            f"(this Stockade reads {FORMAT_VERSION})"
        )
    bundle_id = _bundle_id(doc.get("bundle_id"), "bundle_id")
    parent = doc.get("parent_id")
    parent_id = None if parent is None else _bundle_id(parent, "parent_id")
    if parent_id == bundle_id:
        raise _refuse("parent_id is the bundle's own id")
    channel = _channel(doc.get("channel"))
    subdirs = _subdirs(doc.get("subdirs"))
    files = _files(doc.get("files"), subdirs)
    return Manifest(
        bundle_id=bundle_id,
        parent_id=parent_id,
        created=_text(doc.get("created"), "created", 40),
        source=_source(doc.get("source")),
        channel=channel,
        subdirs=subdirs,
        files=files,
        raw_sha256=hashlib.sha256(data).hexdigest(),
    )


def _bundle_id(value: Any, key: str) -> str:
    if not isinstance(value, str) or not BUNDLE_ID_RE.fullmatch(value):
        raise _refuse(f"{key} must look like 20261207T020000Z-1a2b3c4d5e6f")
    return value


def _text(value: Any, key: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise _refuse(f"{key} must be text of at most {limit} characters")
    return value


def _channel(value: Any) -> str:
    if not isinstance(value, str):
        raise _refuse("channel must be a channel name")
    try:
        validate_channel_name(value)
    except InvalidInputError as exc:
        raise _refuse(f"channel: {exc.detail}") from None
    return value


def _source(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or len(value) > 8:
        raise _refuse("source must be an object of a few texts")
    return {_text(k, "a key of source", 40): _text(v, f"source.{k}", 200) for k, v in value.items()}


def _count(entry: Mapping[str, Any], key: str, subdir: str) -> int:
    value = entry.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 40:
        raise _refuse(f"subdirs.{subdir}.{key} must be a count")
    return value


def _subdirs(value: Any) -> dict[str, SubdirEntry]:
    if not isinstance(value, Mapping) or not value or len(value) > 64:
        raise _refuse("subdirs must name one or more subdirs")
    result: dict[str, SubdirEntry] = {}
    for subdir, entry in value.items():
        if not isinstance(subdir, str) or not is_valid_subdir(subdir):
            raise _refuse(f"{str(subdir)[:40]!r} is not a subdir name")
        if not isinstance(entry, Mapping) or entry.get("repodata") != repodata_path(subdir):
            raise _refuse(f"subdirs.{subdir}.repodata must be {repodata_path(subdir)!r}")
        counts = {k: _count(entry, k, subdir) for k in ("records", "added", "changed", "removed")}
        result[subdir] = SubdirEntry(repodata_path(subdir), **counts)
    return result


def _files(value: Any, subdirs: dict[str, SubdirEntry]) -> dict[str, tuple[str, int]]:
    if not isinstance(value, Mapping):
        raise _refuse("files must map member paths to {sha256, size}")
    files: dict[str, tuple[str, int]] = {}
    for path, meta in value.items():
        _check_path(path, subdirs)
        sha = meta.get("sha256") if isinstance(meta, Mapping) else None
        size = meta.get("size") if isinstance(meta, Mapping) else None
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise _refuse(f"files[{path!r}] needs a sha256 (64 hex)")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 50:
            raise _refuse(f"files[{path!r}] needs a size")
        files[path] = (sha, size)
    for entry in subdirs.values():
        if entry.repodata not in files:
            raise _refuse(f"{entry.repodata} is not listed in files")
    return files


def _check_path(path: Any, subdirs: dict[str, SubdirEntry]) -> None:
    if not isinstance(path, str):
        raise _refuse("a file path must be text")
    parts = path.split("/")
    if len(parts) == 3 and parts[1] in subdirs:
        if parts[0] == "repodata" and path == repodata_path(parts[1]):
            return
        if parts[0] == "pkgs" and _package_name(parts[2]):
            return
    raise _refuse(
        "not a member a package bundle holds (repodata/<subdir>/repodata.json.zst or "
        "pkgs/<subdir>/<name>.conda|.tar.bz2 of a listed subdir)",
        member=path[:300],
    )


def _package_name(filename: str) -> bool:
    if not _FILENAME.fullmatch(filename) or ".." in filename:
        return False
    try:
        split_extension(filename)
    except InvalidInputError:
        return False
    return True
