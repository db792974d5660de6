"""Upstream signatures (``stockade.signing.upstream``): the trusted root given by an admin, root
updates followed, key_mgr verified and unexpired, each record's state and why.

The "upstream" here is built with its own keys; the checks are compared with a verifier written
here from the format's description (canonical JSON, ed25519 over it), not with the code tested.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from stockade.signing.builders import new_chain, rotate_root, sign_plain
from stockade.signing.errors import TrustMetadataError
from stockade.signing.keys import generate, public_hex
from stockade.signing.upstream import (
    KEY_MGR,
    NO_TRUSTED_ROOT,
    SignatureStatus,
    TrustFetchError,
    UpstreamTrust,
    check_record,
    establish_trust,
    parse_trusted_root,
    root_summary,
    stored_trust,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
RECORD = {"name": "numpy", "version": "1.26.4", "build": "py_0", "sha256": "a" * 64, "depends": []}


class Upstream:
    """An upstream with its own keys: root, key_mgr, pkg_mgr; metadata files by name."""

    def __init__(self, *, key_mgr_days: int = 365) -> None:
        self.root = generate()
        self.key_mgr = generate()
        self.pkg_mgr = generate()
        root, key_mgr = new_chain(
            self.root, self.key_mgr, public_hex(self.pkg_mgr), NOW, key_mgr_days=key_mgr_days
        )
        self.root_env = root
        self.files: dict[str, bytes] = {KEY_MGR: json.dumps(key_mgr).encode()}

    @property
    def root_bytes(self) -> bytes:
        return json.dumps(self.root_env).encode()

    def fetch(self, name: str) -> bytes | None:
        return self.files.get(name)

    def sign(self, record: dict[str, Any], key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
        return sign_plain(record, [key or self.pkg_mgr])["signatures"]


def independent_verify(record: dict[str, Any], entry: dict[str, Any]) -> set[str]:
    """The keys whose signature over the record's canonical bytes verifies (format: sorted keys,
    two-space indent, ASCII escapes; ed25519 over those bytes)."""
    data = json.dumps(record, indent=2, sort_keys=True).encode()
    good = set()
    for key, value in entry.items():
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(
                bytes.fromhex(value["signature"]), data
            )
        except (InvalidSignature, ValueError):
            continue
        good.add(key)
    return good


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


def test_a_signed_record_verifies_and_names_its_key(upstream: Upstream) -> None:
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    assert trust.key_mgr is not None, trust.problem
    entry = upstream.sign(RECORD)
    assert independent_verify(RECORD, entry) == {public_hex(upstream.pkg_mgr)}
    check = check_record(RECORD, entry, None, trust)
    assert check is not None
    assert check.status == SignatureStatus.VERIFIED
    assert public_hex(upstream.pkg_mgr)[:16] in check.detail
    assert "key_mgr version 1, root version 1" in check.detail


def test_no_entry_no_state(upstream: Upstream) -> None:
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    assert check_record(RECORD, None, None, trust) is None
    assert check_record(RECORD, {}, None, trust) is None


def test_a_tampered_record_or_signature_is_invalid(upstream: Upstream) -> None:
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    entry = upstream.sign(RECORD)
    changed = {**RECORD, "depends": ["evil"]}
    check = check_record(changed, entry, None, trust)
    assert check is not None
    assert check.status == SignatureStatus.INVALID
    assert check.detail == "the signature does not match the record"
    key = next(iter(entry))
    flipped = entry[key]["signature"]
    flipped = ("0" if flipped[0] != "0" else "1") + flipped[1:]
    check = check_record(RECORD, {key: {"signature": flipped}}, None, trust)
    assert check is not None and check.status == SignatureStatus.INVALID


def test_a_key_not_delegated_is_invalid(upstream: Upstream) -> None:
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    stranger = generate()
    check = check_record(RECORD, upstream.sign(RECORD, stranger), None, trust)
    assert check is not None
    assert check.status == SignatureStatus.INVALID
    assert "does not delegate pkg_mgr" in check.detail
    assert independent_verify(RECORD, upstream.sign(RECORD, stranger))  # a good signature...


def test_no_trusted_root_is_unverified(upstream: Upstream) -> None:
    trust = establish_trust(None, upstream.fetch, NOW)
    assert trust == UpstreamTrust()
    check = check_record(RECORD, upstream.sign(RECORD), None, trust)
    assert check is not None
    assert (check.status, check.detail) == (SignatureStatus.UNVERIFIED, NO_TRUSTED_ROOT)


def test_a_changed_record_drops_its_signature(upstream: Upstream) -> None:
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    check = check_record(RECORD, upstream.sign(RECORD), "the record names url", trust)
    assert check is not None
    assert (check.status, check.detail) == (SignatureStatus.DROPPED, "the record names url")


def test_an_expired_key_mgr_verifies_nothing() -> None:
    upstream = Upstream(key_mgr_days=10)
    later = NOW + timedelta(days=11)
    trust = establish_trust(upstream.root_bytes, upstream.fetch, later)
    assert trust.key_mgr is None
    assert trust.problem is not None and "key_mgr metadata expired on" in trust.problem
    check = check_record(RECORD, upstream.sign(RECORD), None, trust)
    assert check is not None
    assert check.status == SignatureStatus.INVALID
    assert "expired" in check.detail
    fresh = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    assert fresh.expires == NOW + timedelta(days=10)


def test_a_key_mgr_signed_by_another_key_is_refused(upstream: Upstream) -> None:
    other = Upstream()
    upstream.files[KEY_MGR] = other.files[KEY_MGR]
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    assert trust.key_mgr is None and not trust.unreachable
    assert "key_mgr.json" in str(trust.problem)


def test_key_mgr_missing_or_unreachable_leaves_records_unverified(upstream: Upstream) -> None:
    del upstream.files[KEY_MGR]
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    assert (
        trust.unreachable
        and trust.problem == "key_mgr.json could not be fetched: key_mgr.json not found"
    )

    def broken(name: str) -> bytes | None:
        raise TrustFetchError("HTTP 503 from https://up.example/key_mgr.json")

    trust = establish_trust(upstream.root_bytes, broken, NOW)
    check = check_record(RECORD, upstream.sign(RECORD), None, trust)
    assert check is not None and check.status == SignatureStatus.UNVERIFIED
    assert check.detail == (
        "key_mgr.json could not be fetched: HTTP 503 from https://up.example/key_mgr.json"
    )


def test_root_updates_are_followed_and_checked(upstream: Upstream) -> None:
    new_root_key = generate()
    v2 = rotate_root(upstream.root_env, upstream.root, new_root_key, NOW)
    upstream.files["2.root.json"] = json.dumps(v2).encode()
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    assert trust.root_version == 2 and trust.key_mgr is not None
    # a forged version 3 (not signed by version 2's root key) stops the chain with a reason
    forged = rotate_root(v2, generate(), generate(), NOW)
    upstream.files["3.root.json"] = json.dumps(forged).encode()
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    assert trust.key_mgr is None and "3.root.json" in str(trust.problem)
    check = check_record(RECORD, upstream.sign(RECORD), None, trust)
    assert check is not None and check.status == SignatureStatus.INVALID


def test_the_trusted_root_must_sign_itself(upstream: Upstream) -> None:
    assert parse_trusted_root(upstream.root_bytes)["signed"]["type"] == "root"
    forged = json.loads(upstream.root_bytes)
    forged["signed"]["expiration"] = "2099-01-01T00:00:00Z"
    with pytest.raises(TrustMetadataError, match="self-signature"):
        parse_trusted_root(json.dumps(forged))
    with pytest.raises(TrustMetadataError, match="not JSON"):
        parse_trusted_root(b"{nope")
    with pytest.raises(TrustMetadataError, match="given as root"):
        parse_trusted_root(upstream.files[KEY_MGR])


def test_root_summary_shows_public_parts_only(upstream: Upstream) -> None:
    summary = root_summary(upstream.root_bytes)
    assert summary == {
        "version": 1,
        "expiration": upstream.root_env["signed"]["expiration"],
        "root_keys": [public_hex(upstream.root)],
        "key_mgr_keys": [public_hex(upstream.key_mgr)],
    }
    assert root_summary(None) is None


def test_dry_runs_check_again_what_the_run_fetched_offline(upstream: Upstream) -> None:
    trust = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    kept = trust.stored(upstream.root_bytes)
    again = stored_trust(upstream.root_bytes, kept, NOW)
    assert again.key_mgr == trust.key_mgr and again.digest() == trust.digest()
    # checked again at the time asked: expired by then
    assert stored_trust(upstream.root_bytes, kept, NOW + timedelta(days=400)).key_mgr is None
    # fetched from elsewhere than the mirror now says: not used
    here = trust.stored(upstream.root_bytes, "https://up.example/a")
    assert stored_trust(upstream.root_bytes, here, NOW, "https://up.example/a").key_mgr
    moved = stored_trust(upstream.root_bytes, here, NOW, "https://up.example/b")
    assert moved.key_mgr is None and "changed after the last run" in str(moved.problem)
    # another trusted root: what was fetched says nothing about it
    other = Upstream()
    changed = stored_trust(other.root_bytes, kept, NOW)
    assert changed.key_mgr is None and changed.unreachable
    assert "changed after the last run" in str(changed.problem)
    # a fetch failure is remembered as such
    del upstream.files[KEY_MGR]
    failed = establish_trust(upstream.root_bytes, upstream.fetch, NOW)
    again = stored_trust(upstream.root_bytes, failed.stored(upstream.root_bytes), NOW)
    assert again.unreachable and again.problem == failed.problem
