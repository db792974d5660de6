"""The conda-content-trust metadata format, as conda's content-trust plugin reads it.

Written from the format (``conda_content_trust.common`` / ``authentication`` describe it); no code
of that package is used, and tests check our output with an independent verifier.

- Canonical bytes of a JSON value: ``json.dumps(value, indent=2, sort_keys=True)`` in UTF-8 (ASCII
  escapes, as Python's ``json`` writes them). Every signature covers the canonical bytes of an
  envelope's ``signed`` part, never the bytes as served: a client parses what it downloads and
  serializes it again.
- An envelope: ``{"signed": {...}, "signatures": {pubkey_hex: {"signature": hex}}}``.
- Delegating metadata (``root``, ``key_mgr``): ``signed`` has ``type``, ``version``,
  ``metadata_spec_version``, ``timestamp``, ``expiration`` (``YYYY-MM-DDTHH:MM:SSZ``) and
  ``delegations: {role: {"pubkeys": [hex, ...], "threshold": n}}``. Root delegates ``root`` and
  ``key_mgr``; key_mgr delegates ``pkg_mgr``; pkg_mgr signs package records.
- Root signatures are OpenPGP-shaped (the client's ``verify_root`` asks for that form): the
  ed25519 signature covers ``SHA-256(canonical || other_headers || 0x04 0xff || len(other_headers)
  as 4 bytes big-endian)``, where ``other_headers`` are the hashed OpenPGP v4 signature headers.
  We write those headers ourselves (version 4, binary document, EdDSA, SHA-256, one hashed
  signature-creation-time subpacket): no GPG is involved.
- A package record is signed as the envelope ``{"signed": record}``; repodata carries
  ``signatures: {filename: {pubkey_hex: {"signature": hex}}}``.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from stockade.signing.errors import TrustMetadataError

SPEC_VERSION: Final = "0.6.0"
HEX_KEY: Final = re.compile(r"[0-9a-f]{64}")
HEX_SIGNATURE: Final = re.compile(r"[0-9a-f]{128}")
_HEX: Final = re.compile(r"(?:[0-9a-f]{2})*")
ROLES: Final = ("root", "key_mgr", "pkg_mgr")
DELEGATES: Final = {"root": ("root", "key_mgr"), "key_mgr": ("pkg_mgr",)}
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
#: The most signatures by authorized keys tried on one envelope (real ones carry one or two).
MAX_SIGNATURES_CHECKED: Final = 16
#: The most bytes one metadata file (root, key_mgr) may have, here or upstream.
MAX_METADATA_BYTES: Final = 1 << 20

Envelope = dict[str, Any]


def canonical(value: Any) -> bytes:
    """The bytes every signature of the format covers."""
    return json.dumps(value, indent=2, sort_keys=True).encode("utf-8")


def record_bytes(record_json: bytes) -> bytes:
    """Canonical bytes of a stored (compact) repodata record, as a client rebuilds them."""
    return canonical(json.loads(record_json))


def parse_metadata(data: bytes | str | Mapping[str, Any], what: str) -> dict[str, Any]:
    """A metadata file's JSON object; TrustMetadataError says what is wrong (size, JSON, type)."""
    if isinstance(data, Mapping):
        return dict(data)
    if len(data) > MAX_METADATA_BYTES:
        raise TrustMetadataError(f"{what} is larger than {MAX_METADATA_BYTES} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TrustMetadataError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise TrustMetadataError(f"{what} is not a JSON object")
    return value


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: Any, what: str) -> datetime:
    if not isinstance(text, str):
        raise TrustMetadataError(f"{what} is not a time string")
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise TrustMetadataError(f"{what} {text!r} is not YYYY-MM-DDTHH:MM:SSZ") from None


def openpgp_headers(created: datetime) -> bytes:
    """Hashed headers of an OpenPGP v4 binary-document signature by an EdDSA key over SHA-256,
    with one signature-creation-time subpacket (RFC 4880 §5.2.3)."""
    subpacket = bytes([5, 2]) + struct.pack(">I", int(created.timestamp()))
    return bytes([4, 0x00, 22, 8]) + struct.pack(">H", len(subpacket)) + subpacket


def openpgp_digest(data: bytes, headers: bytes) -> bytes:
    trailer = b"\x04\xff" + struct.pack(">I", len(headers))
    return hashlib.sha256(data + headers + trailer).digest()


# ------------------------------------------------------------------------------------ construction


def delegating(
    kind: str,
    version: int,
    delegations: Mapping[str, list[str]],
    *,
    now: datetime,
    expires: datetime,
) -> dict[str, Any]:
    """The ``signed`` part of root or key_mgr metadata (threshold 1 per role)."""
    return {
        "type": kind,
        "version": version,
        "metadata_spec_version": SPEC_VERSION,
        "timestamp": iso(now),
        "expiration": iso(expires),
        "delegations": {
            role: {"pubkeys": sorted(keys), "threshold": 1} for role, keys in delegations.items()
        },
    }


def expiry_after(now: datetime, days: int) -> datetime:
    return (now + timedelta(days=days)).replace(microsecond=0)


# ------------------------------------------------------------------------------------ verification


