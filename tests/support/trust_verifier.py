"""An independent verifier of conda-content-trust metadata, for tests only.

Written from the format's description (conda-content-trust's ``common`` and ``authentication``
modules, as conda's content-trust plugin applies them), NOT from Stockade's code: nothing here
imports ``stockade.signing`` (a test asserts it), so a bug in the signer cannot hide behind the
same bug in the checker. conda-content-trust 0.1.2 itself does not import on our ``cryptography``.

The format:

- Canonical bytes of a JSON value: ``json.dumps(value, indent=2, sort_keys=True)`` in UTF-8.
- An envelope ``{"signed": {...}, "signatures": {pubkey_hex: {"signature": hex}}}``: each
  signature is a raw ed25519 signature of the canonical bytes of ``signed``.
- Root metadata is signed OpenPGP style: the signature entry also carries ``other_headers``
  (hex of the hashed OpenPGP v4 signature headers) and the ed25519 signature covers
  ``SHA-256(canonical || headers || 0x04 0xFF || len(headers) as 4 bytes big-endian)``.
- Delegations ``signed["delegations"][role] = {"pubkeys": [...], "threshold": n}``: root delegates
  ``root`` and ``key_mgr``; key_mgr delegates ``pkg_mgr``; pkg_mgr signs each package record
  (the envelope ``{"signed": record, "signatures": repodata["signatures"][filename]}``).
- Root version N+1 is trusted when signed by a threshold of N's root keys AND of its own.
- ``expiration`` is ``YYYY-MM-DDTHH:MM:SSZ``; metadata past it is not trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ROOT_ROLES = ("root", "key_mgr")
HASH_FIELDS = ("sha256", "md5", "legacy_bz2_md5")


class Untrusted(Exception):
    """The metadata (or record) does not verify; the message says why."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode("utf-8")


def _openpgp_digest(data: bytes, headers_hex: str) -> bytes:
    headers = bytes.fromhex(headers_hex)
    trailer = b"\x04\xff" + len(headers).to_bytes(4, "big")
    return hashlib.sha256(data + headers + trailer).digest()


def _good(envelope: Mapping[str, Any], pubkeys: list[str], *, openpgp: bool) -> set[str]:
    """The keys among ``pubkeys`` with a signature over ``envelope["signed"]`` that verifies."""
    signatures = envelope.get("signatures")
    if not isinstance(signatures, Mapping) or "signed" not in envelope:
        return set()
    data = canonical(envelope["signed"])
    good = set()
    for key, entry in signatures.items():
        if key not in pubkeys or not isinstance(entry, Mapping):
            continue
        try:
            message = _openpgp_digest(data, entry["other_headers"]) if openpgp else data
            public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))
            public.verify(bytes.fromhex(entry["signature"]), message)
        except (KeyError, TypeError, ValueError, InvalidSignature):
            continue
        good.add(key)
    return good


def _delegation(trusted: Mapping[str, Any], role: str) -> tuple[list[str], int]:
    try:
        entry = trusted["signed"]["delegations"][role]
        return list(entry["pubkeys"]), int(entry["threshold"])
    except (KeyError, TypeError, ValueError):
        raise Untrusted(f"the trusted metadata does not delegate {role}") from None


def verify_delegation(
    role: str, untrusted: Mapping[str, Any], trusted_delegating: Mapping[str, Any]
) -> None:
    """``untrusted`` (role metadata, or a record envelope for pkg_mgr) is signed by a threshold of
    the keys ``trusted_delegating`` delegates ``role`` to."""
    keys, threshold = _delegation(trusted_delegating, role)
    if threshold < 1:
        raise Untrusted(f"threshold of {role} is below 1")
    good = _good(untrusted, keys, openpgp=role == "root")
    if len(good) < threshold:
        raise Untrusted(f"{role}: {len(good)} of {threshold} needed signatures verify")


def _check_type(metadata: Mapping[str, Any], kind: str) -> dict[str, Any]:
    signed = metadata.get("signed") if isinstance(metadata, Mapping) else None
    if not isinstance(signed, Mapping) or signed.get("type") != kind:
        raise Untrusted(f"not {kind} metadata")
    version = signed.get("version")
    if not isinstance(version, int) or version < 1:
        raise Untrusted(f"{kind} has no valid version")
    return dict(signed)


def verify_root(untrusted: Mapping[str, Any], trusted: Mapping[str, Any] | None = None) -> int:
    """A first root (``trusted`` None) must sign itself; a later one must be version + 1, signed by
    the trusted root's keys and by its own. Returns its version."""
    signed = _check_type(untrusted, "root")
    if trusted is not None:
        old = _check_type(trusted, "root")
        if signed["version"] != old["version"] + 1:
            raise Untrusted(f"root {signed['version']} does not follow root {old['version']}")
        verify_delegation("root", untrusted, trusted)
    verify_delegation("root", untrusted, untrusted)
    return int(signed["version"])


def verify_root_chain(roots: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Trust ``roots[0]`` (self-signed), chain to the last; returns the newest root."""
    trusted = roots[0]
    verify_root(trusted)
    for root in roots[1:]:
        verify_root(root, trusted)
        trusted = root
    return trusted


def expired(metadata: Mapping[str, Any], now: datetime | None = None) -> bool:
    text = metadata["signed"]["expiration"]
    when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return when <= (now or datetime.now(UTC))


def verify_key_mgr(
    key_mgr: Mapping[str, Any], root: Mapping[str, Any], now: datetime | None = None
) -> None:
    """key_mgr signed as ``root`` delegates it, and neither is expired."""
    _check_type(key_mgr, "key_mgr")
    verify_delegation("key_mgr", key_mgr, root)
    for what, meta in (("root", root), ("key_mgr", key_mgr)):
        if expired(meta, now):
            raise Untrusted(f"{what} metadata expired on {meta['signed']['expiration']}")


def verify_record(record: Mapping[str, Any], signatures: Any, key_mgr: Mapping[str, Any]) -> None:
    """One package record with its repodata ``signatures[filename]`` entry, by pkg_mgr."""
    if not isinstance(signatures, Mapping) or not signatures:
        raise Untrusted("the record has no signature")
    verify_delegation("pkg_mgr", {"signed": dict(record), "signatures": signatures}, key_mgr)


def verify_repodata(repodata: Mapping[str, Any], key_mgr: Mapping[str, Any]) -> int:
    """Every record of ``repodata`` (or of a shard) verifies; returns how many."""
    signatures = repodata.get("signatures") or {}
    count = 0
    for section in ("packages", "packages.conda"):
        for filename, record in (repodata.get(section) or {}).items():
            try:
                verify_record(record, signatures.get(filename), key_mgr)
            except Untrusted as exc:
                raise Untrusted(f"{filename}: {exc}") from None
            count += 1
    return count


def record_from_shard(record: Mapping[str, Any]) -> dict[str, Any]:
    """A shard's record (hashes as raw bytes, CEP 16) in its repodata.json form (hex)."""
    return {
        k: v.hex() if k in HASH_FIELDS and isinstance(v, bytes) else v for k, v in record.items()
    }


def shard_as_repodata(shard: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "packages": {fn: record_from_shard(r) for fn, r in (shard.get("packages") or {}).items()},
        "packages.conda": {
            fn: record_from_shard(r) for fn, r in (shard.get("packages.conda") or {}).items()
        },
        "signatures": shard.get("signatures") or {},
    }
