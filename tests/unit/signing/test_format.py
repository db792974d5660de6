"""The conda-content-trust format as Stockade writes it, checked by an independent verifier
(tests/support/trust_verifier.py, written from the format's description), and Stockade's own
verification giving the same verdicts on tampered, revoked, expired and rotated metadata."""

from __future__ import annotations

import ast
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.signing import builders
from stockade.signing import format as fmt
from stockade.signing.errors import TrustMetadataError
from stockade.signing.keys import public_hex
from tests.support import trust_verifier as tv

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RECORD: dict[str, Any] = {
    "build": "py_0",
    "build_number": 0,
    "depends": ["python >=3.8", "zlib"],
    "license": "BSD-3-Clause",
    "md5": "0" * 32,
    "name": "flask",
    "sha256": "a" * 64,
    "size": 1234,
    "subdir": "noarch",
    "summary": "caf\u00e9 \u2603",
    "timestamp": 1700000000000,
    "version": "0.11.1",
}


class Keys:
    def __init__(self) -> None:
        self.root = Ed25519PrivateKey.generate()
        self.key_mgr = Ed25519PrivateKey.generate()
        self.pkg_mgr = Ed25519PrivateKey.generate()
        self.root_env, self.key_mgr_env = builders.new_chain(
            self.root, self.key_mgr, public_hex(self.pkg_mgr), NOW
        )

    def sign_record(self, record: dict[str, Any], key: Ed25519PrivateKey | None = None) -> Any:
        key = key or self.pkg_mgr
        return {public_hex(key): {"signature": key.sign(fmt.canonical(record)).hex()}}


@pytest.fixture
def keys() -> Keys:
    return Keys()


def test_the_verifier_shares_no_code_with_the_signer() -> None:
    source = Path(tv.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not any(name.startswith("stockade") for name in imported), imported


def test_canonical_bytes_are_indented_sorted_ascii_json() -> None:
    value = {"b": [1, {"z": 1, "a": "\u00e9"}], "a": None}
    assert fmt.canonical(value) == json.dumps(value, indent=2, sort_keys=True).encode()
    assert fmt.canonical(value) == tv.canonical(value)
    assert b"\\u00e9" in fmt.canonical(value)
    compact = json.dumps(value, separators=(",", ":")).encode()
    assert fmt.record_bytes(compact) == tv.canonical(value)


def test_a_new_chain_verifies_independently(keys: Keys) -> None:
    assert tv.verify_root(keys.root_env) == 1
    tv.verify_key_mgr(keys.key_mgr_env, keys.root_env, NOW)
    (entry,) = keys.root_env["signatures"].values()
    assert set(entry) == {"other_headers", "signature"}
    headers = bytes.fromhex(entry["other_headers"])
    assert headers[:4] == bytes([4, 0x00, 22, 8])  # v4, binary document, EdDSA, SHA-256
    (km_entry,) = keys.key_mgr_env["signatures"].values()
    assert set(km_entry) == {"signature"}  # key_mgr signatures are raw ed25519
    record = copy.deepcopy(RECORD)
    tv.verify_record(record, keys.sign_record(record), keys.key_mgr_env)


def test_root_signatures_are_openpgp_shaped_not_raw(keys: Keys) -> None:
    broken = copy.deepcopy(keys.root_env)
    (entry,) = broken["signatures"].values()
    raw = keys.root.sign(fmt.canonical(broken["signed"]))
    entry["signature"] = (
        raw.hex()
    )  # a raw signature of the canonical bytes is not what clients want
    with pytest.raises(tv.Untrusted):
        tv.verify_root(broken)
    with pytest.raises(TrustMetadataError):
        fmt.verify_envelope(broken, [public_hex(keys.root)], 1, what="root", openpgp=True)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.__setitem__("version", "0.11.2"),
        lambda r: r.__setitem__("sha256", "b" + r["sha256"][1:]),
        lambda r: r["depends"].append("evil"),
        lambda r: r.__setitem__("summary", r["summary"] + " "),
        lambda r: r.pop("license"),
    ],
    ids=["version", "sha256-byte", "depends", "summary", "field-removed"],
)
def test_a_changed_record_fails_both_verifiers(keys: Keys, change: Any) -> None:
    record = copy.deepcopy(RECORD)
    signatures = keys.sign_record(record)
    change(record)
    with pytest.raises(tv.Untrusted):
        tv.verify_record(record, signatures, keys.key_mgr_env)
    verdict = fmt.record_verdict(record, signatures, keys.key_mgr_env["signed"])
    assert verdict == "the signature does not match the record"


