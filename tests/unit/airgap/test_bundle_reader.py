"""Issue 15, proof: a bad package bundle is refused before anything is taken from it, each with
its reason and a stable code (``open_bundle``, ``verify``, ``OpenBundle.stream``), and
``select_bundle`` applies a channel's bundles in order (a full one, then its incrementals)."""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.airgap.bundle import BundleTrust, OpenBundle, open_bundle, verify
from stockade.airgap.errors import BundleRefusedError
from stockade.airgap.imports import select_bundle
from stockade.airgap.manifest import (
    MANIFEST,
    SIGNATURE,
    manifest_bytes,
    package_path,
    repodata_path,
)
from stockade.core.safezip import ZipLimits
from stockade.signing.builders import new_chain
from stockade.signing.keys import public_hex
from tests.support.airgap_bundles import (
    bundle_id,
    edited,
    head_members,
    make_manifest,
    write_bundle,
    write_raw,
)

KEY = Ed25519PrivateKey.generate()
TRUST = BundleTrust(keys=(public_hex(KEY),))
LIMITS = ZipLimits()
NOW = datetime.now(UTC)
REPODATA = repodata_path("noarch")
PKG = package_path("noarch", "tool-1.0-0.conda")
OTHER = package_path("noarch", "lib-2.0-1.tar.bz2")


def members() -> dict[str, bytes]:
    return {REPODATA: b"(zst repodata)", PKG: os.urandom(5000), OTHER: os.urandom(300)}


@pytest.fixture
def opened() -> Iterator[list[OpenBundle]]:
    found: list[OpenBundle] = []
    yield found
    for bundle in found:
        bundle.close()


def _open(path: Path, opened: list[OpenBundle], limits: ZipLimits = LIMITS) -> OpenBundle:
    bundle = open_bundle(path, limits)
    opened.append(bundle)
    return bundle


def _refused(
    path: Path, opened: list[OpenBundle], trust: BundleTrust = TRUST
) -> BundleRefusedError:
    """The refusal of the whole read: open, verify, then every file streamed."""
    with pytest.raises(BundleRefusedError) as caught:
        _read_all(path, opened, trust)
    return caught.value


def _read_all(path: Path, opened: list[OpenBundle], trust: BundleTrust) -> None:
    bundle = _open(path, opened)
    verify(bundle, trust, NOW)
    for name in bundle.manifest.files:
        bundle.read(name)


def test_a_good_bundle_reads_whole(tmp_path: Path, opened: list[OpenBundle]) -> None:
    content = members()
    bundle = _open(write_bundle(tmp_path / "good.zip", content, key=KEY), opened)
    verify(bundle, TRUST, NOW)
    assert bundle.signed_by == [public_hex(KEY)]
    assert {name: bundle.read(name) for name in bundle.manifest.files} == content


def test_package_names_starting_with_an_underscore_are_read(
    tmp_path: Path, opened: list[OpenBundle]
) -> None:
    """``_r-mutex``, ``_openmp_mutex``: real package names (conda allows one leading ``_``)."""
    content = {
        REPODATA: b"zst",
        package_path("noarch", "_r-mutex-1.0.0-anacondar_1.tar.bz2"): b"a",
        package_path("noarch", "_openmp_mutex-4.5-2_gnu.conda"): b"b",
    }
    bundle = _open(write_bundle(tmp_path / "u.zip", content, key=KEY), opened)
    verify(bundle, TRUST, NOW)
    assert set(bundle.manifest.package_files("noarch")) == {
        "_r-mutex-1.0.0-anacondar_1.tar.bz2",
        "_openmp_mutex-4.5-2_gnu.conda",
    }


# -- contents that differ from what was signed -----------------------------------------------------