def public_key(hex_key: str) -> Ed25519PublicKey:
    if not isinstance(hex_key, str) or not HEX_KEY.fullmatch(hex_key):
        raise TrustMetadataError(f"{str(hex_key)[:80]!r} is not a 64-hex ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))


def good_signers(envelope: Mapping[str, Any], keys: list[str], *, openpgp: bool) -> set[str]:
    """The keys among ``keys`` whose signature over the envelope's ``signed`` part verifies.

    At most ``MAX_SIGNATURES_CHECKED`` signatures by authorized keys are tried: an upstream's
    repodata and key_mgr are not ours, and one record listing thousands of signatures by the
    thousands of keys a key_mgr may delegate to would otherwise cost seconds to check.
    """
    signatures = envelope.get("signatures")
    if not isinstance(signatures, Mapping) or "signed" not in envelope:
        return set()
    authorized = set(keys)
    data: bytes | None = None
    good: set[str] = set()
    tried = 0
    for key, entry in signatures.items():
        if key not in authorized or not isinstance(entry, Mapping):
            continue
        sig = entry.get("signature")
        if not isinstance(sig, str) or not HEX_SIGNATURE.fullmatch(sig):
            continue
        if tried == MAX_SIGNATURES_CHECKED:
            break
        tried += 1
        data = canonical(envelope["signed"]) if data is None else data
        message = data
        if openpgp:
            headers = entry.get("other_headers")
            if not isinstance(headers, str) or not _HEX.fullmatch(headers):
                continue
            message = openpgp_digest(data, bytes.fromhex(headers))
        try:
            public_key(key).verify(bytes.fromhex(sig), message)
        except (InvalidSignature, TrustMetadataError):
            continue
        good.add(key)
    return good


def check_delegating(envelope: Any, kind: str) -> dict[str, Any]:
    """The ``signed`` part of well-formed ``kind`` metadata; raises TrustMetadataError naming what
    is wrong."""
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("signed"), Mapping):
        raise TrustMetadataError(f"{kind} metadata is not an envelope with a 'signed' object")
    if not isinstance(envelope.get("signatures"), Mapping):
        raise TrustMetadataError(f"{kind} metadata has no 'signatures' object")
    signed = dict(envelope["signed"])
    if signed.get("type") != kind:
        raise TrustMetadataError(f"metadata of type {signed.get('type')!r} given as {kind}")
    version = signed.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 10**9:
        raise TrustMetadataError(f"{kind} metadata: version must be an integer from 1 to 999999999")
    parse_time(signed.get("expiration"), f"{kind} expiration")
    delegations = signed.get("delegations")
    if not isinstance(delegations, Mapping):
        raise TrustMetadataError(f"{kind} metadata has no delegations")
    for role in DELEGATES[kind]:
        entry = delegations.get(role)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("pubkeys"), list):
            raise TrustMetadataError(f"{kind} metadata does not delegate {role}")
        for key in entry["pubkeys"]:
            public_key(key)
        threshold = entry.get("threshold")
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
            raise TrustMetadataError(f"{kind} delegation of {role}: threshold must be >= 1")
    return signed


def delegation(signed: Mapping[str, Any], role: str) -> tuple[list[str], int]:
    entry = signed["delegations"][role]
    return list(entry["pubkeys"]), int(entry["threshold"])


def verify_envelope(
    envelope: Mapping[str, Any], keys: list[str], threshold: int, *, what: str, openpgp: bool
) -> None:
    good = good_signers(envelope, keys, openpgp=openpgp)
    if len(good) < threshold:
        raise TrustMetadataError(
            f"{what}: {len(good)} good signature(s) from the {len(keys)} trusted key(s), "
            f"{threshold} needed"
        )


def verify_root_update(trusted: Mapping[str, Any], new: Any) -> dict[str, Any]:
    """Root chaining: version N+1 signed by N's root keys and by its own."""
    old = check_delegating(trusted, "root")
    signed = check_delegating(new, "root")
    if signed["version"] != old["version"] + 1:
        raise TrustMetadataError(
            f"root version {signed['version']} does not follow version {old['version']}"
        )
    keys, threshold = delegation(old, "root")
    verify_envelope(new, keys, threshold, what=f"{signed['version']}.root.json", openpgp=True)
    keys, threshold = delegation(signed, "root")
    verify_envelope(new, keys, threshold, what=f"{signed['version']}.root.json", openpgp=True)
    return signed


def verify_key_mgr(root: Mapping[str, Any], key_mgr: Any, now: datetime | None) -> dict[str, Any]:
    """key_mgr metadata signed as root delegates it; also unexpired when ``now`` is given."""
    root_signed = check_delegating(root, "root")
    signed = check_delegating(key_mgr, "key_mgr")
    keys, threshold = delegation(root_signed, "key_mgr")
    verify_envelope(key_mgr, keys, threshold, what="key_mgr.json", openpgp=False)
    if now is not None:
        for what, meta in (("root", root_signed), ("key_mgr", signed)):
            expires = parse_time(meta["expiration"], f"{what} expiration")
            if expires <= now:
                raise TrustMetadataError(f"{what} metadata expired on {meta['expiration']}")
    return signed


def record_verdict(
    record: Mapping[str, Any], signatures: Any, key_mgr_signed: Mapping[str, Any]
) -> str | None:
    """None when the record's signatures verify under key_mgr's pkg_mgr delegation, else why not."""
    if not isinstance(signatures, Mapping) or not signatures:
        return "no signature"
    keys, threshold = delegation(key_mgr_signed, "pkg_mgr")
    good = good_signers({"signed": record, "signatures": signatures}, keys, openpgp=False)
    return signers_verdict(good, signatures, keys, threshold)


def signers_verdict(
    good: Collection[str], signatures: Mapping[str, Any], keys: list[str], threshold: int
) -> str | None:
    """None when ``good`` (the keys whose signature verifies) meet the threshold, else why not."""
    if len(good) >= threshold:
        return None
    if not any(k in keys for k in signatures):
        return "signed by a key that key_mgr does not delegate pkg_mgr to"
    return "the signature does not match the record"


def serialize(envelope: Mapping[str, Any]) -> bytes:
    """The bytes served: indented and sorted, as the format's own tools write metadata files."""
    return json.dumps(envelope, indent=2, sort_keys=True).encode() + b"\n"
