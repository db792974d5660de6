"""Package bundles built by hand for tests: valid ones signed by a key of the test, and hostile
ones (a member's bytes changed, a manifest changed after signing, raw unsafe names).

    key = Ed25519PrivateKey.generate()
    members = {repodata_path("noarch"): b"...", package_path("noarch", "a-1-0.conda"): b"..."}
    path = write_bundle(tmp_path / "b.zip", members, key=key, channel="main")
    path = write_raw(tmp_path / "slip.zip", [("../x", b"..."), *signed_members(...)])

``write_bundle`` writes with the real writer (``airgap.zipwriter``); ``write_raw`` with
:mod:`zipfile`, which writes any name as given (``../x``, ``/abs``, ``a\\b``, twice).
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.airgap.manifest import (
    MANIFEST,
    SIGNATURE,
    Manifest,
    SubdirEntry,
    manifest_bytes,
    new_bundle_id,
    signature_envelope,
    signature_message,
)
from stockade.airgap.zipwriter import BundleWriter
from stockade.signing.keys import public_hex

BASE_TIME = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def bundle_id(offset_s: int = 0) -> str:
    """A fresh id; a larger ``offset_s`` sorts later."""
    return new_bundle_id(BASE_TIME + timedelta(seconds=offset_s))


def make_manifest(
    members: Mapping[str, bytes],
    *,
    channel: str = "main",
    bundle: str | None = None,
    parent_id: str | None = None,
) -> Manifest:
    """The manifest listing ``members`` (``repodata/<subdir>/...`` and ``pkgs/<subdir>/...``)."""
    subdirs = sorted({path.split("/")[1] for path in members})
    return Manifest(
        bundle_id=bundle or bundle_id(),
        parent_id=parent_id,
        created=BASE_TIME.isoformat(),
        source={"server": "https://up.example"},
        channel=channel,
        subdirs={s: SubdirEntry(f"repodata/{s}/repodata.json.zst", records=1) for s in subdirs},
        files={p: (hashlib.sha256(b).hexdigest(), len(b)) for p, b in members.items()},
    )


def envelope(manifest_id: str, data: bytes, key: Ed25519PrivateKey) -> bytes:
    sig = key.sign(signature_message(manifest_id, data)).hex()
    return signature_envelope(manifest_id, data, public_hex(key), sig)


def edited(data: bytes, **changes: Any) -> bytes:
    """Manifest bytes with top-level fields replaced."""
    doc = orjson.loads(data)
    doc.update(changes)
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def head_members(
    manifest: Manifest,
    key: Ed25519PrivateKey | None,
    *,
    manifest_data: bytes | None = None,
    signed_data: bytes | None = None,
) -> dict[str, bytes]:
    """``manifest.json`` and ``manifest.sig`` (signing ``signed_data``, default the manifest)."""
    data = manifest_bytes(manifest) if manifest_data is None else manifest_data
    head = {MANIFEST: data}
    if key is not None:
        head[SIGNATURE] = envelope(
            manifest.bundle_id, data if signed_data is None else signed_data, key
        )
    return head


def write_bundle(
    path: Path,
    members: Mapping[str, bytes],
    *,
    key: Ed25519PrivateKey | None,
    manifest: Manifest | None = None,
    manifest_data: bytes | None = None,
    signed_data: bytes | None = None,
    extra: Mapping[str, bytes] | None = None,
    replace: Mapping[str, bytes] | None = None,
    **manifest_fields: Any,
) -> Path:
    """A bundle of ``members`` listed by its manifest and signed by ``key`` (None: unsigned).
    ``extra``: members added but not listed; ``replace``: members whose bytes are swapped after
    the manifest was made (a tampered file)."""
    manifest = manifest or make_manifest(members, **manifest_fields)
    head = head_members(manifest, key, manifest_data=manifest_data, signed_data=signed_data)
    body = {**members, **(replace or {}), **(extra or {})}
    with BundleWriter.open(path) as writer:
        for name, data in {**head, **body}.items():
            writer.add_bytes(name, data)
        return writer.finish()


def write_raw(path: Path, members: Iterable[tuple[str, bytes]], **options: Any) -> Path:
    """A zip written by :mod:`zipfile` with names exactly as given (duplicates included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": wanted here
        with zipfile.ZipFile(path, "w", **options) as archive:
            for name, data in members:
                info = zipfile.ZipInfo(name)  # keeps the name as given, unlike writestr(str)
                info.compress_type = archive.compression
                archive.writestr(info, data)
    return path