def test_tampered_file_is_refused_while_streaming(tmp_path: Path, opened: list[OpenBundle]) -> None:
    content = members()
    evil = bytearray(content[PKG])
    evil[100] ^= 0xFF
    path = write_bundle(tmp_path / "t.zip", content, key=KEY, replace={PKG: bytes(evil)})
    bundle = _open(path, opened)
    verify(bundle, TRUST, NOW)  # the manifest and its signature are intact
    received: list[bytes] = []
    with pytest.raises(BundleRefusedError) as caught:
        received.extend(bundle.stream(PKG))
    assert caught.value.code == "airgap:bad-file"
    assert PKG in caught.value.detail and "sha256" in caught.value.detail
    assert sum(map(len, received)) == len(evil)  # the caller has them, and discards them


def test_tampered_manifest_is_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    content = members()
    manifest = make_manifest(content)
    signed = manifest_bytes(manifest)
    changed = edited(signed, created="2030-01-01T00:00:00+00:00")
    # the manifest changed, its signature kept: the signature names another manifest
    path = write_bundle(
        tmp_path / "m.zip", content, key=KEY, manifest=manifest, manifest_data=changed,
        signed_data=signed,
    )  # fmt: skip
    error = _refused(path, opened)
    assert error.code == "airgap:bad-signature"
    assert error.extra["member"] == SIGNATURE
    # ... and with the envelope rewritten to name the new manifest, the signature fails
    sig_doc = orjson.loads(head_members(manifest, KEY, manifest_data=signed)[SIGNATURE])
    sig_doc["signed"]["manifest_sha256"] = hashlib.sha256(changed).hexdigest()
    path2 = tmp_path / "m2.zip"
    write_raw(
        path2,
        [(MANIFEST, changed), (SIGNATURE, orjson.dumps(sig_doc)), *content.items()],
    )
    error = _refused(path2, opened)
    assert error.code == "airgap:untrusted"


def test_wrong_key_is_refused_naming_the_trusted_one(
    tmp_path: Path, opened: list[OpenBundle]
) -> None:
    other = Ed25519PrivateKey.generate()
    error = _refused(write_bundle(tmp_path / "w.zip", members(), key=other), opened)
    assert error.code == "airgap:untrusted"
    assert "not signed by a trusted key" in error.detail
    assert public_hex(KEY)[:8] in error.detail or "trusted:" in error.detail


def test_unsigned_bundle_is_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    error = _refused(write_bundle(tmp_path / "u.zip", members(), key=None), opened)
    assert error.code == "airgap:unsigned"


def test_no_trusted_key_configured_is_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    path = write_bundle(tmp_path / "n.zip", members(), key=KEY)
    error = _refused(path, opened, BundleTrust())
    assert error.code == "airgap:no-trusted-key"
    assert "trusted_keys" in error.detail


# -- the zip itself ------------------------------------------------------------------------------


def test_truncated_zip_is_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    path = write_bundle(tmp_path / "cut.zip", members(), key=KEY)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        path.write_bytes(data[:cut])
        assert _refused(path, opened).code == "airgap:zip-not-zip"


def _signed_head(content: dict[str, bytes]) -> list[tuple[str, bytes]]:
    return list(head_members(make_manifest(content), KEY).items())


@pytest.mark.parametrize(
    "name",
    ["../x.conda", "pkgs/noarch/../../x", "/etc/cron.d/x", "pkgs\\noarch\\x.conda", "C:/x"],
)
def test_zip_slip_names_are_refused(tmp_path: Path, opened: list[OpenBundle], name: str) -> None:
    content = members()
    path = write_raw(
        tmp_path / "slip.zip", [*_signed_head(content), *content.items(), (name, b"x")]
    )
    error = _refused(path, opened)
    assert error.code == "airgap:zip-name"
    assert "unsafe member name" in error.detail


def test_duplicate_names_are_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    content = members()
    path = write_raw(
        tmp_path / "dup.zip", [*_signed_head(content), *content.items(), (PKG, b"other bytes")]
    )
    error = _refused(path, opened)
    assert error.code == "airgap:zip-duplicate"
    assert error.extra["member"] == PKG