def test_a_flipped_signature_byte_fails(keys: Keys) -> None:
    record = copy.deepcopy(RECORD)
    signatures = keys.sign_record(record)
    (entry,) = signatures.values()
    entry["signature"] = ("1" if entry["signature"][0] != "1" else "2") + entry["signature"][1:]
    with pytest.raises(tv.Untrusted):
        tv.verify_record(record, signatures, keys.key_mgr_env)
    assert fmt.record_verdict(record, signatures, keys.key_mgr_env["signed"]) is not None


def test_rotating_pkg_mgr_revokes_the_old_key(keys: Keys) -> None:
    record = copy.deepcopy(RECORD)
    old_signatures = keys.sign_record(record)
    new_pkg = Ed25519PrivateKey.generate()
    rotated = builders.rotate_pkg_mgr(keys.key_mgr_env, keys.key_mgr, public_hex(new_pkg), NOW)
    assert rotated["signed"]["version"] == 2
    tv.verify_key_mgr(rotated, keys.root_env, NOW)
    tv.verify_record(record, keys.sign_record(record, new_pkg), rotated)
    with pytest.raises(tv.Untrusted):
        tv.verify_record(record, old_signatures, rotated)
    verdict = fmt.record_verdict(record, old_signatures, rotated["signed"])
    assert verdict == "signed by a key that key_mgr does not delegate pkg_mgr to"


def test_rotating_key_mgr_makes_root_2_and_the_old_root_rejects_the_new_key_mgr(
    keys: Keys,
) -> None:
    new_key_mgr = Ed25519PrivateKey.generate()
    root2, key_mgr2 = builders.rotate_key_mgr(
        keys.root_env, keys.key_mgr_env, keys.root, new_key_mgr, NOW
    )
    assert tv.verify_root(root2, keys.root_env) == 2
    tv.verify_key_mgr(key_mgr2, root2, NOW)
    with pytest.raises(tv.Untrusted):
        tv.verify_key_mgr(key_mgr2, keys.root_env, NOW)  # root 1 delegates to the old key
    with pytest.raises(TrustMetadataError):
        fmt.verify_key_mgr(keys.root_env, key_mgr2, NOW)
    assert fmt.verify_root_update(keys.root_env, root2)["version"] == 2
    # pkg_mgr is unchanged: records signed before still verify under the new key_mgr
    record = copy.deepcopy(RECORD)
    tv.verify_record(record, keys.sign_record(record), key_mgr2)


def test_rotating_root_is_signed_by_the_old_and_the_new_key(keys: Keys) -> None:
    new_root = Ed25519PrivateKey.generate()
    root2 = builders.rotate_root(keys.root_env, keys.root, new_root, NOW)
    assert set(root2["signatures"]) == {public_hex(keys.root), public_hex(new_root)}
    assert tv.verify_root(root2, keys.root_env) == 2
    tv.verify_key_mgr(keys.key_mgr_env, root2, NOW)  # still delegates key_mgr to the same key
    newer = Ed25519PrivateKey.generate()
    root3 = builders.rotate_root(root2, new_root, newer, NOW)
    assert tv.verify_root_chain([keys.root_env, root2, root3]) is root3
    # Without the old key's signature the chain breaks, for both verifiers.
    only_new = copy.deepcopy(root2)
    del only_new["signatures"][public_hex(keys.root)]
    with pytest.raises(tv.Untrusted):
        tv.verify_root(only_new, keys.root_env)
    with pytest.raises(TrustMetadataError):
        fmt.verify_root_update(keys.root_env, only_new)
    # Without the new key's own signature, too.
    only_old = copy.deepcopy(root2)
    del only_old["signatures"][public_hex(new_root)]
    with pytest.raises(tv.Untrusted):
        tv.verify_root(only_old, keys.root_env)
    with pytest.raises(TrustMetadataError):
        fmt.verify_root_update(keys.root_env, only_old)
    # A root that skips a version does not chain.
    with pytest.raises(tv.Untrusted):
        tv.verify_root(root3, keys.root_env)
    with pytest.raises(TrustMetadataError, match="does not follow"):
        fmt.verify_root_update(keys.root_env, root3)


