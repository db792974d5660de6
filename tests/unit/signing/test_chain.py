"""The server's trust chain (signing/chain.py) on a real database: what it accepts, what it refuses
and that a refusal stores nothing; and RecordSigner signing only records not signed before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from stockade.db.engine import make_engine, make_session_factory, transaction
from stockade.settings import SigningSettings
from stockade.signing import builders
from stockade.signing.chain import install, load_chain, metadata_file
from stockade.signing.errors import SignerUnavailableError, SigningExistsError, TrustMetadataError
from stockade.signing.format import parse_metadata
from stockade.signing.keys import public_hex, write_key
from stockade.signing.models import RecordSignature, TrustMetadata
from stockade.signing.records import RecordSigner
from tests.support import trust_verifier as tv
from tests.support.server import fresh_database

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    with fresh_database("sqlite", tmp_path, None, migrated=True) as url:
        engine = make_engine(url)
        yield make_session_factory(engine)
        engine.dispose()


class Trust:
    def __init__(self) -> None:
        self.root = Ed25519PrivateKey.generate()
        self.key_mgr = Ed25519PrivateKey.generate()
        self.pkg_mgr = Ed25519PrivateKey.generate()
        self.root1, self.key_mgr1 = builders.new_chain(
            self.root, self.key_mgr, public_hex(self.pkg_mgr), NOW
        )


@pytest.fixture
def trust(factory: sessionmaker[Session]) -> Trust:
    made = Trust()
    with transaction(factory) as session:
        _chain, changed = install(session, [made.root1], made.key_mgr1)
    assert changed
    return made


def _rows(factory: sessionmaker[Session]) -> list[tuple[str, int]]:
    with factory() as session:
        return [
            (r.role, r.version)
            for r in session.scalars(select(TrustMetadata).order_by(TrustMetadata.id))
        ]


def _refused(factory: sessionmaker[Session], error: type[Exception], match: str, **kw: Any) -> None:
    before = _rows(factory)
    with pytest.raises(error, match=match), transaction(factory) as session:
        install(session, kw.get("roots", []), kw.get("key_mgr"), kw.get("now"))
    assert _rows(factory) == before  # nothing stored


def test_served_files_are_the_stored_metadata(factory: sessionmaker[Session], trust: Trust) -> None:
    with factory() as session:
        root = metadata_file(session, "1.root.json")
        key_mgr = metadata_file(session, "key_mgr.json")
        assert metadata_file(session, "2.root.json") is None
        assert metadata_file(session, "x.root.json") is None
        assert metadata_file(session, "9999999999.root.json") is None
    assert root is not None and key_mgr is not None
    tv.verify_root(json.loads(root))
    tv.verify_key_mgr(json.loads(key_mgr), json.loads(root))
    assert json.loads(root) == trust.root1


def test_a_second_first_root_is_refused(factory: sessionmaker[Session], trust: Trust) -> None:
    other = Trust()
    _refused(factory, SigningExistsError, "set up already", roots=[other.root1], key_mgr=None)


def test_rotations_are_accepted_in_order(factory: sessionmaker[Session], trust: Trust) -> None:
    new_pkg = Ed25519PrivateKey.generate()
    key_mgr2 = builders.rotate_pkg_mgr(trust.key_mgr1, trust.key_mgr, public_hex(new_pkg), NOW)
    with transaction(factory) as session:
        chain, changed = install(session, [], key_mgr2)
    assert changed and chain.pkg_mgr_keys == [public_hex(new_pkg)]
    new_km = Ed25519PrivateKey.generate()
    root2, key_mgr3 = builders.rotate_key_mgr(trust.root1, key_mgr2, trust.root, new_km, NOW)
    with transaction(factory) as session:
        chain, changed = install(session, [root2], key_mgr3)
    assert not changed and chain.root_version == 2 and chain.key_mgr_version == 3
    new_root = Ed25519PrivateKey.generate()
    root3 = builders.rotate_root(root2, trust.root, new_root, NOW)
    with transaction(factory) as session:
        chain, changed = install(session, [root3], None)
    assert not changed and chain.root_version == 3
    order = [("root", 1), ("key_mgr", 1), ("key_mgr", 2), ("root", 2), ("key_mgr", 3)]
    assert _rows(factory) == [*order, ("root", 3)]
    with factory() as session:
        served = [json.loads(metadata_file(session, f"{n}.root.json") or b"") for n in (1, 2, 3)]
        assert json.loads(metadata_file(session, "key_mgr.json") or b"") == key_mgr3
    assert tv.verify_root_chain(served) == root3
    tv.verify_key_mgr(key_mgr3, root3)


def test_bad_metadata_is_refused_and_nothing_is_stored(
    factory: sessionmaker[Session], trust: Trust
) -> None:
    intruder = Ed25519PrivateKey.generate()
    forged = builders.rotate_pkg_mgr(trust.key_mgr1, intruder, public_hex(intruder), NOW)
    _refused(factory, TrustMetadataError, "key_mgr.json: 0 good", key_mgr=forged)
    same = builders.rotate_pkg_mgr(trust.key_mgr1, trust.key_mgr, public_hex(trust.pkg_mgr), NOW)
    same["signed"]["version"] = 1
    same = builders.sign_plain(same["signed"], [trust.key_mgr])
    _refused(factory, TrustMetadataError, "not newer", key_mgr=same)
    stale = builders.rotate_pkg_mgr(
        trust.key_mgr1, trust.key_mgr, public_hex(trust.pkg_mgr), NOW - timedelta(days=9), days=2
    )
    _refused(factory, TrustMetadataError, "expired", key_mgr=stale)
    skip = builders.rotate_root(trust.root1, trust.root, intruder, NOW)
    skip = builders.sign_root({**skip["signed"], "version": 3}, [trust.root, intruder], NOW)
    _refused(factory, TrustMetadataError, "does not follow", roots=[skip])
    not_by_old = builders.rotate_root(trust.root1, intruder, intruder, NOW)
    _refused(factory, TrustMetadataError, "2.root.json: 0 good", roots=[not_by_old])
    past = NOW - timedelta(days=9)
    stale_root = builders.rotate_root(trust.root1, trust.root, intruder, past, root_days=2)
    _refused(factory, TrustMetadataError, "root metadata expired", roots=[stale_root])
    # a new root delegating key_mgr elsewhere, without a key_mgr signed by that key
    root2, _ = builders.rotate_key_mgr(trust.root1, trust.key_mgr1, trust.root, intruder, NOW)
    _refused(factory, TrustMetadataError, "key_mgr.json", roots=[root2])


def test_the_first_install_needs_a_self_signed_root_and_a_key_mgr(
    factory: sessionmaker[Session],
) -> None:
    made = Trust()
    _refused(factory, TrustMetadataError, "needed first", key_mgr=made.key_mgr1)
    _refused(factory, TrustMetadataError, "key_mgr.json is needed", roots=[made.root1])
    other = Ed25519PrivateKey.generate()
    unsigned = builders.sign_root(made.root1["signed"], [other], NOW)
    _refused(
        factory, TrustMetadataError, "1.root.json: 0 good", roots=[unsigned], key_mgr=made.key_mgr1
    )
    later = builders.sign_root({**made.root1["signed"], "version": 5}, [made.root], NOW)
    _refused(factory, TrustMetadataError, "must be version 1", roots=[later], key_mgr=made.key_mgr1)
    with factory() as session:
        assert load_chain(session) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"{not json", "not JSON"), (b"[1]", "not a JSON object"), (b" " * (2 << 20), "larger")],
)
def test_parse_metadata_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(TrustMetadataError, match=message):
        parse_metadata(data, "root.json")


# -- RecordSigner -------------------------------------------------------------------------------


class Counting:
    """A RecordSigner whose signer counts what it signs."""

    def __init__(self, signer: RecordSigner) -> None:
        self.signed = 0
        self.signer = signer
        original = signer._sign

        def spy(keys: Any, todo: list[Any], *args: Any) -> None:
            self.signed += len(todo)
            original(keys, todo, *args)

        signer._sign = spy  # type: ignore[method-assign,assignment]


def _records(count: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [
        (
            f"pkg-{i}-1.0-0.conda",
            json.dumps({"name": f"pkg-{i}", "version": "1.0", "build": "0"}).encode(),
        )
        for i in range(start, start + count)
    ]


def test_record_signer_signs_only_what_was_not_signed(
    factory: sessionmaker[Session], trust: Trust, tmp_path: Path
) -> None:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    write_key(keys_dir / "pkg.key", trust.pkg_mgr, None)
    settings = SigningSettings(keys_dir=keys_dir)
    first = Counting(RecordSigner(factory, settings, tmp_path))
    progress: list[tuple[int, int]] = []
    signed = first.signer.sign_records(_records(3), lambda d, t: progress.append((d, t)))
    assert first.signed == 3 and progress == [(3, 3)]
    for fn, rec in _records(3):
        tv.verify_record(json.loads(rec), signed[fn], trust.key_mgr1)
    again = first.signer.sign_records(_records(4))
    assert first.signed == 4  # only the new one
    assert {fn: again[fn] for fn in signed} == signed
    # a new process (empty cache) finds them in record_signatures
    fresh = Counting(RecordSigner(factory, settings, tmp_path))
    assert fresh.signer.sign_records(_records(4)) == again and fresh.signed == 0
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(RecordSignature)) == 4
    # a changed record is signed again
    changed = [(fn, rec.replace(b"1.0", b"1.1")) for fn, rec in _records(1)]
    assert fresh.signer.sign_records(changed)[changed[0][0]] != again[changed[0][0]]
    assert fresh.signed == 1


def test_record_signer_after_a_pkg_mgr_rotation_signs_everything_again(
    factory: sessionmaker[Session], trust: Trust, tmp_path: Path
) -> None:
    new_pkg = Ed25519PrivateKey.generate()
    for key in (trust.pkg_mgr, new_pkg):
        write_key(tmp_path / f"{public_hex(key)[:8]}.key", key, None)
    signer = Counting(RecordSigner(factory, SigningSettings(keys_dir=tmp_path), tmp_path))
    signer.signer.sign_records(_records(2))
    key_mgr2 = builders.rotate_pkg_mgr(trust.key_mgr1, trust.key_mgr, public_hex(new_pkg), NOW)
    with transaction(factory) as session:
        install(session, [], key_mgr2)
    result = signer.signer.sign_records(_records(2))
    assert signer.signed == 4
    for fn, rec in _records(2):
        assert list(result[fn]) == [public_hex(new_pkg)]
        tv.verify_record(json.loads(rec), result[fn], key_mgr2)


def test_record_signer_without_keys_says_why(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    signer = RecordSigner(factory, SigningSettings(keys_dir=tmp_path), tmp_path)
    with pytest.raises(SignerUnavailableError, match="signing init"):
        signer.sign_records(_records(1))