def test_declared_sizes_over_the_limits_are_refused(
    tmp_path: Path, opened: list[OpenBundle]
) -> None:
    path = write_bundle(tmp_path / "big.zip", members(), key=KEY)
    with pytest.raises(BundleRefusedError) as caught:
        _open(path, opened, ZipLimits(max_member=4000))
    assert caught.value.code == "airgap:zip-too-large"
    assert caught.value.extra["member"] == PKG
    with pytest.raises(BundleRefusedError) as caught:
        _open(path, opened, ZipLimits(max_total=5000))
    assert caught.value.code == "airgap:zip-too-large"
    with pytest.raises(BundleRefusedError) as caught:
        _open(path, opened, ZipLimits(max_members=3))
    assert caught.value.code == "airgap:zip-too-many"


def test_members_counted_from_the_end_record_before_the_directory_is_read(
    tmp_path: Path, opened: list[OpenBundle]
) -> None:
    """A zip declaring more entries than allowed is refused from its end records, before
    :mod:`zipfile` builds an object per entry of its central directory."""
    path = write_bundle(tmp_path / "many.zip", members(), key=KEY)
    with pytest.raises(BundleRefusedError) as caught:
        _open(path, opened, ZipLimits(max_members=3))
    assert "declares" in caught.value.detail


def _bomb(path: Path, content: dict[str, bytes], declared: int) -> bytes:
    """A zip whose first member (PKG, deflated) inflates to far more than it declares."""
    real = b"\0" * 2_000_000
    head = real[:declared]
    listed = {**content, PKG: head}
    write_raw(
        path,
        [(PKG, real), *_signed_head(listed), *((k, v) for k, v in content.items() if k != PKG)],
        compression=zipfile.ZIP_DEFLATED,
    )
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 14, zlib.crc32(real))  # local header: crc kept, sizes cut
    struct.pack_into("<I", data, 22, declared)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))
    return head


def test_member_inflating_beyond_its_declared_size_is_refused(
    tmp_path: Path, opened: list[OpenBundle]
) -> None:
    """A bundle's members are stored: a deflated one (2 MB of zeros declared as 1000 bytes) is
    refused before anything is inflated; a stored one whose sizes disagree too."""
    path = tmp_path / "bomb.zip"
    _bomb(path, members(), declared=1000)
    with pytest.raises(BundleRefusedError) as caught:
        _open(path, opened)
    assert caught.value.code == "airgap:zip-method"
    assert caught.value.extra["member"] == PKG
    content = members()
    path = write_bundle(tmp_path / "stored.zip", content, key=KEY)
    data = bytearray(path.read_bytes())
    for offset in _central_offsets(data):
        name_len = struct.unpack_from("<H", data, offset + 28)[0]
        if data[offset + 46 : offset + 46 + name_len] == PKG.encode():
            struct.pack_into("<I", data, offset + 20, len(content[PKG]) * 100)
    path.write_bytes(bytes(data))
    with pytest.raises(BundleRefusedError) as caught:
        _open(path, opened)
    assert caught.value.code == "airgap:zip-corrupt"


def _central_offsets(data: bytearray) -> Iterator[int]:
    offset = data.find(b"PK\x01\x02")
    while offset >= 0:
        yield offset
        offset = data.find(b"PK\x01\x02", offset + 4)


# -- the zip and its manifest disagree -----------------------------------------------------------


def test_unlisted_member_is_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    extra = {package_path("noarch", "smuggled-1-0.conda"): b"x"}
    error = _refused(write_bundle(tmp_path / "x.zip", members(), key=KEY, extra=extra), opened)
    assert error.code == "airgap:unlisted"
    assert "smuggled" in error.detail


def test_listed_member_missing_is_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    content = members()
    manifest = make_manifest(content)
    del content[OTHER]
    error = _refused(write_bundle(tmp_path / "m.zip", content, key=KEY, manifest=manifest), opened)
    assert error.code == "airgap:missing"
    assert error.extra["member"] == OTHER


def test_size_other_than_listed_is_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    content = members()
    path = write_bundle(tmp_path / "s.zip", content, key=KEY, replace={OTHER: b"short"})
    error = _refused(path, opened)
    assert error.code == "airgap:bad-file"
    assert "the manifest says 300" in error.detail


