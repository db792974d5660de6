"""Making and rotating trust metadata with private keys (the CLI's side; the server never holds
root or key_mgr keys).

- ``new_chain``: ``1.root.json`` (root delegates root and key_mgr) and ``key_mgr.json`` (delegates
  pkg_mgr).
- ``rotate_pkg_mgr``: key_mgr version + 1 delegating to the new pkg_mgr key only; the old key is
  revoked by being left out, so everything it signed stops verifying.
- ``rotate_key_mgr``: root version + 1 delegating key_mgr to a new key (signed by the root key),
  and a key_mgr signed by the new key.
- ``rotate_root``: root version + 1 with a new root key, signed by the old root key and the new one
  (clients verify N+1 with both N's keys and its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.signing.format import (
    Envelope,
    canonical,
    check_delegating,
    delegating,
    expiry_after,
    openpgp_digest,
    openpgp_headers,
)
from stockade.signing.keys import public_hex

ROOT_DAYS = 365
KEY_MGR_DAYS = 365


def sign_plain(signed: Mapping[str, Any], keys: list[Ed25519PrivateKey]) -> Envelope:
    data = canonical(signed)
    return {
        "signed": dict(signed),
        "signatures": {public_hex(k): {"signature": k.sign(data).hex()} for k in keys},
    }


def sign_root(signed: Mapping[str, Any], keys: list[Ed25519PrivateKey], now: datetime) -> Envelope:
    data = canonical(signed)
    headers = openpgp_headers(now)
    digest = openpgp_digest(data, headers)
    return {
        "signed": dict(signed),
        "signatures": {
            public_hex(k): {"other_headers": headers.hex(), "signature": k.sign(digest).hex()}
            for k in keys
        },
    }


def _root_signed(
    version: int, root_keys: list[str], key_mgr_keys: list[str], now: datetime, days: int
) -> dict[str, Any]:
    return delegating(
        "root",
        version,
        {"root": root_keys, "key_mgr": key_mgr_keys},
        now=now,
        expires=expiry_after(now, days),
    )


def key_mgr_metadata(
    version: int,
    pkg_mgr_keys: list[str],
    key_mgr_key: Ed25519PrivateKey,
    now: datetime,
    days: int = KEY_MGR_DAYS,
) -> Envelope:
    signed = delegating(
        "key_mgr", version, {"pkg_mgr": pkg_mgr_keys}, now=now, expires=expiry_after(now, days)
    )
    return sign_plain(signed, [key_mgr_key])


def new_chain(
    root: Ed25519PrivateKey,
    key_mgr: Ed25519PrivateKey,
    pkg_mgr_public: str,
    now: datetime,
    *,
    root_days: int = ROOT_DAYS,
    key_mgr_days: int = KEY_MGR_DAYS,
) -> tuple[Envelope, Envelope]:
    signed = _root_signed(1, [public_hex(root)], [public_hex(key_mgr)], now, root_days)
    return (
        sign_root(signed, [root], now),
        key_mgr_metadata(1, [pkg_mgr_public], key_mgr, now, key_mgr_days),
    )


def rotate_pkg_mgr(
    key_mgr_current: Mapping[str, Any],
    key_mgr_key: Ed25519PrivateKey,
    new_pkg_mgr_public: str,
    now: datetime,
    days: int = KEY_MGR_DAYS,
) -> Envelope:
    current = check_delegating(key_mgr_current, "key_mgr")
    return key_mgr_metadata(current["version"] + 1, [new_pkg_mgr_public], key_mgr_key, now, days)


def rotate_key_mgr(
    root_current: Mapping[str, Any],
    key_mgr_current: Mapping[str, Any],
    root_key: Ed25519PrivateKey,
    new_key_mgr: Ed25519PrivateKey,
    now: datetime,
    *,
    root_days: int = ROOT_DAYS,
    key_mgr_days: int = KEY_MGR_DAYS,
) -> tuple[Envelope, Envelope]:
    root_signed = check_delegating(root_current, "root")
    key_mgr_signed = check_delegating(key_mgr_current, "key_mgr")
    signed = _root_signed(
        root_signed["version"] + 1,
        list(root_signed["delegations"]["root"]["pubkeys"]),
        [public_hex(new_key_mgr)],
        now,
        root_days,
    )
    pkg_keys = list(key_mgr_signed["delegations"]["pkg_mgr"]["pubkeys"])
    return (
        sign_root(signed, [root_key], now),
        key_mgr_metadata(key_mgr_signed["version"] + 1, pkg_keys, new_key_mgr, now, key_mgr_days),
    )


def rotate_root(
    root_current: Mapping[str, Any],
    old_root_key: Ed25519PrivateKey,
    new_root_key: Ed25519PrivateKey,
    now: datetime,
    *,
    root_days: int = ROOT_DAYS,
) -> Envelope:
    root_signed = check_delegating(root_current, "root")
    signed = _root_signed(
        root_signed["version"] + 1,
        [public_hex(new_root_key)],
        list(root_signed["delegations"]["key_mgr"]["pubkeys"]),
        now,
        root_days,
    )
    return sign_root(signed, [old_root_key, new_root_key], now)
