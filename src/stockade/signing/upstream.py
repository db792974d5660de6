"""Upstream signatures of mirrored records (SPEC §8): what a mirror's trusted root proves.

An administrator gives a mirror the upstream's root metadata (``trusted_root``). Each run then:

1. follows the upstream's root updates from it (``N+1.root.json``, each signed by N's root keys
   and its own: :func:`stockade.signing.format.verify_root_update`);
2. fetches ``key_mgr.json`` and verifies it against the newest root, unexpired;
3. checks each upstream record's ``signatures`` entry under key_mgr's pkg_mgr delegation.

Fetching is the caller's (the mirror's source, through its one outbound guard): a ``fetch``
callable takes a file name of the metadata folder and returns its bytes, None when the upstream
has no such file, or raises :class:`TrustFetchError`. What was fetched is kept
(:attr:`UpstreamTrust.material`) so that dry runs and explain check the same metadata again
offline, never fetching.

A record's state (``artifacts.signature_status``):

- ``verified``: the entry verifies (detail names the pkg_mgr key and the versions);
- ``invalid``: checked and failed (detail says why); the entry is not served;
- ``unverified``: present, but nothing to check it with: no trusted root, or key_mgr.json could
  not be fetched (a network failure is not the upstream's fault; the entry is served as given);
- ``dropped``: the record was changed on its way in, so upstream's signature cannot cover it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from stockade.signing.errors import TrustMetadataError
from stockade.signing.format import (
    MAX_METADATA_BYTES,
    check_delegating,
    delegation,
    good_signers,
    parse_metadata,
    parse_time,
    signers_verdict,
    verify_envelope,
    verify_key_mgr,
    verify_root_update,
)

KEY_MGR: Final = "key_mgr.json"
MAX_ROOT_UPDATES: Final = 64  # root versions followed in one run
NO_TRUSTED_ROOT: Final = "no trusted root configured for this mirror"


class SignatureStatus(StrEnum):
    VERIFIED = "verified"
    INVALID = "invalid"
    UNVERIFIED = "unverified"
    DROPPED = "dropped"


class TrustFetchError(Exception):
    """Trust metadata that could not be fetched (the message is safe to show and log)."""


Fetch = Callable[[str], bytes | None]


@dataclass(frozen=True)
class SignatureCheck:
    entry: dict[str, Any]
    status: SignatureStatus
    detail: str


# ------------------------------------------------------------------------------- trusted root


def parse_trusted_root(data: bytes | str) -> dict[str, Any]:
    """The root envelope an administrator gives: well-formed and signed by its own root keys.
    Raises TrustMetadataError naming what is wrong."""
    envelope = parse_metadata(data, "trusted_root")
    signed = check_delegating(envelope, "root")
    keys, threshold = delegation(signed, "root")
    verify_envelope(envelope, keys, threshold, what="trusted_root (self-signature)", openpgp=True)
    return dict(envelope)


def root_summary(data: bytes | None) -> dict[str, Any] | None:
    """What may be shown of a trusted root: version, expiry and public keys (nothing secret)."""
    if data is None:
        return None
    try:
        signed = check_delegating(parse_metadata(data, "trusted_root"), "root")
    except TrustMetadataError as exc:
        return {"error": exc.detail}
    return {
        "version": signed["version"],
        "expiration": signed["expiration"],
        "root_keys": delegation(signed, "root")[0],
        "key_mgr_keys": delegation(signed, "key_mgr")[0],
    }


# --------------------------------------------------------------------------------------- trust


@dataclass(frozen=True)
class UpstreamTrust:
    """What a run (or a dry run, from the stored material) can verify upstream records with."""

    configured: bool = False  # a trusted root is set
    root_version: int | None = None  # the newest root reached from it
    key_mgr: dict[str, Any] | None = None  # signed part of a verified, unexpired key_mgr
    key_mgr_version: int | None = None
    problem: str | None = None  # why key_mgr cannot be used
    unreachable: bool = False  # the problem is a failed fetch (records stay unverified)
    expires: datetime | None = None  # when root or key_mgr expires (results change then)
    material: dict[str, str] = field(default_factory=dict)  # file name -> text fetched
    fetch_error: str | None = None

    def digest(self) -> str:
        """Changes whenever what the records are checked with does."""
        parts: list[Any] = [self.configured, self.root_version, self.key_mgr_version]
        parts += [self.problem, sorted(self.material.items())]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()

    def stored(self, trusted_root: bytes | None, where: str | None = None) -> dict[str, Any]:
        """What the mirror keeps for dry runs and explain (public metadata only); ``where``: the
        URL it was fetched from."""
        return {
            "trusted_root_sha256": _sha(trusted_root),
            "where": where,
            "material": dict(self.material),
            "fetch_error": self.fetch_error,
        }

    def describe(self) -> str:
        if not self.configured:
            return NO_TRUSTED_ROOT
        if self.key_mgr is None:
            return f"upstream signatures cannot be verified: {self.problem}"
        return (
            f"upstream signatures checked against root version {self.root_version}, "
            f"key_mgr version {self.key_mgr_version}"
        )


def _sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


class _Recording:
    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self.material: dict[str, str] = {}

    def __call__(self, name: str) -> bytes | None:
        data = self.fetch(name)
        if data is not None:
            if len(data) > MAX_METADATA_BYTES:
                raise TrustFetchError(f"{name} is larger than {MAX_METADATA_BYTES} bytes")
            self.material[name] = data.decode("utf-8", "replace")
        return data


def establish_trust(trusted_root: bytes | None, fetch: Fetch, now: datetime) -> UpstreamTrust:
    """Follow root updates from ``trusted_root``, then verify key_mgr.json (see the module)."""
    if trusted_root is None:
        return UpstreamTrust()
    recording = _Recording(fetch)
    root_env: Any = None
    root_version: int | None = None
    try:
        root_env = parse_trusted_root(trusted_root)
        root_env, root_version = _follow_roots(root_env, recording)
        data = recording(KEY_MGR)
        if data is None:
            raise TrustFetchError(f"{KEY_MGR} not found")
        key_mgr = verify_key_mgr(root_env, parse_metadata(data, KEY_MGR), now)
    except TrustFetchError as exc:
        why = f"{KEY_MGR} could not be fetched: {exc}"
        return UpstreamTrust(
            True, root_version, None, None, why, True, None, recording.material, str(exc)
        )
    except TrustMetadataError as exc:
        return UpstreamTrust(
            True, root_version, None, None, exc.detail, False, None, recording.material
        )
    expires = min(
        parse_time(key_mgr["expiration"], "key_mgr expiration"),
        parse_time(root_env["signed"]["expiration"], "root expiration"),
    )
    return UpstreamTrust(
        True, root_version, key_mgr, key_mgr["version"], None, False, expires, recording.material
    )


def _follow_roots(root_env: dict[str, Any], fetch: Fetch) -> tuple[dict[str, Any], int]:
    version = int(root_env["signed"]["version"])
    for _ in range(MAX_ROOT_UPDATES):
        name = f"{version + 1}.root.json"
        data = fetch(name)
        if data is None:
            break
        new = parse_metadata(data, name)
        verify_root_update(root_env, new)
        root_env, version = new, version + 1
    return root_env, version


def stored_trust(
    trusted_root: bytes | None,
    stored: Mapping[str, Any] | None,
    now: datetime,
    where: str | None = None,
) -> UpstreamTrust:
    """The trust the last run established, checked again now from what it kept (no network);
    nothing when it was fetched for another trusted root or from elsewhere than ``where``."""
    if trusted_root is None:
        return UpstreamTrust()
    if (
        not isinstance(stored, Mapping)
        or stored.get("trusted_root_sha256") != _sha(trusted_root)
        or (where is not None and stored.get("where") != where)
    ):
        return UpstreamTrust(
            True,
            problem="the trust settings (trusted root, metadata URL or source) changed after "
            "the last run: run the mirror to fetch the upstream's key_mgr.json",
            unreachable=True,
        )
    material = stored.get("material") or {}
    error = stored.get("fetch_error")

    def offline(name: str) -> bytes | None:
        if name in material:
            return str(material[name]).encode("utf-8")
        if error and name == KEY_MGR:
            raise TrustFetchError(str(error))
        return None

    return establish_trust(trusted_root, offline, now)


# ------------------------------------------------------------------------------------- records


def check_record(
    record: Mapping[str, Any], entry: Any, changed: str | None, trust: UpstreamTrust
) -> SignatureCheck | None:
    """The state of one record's upstream ``signatures`` entry; None without one."""
    if not isinstance(entry, Mapping) or not entry:
        return None
    kept = {str(k): v for k, v in entry.items()}
    if changed is not None:
        return SignatureCheck(kept, SignatureStatus.DROPPED, changed)
    if not trust.configured:
        return SignatureCheck(kept, SignatureStatus.UNVERIFIED, NO_TRUSTED_ROOT)
    if trust.key_mgr is None:
        status = SignatureStatus.UNVERIFIED if trust.unreachable else SignatureStatus.INVALID
        return SignatureCheck(kept, status, str(trust.problem))
    keys, threshold = delegation(trust.key_mgr, "pkg_mgr")
    good = _good_signers(record, kept, keys)
    if len(good) >= threshold:
        names = ", ".join(fingerprint(k) for k in sorted(good))
        return SignatureCheck(
            kept,
            SignatureStatus.VERIFIED,
            f"signed by pkg_mgr key {names} (key_mgr version {trust.key_mgr_version}, "
            f"root version {trust.root_version})",
        )
    why = signers_verdict(good, kept, keys, threshold)
    return SignatureCheck(kept, SignatureStatus.INVALID, str(why))


#: Signers found per (record, entry, keys): verifying costs ~0.1 ms a record, and a mirror checks
#: the same records run after run (and in every dry run). A memo of a pure function: any process
#: may hold one; bounded by emptying it when full.
_SIGNERS: dict[bytes, frozenset[str]] = {}
SIGNERS_MEMO_MAX: Final = 400_000


def _good_signers(
    record: Mapping[str, Any], entry: Mapping[str, Any], keys: list[str]
) -> frozenset[str]:
    try:
        memo_key = hashlib.sha256(
            orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
            + b"\0"
            + orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
            + b"\0"
            + ",".join(sorted(keys)).encode()
        ).digest()
    except TypeError:  # not plain JSON for orjson (e.g. a huge integer): no memo
        return frozenset(good_signers({"signed": record, "signatures": entry}, keys, openpgp=False))
    found = _SIGNERS.get(memo_key)
    if found is None:
        found = frozenset(
            good_signers({"signed": record, "signatures": entry}, keys, openpgp=False)
        )
        if len(_SIGNERS) >= SIGNERS_MEMO_MAX:
            _SIGNERS.clear()
        _SIGNERS[memo_key] = found
    return found


def fingerprint(public_hex: str) -> str:
    return f"{public_hex[:16]}…"