def _with_manifest(tmp_path: Path, **changes: object) -> Path:
    content = members()
    manifest = make_manifest(content)
    data = edited(manifest_bytes(manifest), **changes)
    return write_bundle(tmp_path / "f.zip", content, key=KEY, manifest=manifest, manifest_data=data)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"bundle_id": "../../etc"}, "bundle_id must look like"),
        ({"parent_id": "x"}, "parent_id must look like"),
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"format": "stockade-cve-bundle"}, "not a Stockade package bundle"),
        ({"channel": "../main"}, "channel:"),
        ({"channel": "a/b/c/d/e/f/g/h/i"}, "channel:"),
        ({"subdirs": {"../x": {"repodata": "repodata/../x/repodata.json.zst"}}}, "not a subdir"),
        ({"files": {"etc/passwd": {"sha256": "0" * 64, "size": 1}}}, "not a member"),
        ({"files": {"pkgs/noarch/../../x.conda": {"sha256": "0" * 64, "size": 1}}}, "not a member"),
        ({"files": {"pkgs/linux-64/a-1-0.conda": {"sha256": "0" * 64, "size": 1}}}, "not a member"),
        ({"files": {"pkgs/noarch/x.exe": {"sha256": "0" * 64, "size": 1}}}, "not a member"),
        ({"files": {REPODATA: {"sha256": "zz", "size": 1}}}, "needs a sha256"),
        ({"files": {REPODATA: {"sha256": "0" * 64, "size": -1}}}, "needs a size"),
        ({"files": {}}, "is not listed in files"),
    ],
)
def test_wrong_manifest_field_is_refused(
    tmp_path: Path, opened: list[OpenBundle], changes: dict[str, object], words: str
) -> None:
    error = _refused(_with_manifest(tmp_path, **changes), opened)
    assert error.code == "airgap:bad-manifest"
    assert words in error.detail


def test_no_manifest_is_refused(tmp_path: Path, opened: list[OpenBundle]) -> None:
    error = _refused(write_raw(tmp_path / "nm.zip", list(members().items())), opened)
    assert "no manifest.json" in error.detail


# -- trust through a root chain ------------------------------------------------------------------


def _chain(
    pkg_mgr: Ed25519PrivateKey, key_mgr_signer: Ed25519PrivateKey | None = None
) -> tuple[bytes, dict[str, bytes]]:
    """(trusted root bytes, the signing/ members) of a fresh chain delegating to ``pkg_mgr``;
    ``key_mgr_signer`` signs key_mgr.json instead of the key the root delegates to."""
    root_key, key_mgr_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    root, key_mgr = new_chain(root_key, key_mgr_key, public_hex(pkg_mgr), NOW)
    if key_mgr_signer is not None:
        _, key_mgr = new_chain(root_key, key_mgr_signer, public_hex(pkg_mgr), NOW)
    root_bytes = orjson.dumps(root)
    return root_bytes, {
        "signing/1.root.json": root_bytes,
        "signing/key_mgr.json": orjson.dumps(key_mgr),
    }


def test_bundle_trusted_through_a_root_chain_is_accepted(
    tmp_path: Path, opened: list[OpenBundle]
) -> None:
    pkg_mgr = Ed25519PrivateKey.generate()
    root, signing = _chain(pkg_mgr)
    content = members()
    path = write_bundle(
        tmp_path / "c.zip", content, key=pkg_mgr, manifest=make_manifest(content), extra=signing
    )
    bundle = _open(path, opened)
    verify(bundle, BundleTrust(root=root), NOW)
    assert bundle.signed_by == [public_hex(pkg_mgr)]
    assert bundle.read(PKG) == content[PKG]