def test_an_expired_key_mgr_is_refused_by_both(keys: Keys) -> None:
    past = NOW - timedelta(days=30)
    stale = builders.rotate_pkg_mgr(
        keys.key_mgr_env, keys.key_mgr, public_hex(keys.pkg_mgr), past, days=1
    )
    tv.verify_delegation("key_mgr", stale, keys.root_env)  # well signed...
    assert tv.expired(stale, NOW)
    with pytest.raises(tv.Untrusted, match="expired"):
        tv.verify_key_mgr(stale, keys.root_env, NOW)
    with pytest.raises(TrustMetadataError, match="expired"):
        fmt.verify_key_mgr(keys.root_env, stale, NOW)
    assert not tv.expired(keys.key_mgr_env, NOW)


def test_a_key_mgr_signed_by_the_wrong_key_is_refused(keys: Keys) -> None:
    intruder = Ed25519PrivateKey.generate()
    forged = builders.rotate_pkg_mgr(keys.key_mgr_env, intruder, public_hex(intruder), NOW)
    with pytest.raises(tv.Untrusted):
        tv.verify_key_mgr(forged, keys.root_env, NOW)
    with pytest.raises(TrustMetadataError, match="0 good signature"):
        fmt.verify_key_mgr(keys.root_env, forged, NOW)


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ([], "not an envelope"),
        ({"signed": {}}, "no 'signatures'"),
        ({"signed": {"type": "key_mgr"}, "signatures": {}}, "given as root"),
        ({"signed": {"type": "root", "version": 0}, "signatures": {}}, "version"),
        ({"signed": {"type": "root", "version": True}, "signatures": {}}, "version"),
        (
            {"signed": {"type": "root", "version": 1, "expiration": "soon"}, "signatures": {}},
            "YYYY",
        ),
        (
            {
                "signed": {"type": "root", "version": 1, "expiration": "2030-01-01T00:00:00Z"},
                "signatures": {},
            },
            "delegations",
        ),
    ],
)
def test_malformed_metadata_is_named(envelope: Any, message: str) -> None:
    with pytest.raises(TrustMetadataError, match=message):
        fmt.check_delegating(envelope, "root")


def test_a_bad_public_key_in_a_delegation_is_named(keys: Keys) -> None:
    signed = copy.deepcopy(keys.root_env["signed"])
    signed["delegations"]["key_mgr"]["pubkeys"] = ["not-hex"]
    with pytest.raises(TrustMetadataError, match="64-hex"):
        fmt.check_delegating({"signed": signed, "signatures": {}}, "root")


def test_timestamps_and_spec_version(keys: Keys) -> None:
    signed = keys.root_env["signed"]
    assert signed["timestamp"] == "2026-06-01T12:00:00Z"
    assert signed["expiration"] == "2027-06-01T12:00:00Z"
    assert signed["metadata_spec_version"] == "0.6.0"
    assert signed["delegations"]["root"] == {"pubkeys": [public_hex(keys.root)], "threshold": 1}


def test_signatures_tried_per_envelope_are_bounded() -> None:
    """An upstream record listing many bad signatures by authorized keys costs at most
    MAX_SIGNATURES_CHECKED verifications: a good one listed after them is not reached, one listed
    among the first is found."""
    record = {"name": "x", "version": "1", "build": "0"}
    keys = [Ed25519PrivateKey.generate() for _ in range(fmt.MAX_SIGNATURES_CHECKED + 2)]
    hexes = [public_hex(k) for k in keys]
    bad = {h: {"signature": "00" * 64} for h in hexes[:-1]}
    good = {hexes[-1]: {"signature": keys[-1].sign(fmt.canonical(record)).hex()}}
    late = {"signed": record, "signatures": {**bad, **good}}
    assert fmt.good_signers(late, hexes, openpgp=False) == set()
    early = {"signed": record, "signatures": {**good, **bad}}
    assert fmt.good_signers(early, hexes, openpgp=False) == {hexes[-1]}
