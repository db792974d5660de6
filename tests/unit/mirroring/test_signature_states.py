"""Upstream signatures in a mirror's evaluation: ``parse_repodata`` keeps each entry and notes
the records it changed, ``signature_checks`` judges them, and ``signed_only`` keeps the verified
ones with each other record's reason (issue 14)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from stockade.mirroring.inputs import SignatureStates, parse_repodata, signature_checks
from stockade.policies.engine import EvaluationContext, evaluate
from stockade.policies.model import Policy
from stockade.signing.builders import new_chain, sign_plain
from stockade.signing.keys import generate, public_hex
from stockade.signing.upstream import KEY_MGR, SignatureStatus, establish_trust

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _rec(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": "1", "build": "0", "sha256": "b" * 64, **extra}


def test_signed_only_keeps_verified_records_and_says_why_not_for_the_others() -> None:
    root_key, key_mgr_key, pkg = generate(), generate(), generate()
    root, key_mgr = new_chain(root_key, key_mgr_key, public_hex(pkg), NOW)
    records = {
        "good-1-0.conda": _rec("good"),
        "url-1-0.conda": _rec("url", url="https://up.example/x.conda", fn="x.conda"),
        "nulls-1-0.conda": _rec("nulls", license=None),
        "plain-1-0.conda": _rec("plain"),
        "bad-1-0.conda": _rec("bad"),
    }
    signatures = {
        fn: sign_plain(records[fn], [pkg])["signatures"]
        for fn in ("good-1-0.conda", "url-1-0.conda", "nulls-1-0.conda")
    }
    signatures["bad-1-0.conda"] = sign_plain(_rec("other"), [pkg])["signatures"]
    signatures["gone-1-0.conda"] = sign_plain(_rec("gone"), [pkg])["signatures"]  # no record
    doc = {"packages.conda": records, "signatures": signatures}
    up = parse_repodata("linux-64", json.dumps(doc).encode())
    assert set(up.signatures) == set(signatures) - {"gone-1-0.conda"}
    assert set(up.changed) == {"url-1-0.conda", "nulls-1-0.conda"}
    assert "(fn, url) that Stockade replaces" in up.changed["url-1-0.conda"]
    assert "null fields (license)" in up.changed["nulls-1-0.conda"]

    files = {"key_mgr.json": json.dumps(key_mgr).encode()}
    trust = establish_trust(json.dumps(root).encode(), files.get, NOW)
    assert trust.key_mgr is not None and KEY_MGR in trust.material
    checks = signature_checks({"linux-64": up}, trust)
    statuses = {fn: c.status for fn, c in checks["linux-64"].items()}
    assert statuses == {
        "good-1-0.conda": SignatureStatus.VERIFIED,
        "url-1-0.conda": SignatureStatus.DROPPED,
        "nulls-1-0.conda": SignatureStatus.DROPPED,
        "bad-1-0.conda": SignatureStatus.INVALID,
    }
    context = EvaluationContext(now=NOW, signatures=SignatureStates.of(checks))
    result = evaluate(
        [Policy(name="p", signed_only=True)], up.records, subdir="linux-64", context=context
    )
    assert result.kept == {"good-1-0.conda"}
    why = {fn: [r.detail for r in rs] for fn, rs in result.excluded.items()}
    assert why["plain-1-0.conda"] == ["no signature"]
    assert why["bad-1-0.conda"] == [
        "upstream signature invalid: the signature does not match the record"
    ]
    assert why["url-1-0.conda"][0].startswith("upstream signature dropped: the record names")


def test_a_filename_in_two_subdirs_is_verified_only_if_it_is_in_both() -> None:
    root_key, key_mgr_key, pkg = generate(), generate(), generate()
    root, key_mgr = new_chain(root_key, key_mgr_key, public_hex(pkg), NOW)
    trust = establish_trust(
        json.dumps(root).encode(), {"key_mgr.json": json.dumps(key_mgr).encode()}.get, NOW
    )
    fn = "same-1-0.tar.bz2"
    good = {
        "packages": {fn: _rec("same")},
        "signatures": {fn: sign_plain(_rec("same"), [pkg])["signatures"]},
    }
    bad = {"packages": {fn: _rec("same", depends=["x"])}, "signatures": good["signatures"]}
    parsed = {
        "linux-64": parse_repodata("linux-64", json.dumps(good).encode()),
        "noarch": parse_repodata("noarch", json.dumps(bad).encode()),
    }
    states = SignatureStates.of(signature_checks(parsed, trust))
    assert not states.is_signed(fn)
    assert "does not match" in states.why_unsigned(fn)