def test_bundle_whose_chain_does_not_verify_is_refused(
    tmp_path: Path, opened: list[OpenBundle]
) -> None:
    pkg_mgr = Ed25519PrivateKey.generate()
    root, signing = _chain(pkg_mgr, key_mgr_signer=Ed25519PrivateKey.generate())
    content = members()
    path = write_bundle(tmp_path / "c.zip", content, key=pkg_mgr, extra=signing)
    error = _refused(path, opened, BundleTrust(root=root))
    assert error.code == "airgap:untrusted"
    assert "trust chain does not verify" in error.detail
    # a chain that verifies but delegates to another key than the signer's
    root, signing = _chain(Ed25519PrivateKey.generate())
    path = write_bundle(tmp_path / "d.zip", content, key=pkg_mgr, extra=signing)
    error = _refused(path, opened, BundleTrust(root=root))
    assert error.code == "airgap:untrusted"
    assert "not signed by a trusted key" in error.detail
    # a chain missing from the bundle
    path = write_bundle(tmp_path / "e.zip", content, key=pkg_mgr)
    assert _refused(path, opened, BundleTrust(root=root)).code == "airgap:untrusted"


# -- select_bundle -------------------------------------------------------------------------------


def test_full_then_incremental_are_applied_in_order(tmp_path: Path) -> None:
    full_id, inc_id = bundle_id(0), bundle_id(60)
    # named so that the folder lists the incremental first
    write_bundle(tmp_path / "a_inc.zip", members(), key=KEY, bundle=inc_id, parent_id=full_id)
    write_bundle(tmp_path / "b_full.zip", members(), key=KEY, bundle=full_id)
    first = select_bundle(tmp_path, 0, "main", set(), TRUST, LIMITS, NOW)
    try:
        assert first.chosen is not None
        assert first.chosen.manifest.bundle_id == full_id
        assert first.waiting == 1 and not first.refused
    finally:
        assert first.chosen is not None
        first.chosen.close()
    second = select_bundle(tmp_path, 0, "main", {full_id}, TRUST, LIMITS, NOW)
    try:
        assert second.chosen is not None
        assert second.chosen.manifest.bundle_id == inc_id
        assert second.waiting == 0 and not second.refused
        assert [m.bundle_id for _, m in second.repeated] == [full_id]  # set aside, not again
    finally:
        assert second.chosen is not None
        second.chosen.close()


def test_incremental_without_its_parent_is_refused_naming_it(tmp_path: Path) -> None:
    parent = bundle_id(0)
    write_bundle(tmp_path / "inc.zip", members(), key=KEY, bundle=bundle_id(5), parent_id=parent)
    selection = select_bundle(tmp_path, 0, "main", set(), TRUST, LIMITS, NOW)
    assert selection.chosen is None
    (refusal,) = selection.refused
    assert refusal.error.code == "airgap:missing-parent"
    assert parent in refusal.error.detail


def test_bundles_of_another_channel_are_left_alone(tmp_path: Path) -> None:
    write_bundle(tmp_path / "other.zip", members(), key=KEY, channel="elsewhere")
    selection = select_bundle(tmp_path, 0, "main", set(), TRUST, LIMITS, NOW)
    assert selection.chosen is None
    assert not selection.refused and not selection.repeated and not selection.waiting
    assert (tmp_path / "other.zip").is_file()


def test_a_zip_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conda_main_airgap.zip").write_bytes(b"not a zip at all" * 100)
    selection = select_bundle(tmp_path, 0, "main", set(), TRUST, LIMITS, NOW)
    (refusal,) = selection.refused
    assert refusal.error.code == "airgap:zip-not-zip"
    assert refusal.manifest is None


# -- an attacker's review: what the reader shows, reads and writes -------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "pkgs/noarch/\x1b[2J\x1b[31mfake\nrun completed.conda",
        "pkgs/noarch/\u202egnp.conda",
        "pkgs/noarch/" + "\x07" * 5000,
    ],
)
def test_unsafe_names_are_shown_escaped_in_the_reason(
    tmp_path: Path, opened: list[OpenBundle], name: str
) -> None:
    """A refused member's name goes into the run log, the result file and the history: its
    control characters (terminal escapes, new lines, bidi overrides) escaped, its length bounded."""
    content = members()
    path = write_raw(tmp_path / "esc.zip", [*_signed_head(content), *content.items(), (name, b"")])
    error = _refused(path, opened)
    assert error.code == "airgap:zip-name"
    for text in (error.detail, str(error.extra["member"])):
        assert not any(c in text for c in "\x1b\n\x07\u202e"), text
        assert len(text) < 700


def test_unsafe_manifest_text_is_shown_escaped(tmp_path: Path, opened: list[OpenBundle]) -> None:
    bad_path = "pkgs/noarch/\x1b[31mred\n.conda"
    error = _refused(
        _with_manifest(tmp_path, files={bad_path: {"sha256": "0" * 64, "size": 1}}), opened
    )
    assert error.code == "airgap:bad-manifest"
    assert "\x1b" not in error.detail and "\n" not in error.detail
    assert "\x1b" not in str(error.extra["member"])
    error = _refused(_with_manifest(tmp_path, format_version="\x1b[2J\n"), opened)
    assert "\x1b" not in error.detail and "\n" not in error.detail


def test_source_keys_must_be_plain_text(tmp_path: Path, opened: list[OpenBundle]) -> None:
    """The manifest's summary (source included) lands in result files and the history, even for
    a refused bundle: its keys are checked like its values."""
    error = _refused(_with_manifest(tmp_path, source={"\x1b[31mserver\n": "x"}), opened)
    assert error.code == "airgap:bad-manifest"
    assert "\x1b" not in error.detail


def test_peek_reads_only_the_head_of_a_huge_manifest(tmp_path: Path) -> None:
    """Every run and every status call peeks at each zip in the folder: a manifest of 64 MB of
    blanks (64 KB deflated) is not read whole for that."""
    import tracemalloc

    from stockade.airgap.bundle import peek_format

    huge = b'{"format": "stockade-airgap-bundle",' + b" " * (64 << 20) + b'"x": 1}'
    path = write_raw(tmp_path / "huge.zip", [(MANIFEST, huge)], compression=zipfile.ZIP_DEFLATED)
    del huge
    tracemalloc.start()
    try:
        found = peek_format(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == "stockade-airgap-bundle"
    assert peak < 8 << 20, f"peak {peak >> 20} MiB"


def test_peek_still_reads_a_small_manifest_in_any_key_order(tmp_path: Path) -> None:
    from stockade.airgap.bundle import peek_format

    doc = b'{"created": "x", "format": "stockade-cve-bundle"}'
    assert peek_format(write_raw(tmp_path / "cve.zip", [(MANIFEST, doc)])) == "stockade-cve-bundle"
    assert peek_format(write_raw(tmp_path / "none.zip", [("a", b"")])) is None
    (tmp_path / "junk.zip").write_bytes(b"junk")
    assert peek_format(tmp_path / "junk.zip") is None


def test_set_aside_does_not_follow_a_linked_outcome_folder(tmp_path: Path) -> None:
    """``refused/`` (or ``applied/``) copied into the folder as a link to elsewhere: nothing is
    moved or written through it, the run says why."""
    from stockade.airgap.errors import AirgapFolderError
    from stockade.airgap.folder import Outcome, check_layout, set_aside

    folder, elsewhere = tmp_path / "airgap", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "refused").symlink_to(elsewhere)
    dropped = folder / "b.zip"
    dropped.write_bytes(b"x")
    with pytest.raises(AirgapFolderError) as caught:
        set_aside(dropped, Outcome.REFUSED, {"state": "refused"})
    assert "refused" in caught.value.detail
    assert list(elsewhere.iterdir()) == []
    assert dropped.is_file()
    with pytest.raises(AirgapFolderError):
        check_layout(folder)
    (folder / "refused").unlink()
    (folder / "applied").write_bytes(b"a file, not a folder")
    with pytest.raises(AirgapFolderError):
        check_layout(folder)


def test_set_aside_does_not_write_through_a_planted_link(tmp_path: Path) -> None:
    from stockade.airgap.folder import Outcome, set_aside

    folder = tmp_path / "airgap"
    (folder / "refused").mkdir(parents=True)
    victim = tmp_path / "victim.toml"
    victim.write_bytes(b"keep me")
    for planted in ("b.zip.result.json.tmp", "b.zip.result.json"):
        (folder / "refused" / planted).symlink_to(victim)
    dropped = folder / "b.zip"
    dropped.write_bytes(b"x")
    target = set_aside(dropped, Outcome.REFUSED, {"state": "refused"})
    assert target == folder / "refused" / "b.zip"
    assert victim.read_bytes() == b"keep me"
    result = folder / "refused" / "b.zip.result.json"
    assert not result.is_symlink()
    assert orjson.loads(result.read_bytes()) == {"state": "refused"}


def test_an_older_bundle_than_the_newest_applied_is_refused(tmp_path: Path) -> None:
    """A signed full bundle made before the one applied last, never applied here, dropped
    later: applying it would roll the channel back (records removed since come back)."""
    newest, older = bundle_id(3600), bundle_id(0)
    write_bundle(tmp_path / "old.zip", members(), key=KEY, bundle=older)
    selection = select_bundle(tmp_path, 0, "main", {newest}, TRUST, LIMITS, NOW)
    assert selection.chosen is None
    (refusal,) = selection.refused
    assert refusal.error.code == "airgap:older"
    assert newest in refusal.error.detail
    # made in the same second: not older
    write_bundle(tmp_path / "old.zip", members(), key=KEY, bundle=bundle_id(3600))
    selection = select_bundle(tmp_path, 0, "main", {newest}, TRUST, LIMITS, NOW)
    assert selection.chosen is not None
    selection.chosen.close()


def test_a_link_is_not_opened_as_a_bundle(tmp_path: Path, opened: list[OpenBundle]) -> None:
    """The folder is listed without links, then each zip opened: a link swapped in between
    (to a file the server can read) is not followed."""
    real = write_bundle(tmp_path / "real.zip", members(), key=KEY)
    (tmp_path / "swapped.zip").symlink_to(real)
    with pytest.raises(BundleRefusedError) as caught:
        _open(tmp_path / "swapped.zip", opened)
    assert caught.value.code == "airgap:unreadable"
    assert "symbolic link" in caught.value.detail
    bundle = _open(real, opened)  # the file itself opens, and closes with its file
    bundle.close()
    assert bundle.file is not None and bundle.file.closed


def test_a_nested_channel_is_only_the_mirror_of_that_channel(tmp_path: Path) -> None:
    """A channel name with '/' names a channel, never a path: its bundle is taken by the mirror
    of exactly that channel, and by no other."""
    write_bundle(tmp_path / "nested.zip", members(), key=KEY, channel="org/team")
    for other in ("org", "team", "org/team/x"):
        selection = select_bundle(tmp_path, 0, other, set(), TRUST, LIMITS, NOW)
        assert selection.chosen is None and not selection.refused
    selection = select_bundle(tmp_path, 0, "org/team", set(), TRUST, LIMITS, NOW)
    assert selection.chosen is not None
    assert selection.chosen.manifest.channel == "org/team"
    selection.chosen.close()


def test_a_repeated_bundle_id_is_set_aside_as_applied_only_when_signed(tmp_path: Path) -> None:
    """A zip naming a bundle id applied before goes to ``applied/`` as "already applied" only if
    its signature verifies: otherwise anything could be filed there under a known id."""
    known = bundle_id(0)
    write_bundle(tmp_path / "again.zip", members(), key=KEY, bundle=known)
    write_bundle(tmp_path / "forged.zip", members(), key=Ed25519PrivateKey.generate(), bundle=known)
    selection = select_bundle(tmp_path, 0, "main", {known}, TRUST, LIMITS, NOW)
    assert [d.name for d, _ in selection.repeated] == ["again.zip"]
    (refusal,) = selection.refused
    assert refusal.dropped.name == "forged.zip"
    assert refusal.error.code == "airgap:untrusted"
