"""RecordSigner's stored signatures on SQLite and PostgreSQL (signing/records.py ``_store``): a
batch is one executemany of INSERT … ON CONFLICT DO NOTHING, so two processes signing the same
records (each with an empty memory) both succeed and leave one row per record and key."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.settings import SigningSettings
from stockade.signing import builders
from stockade.signing.chain import install
from stockade.signing.keys import generate, public_hex, write_key
from stockade.signing.models import RecordSignature
from stockade.signing.records import BATCH, RecordSigner
from tests.support import trust_verifier as tv


def _records(count: int) -> list[tuple[str, bytes]]:
    return [
        (f"pkg-{i}-1.0-0.conda", json.dumps({"name": f"pkg-{i}", "version": "1.0"}).encode())
        for i in range(count)
    ]


def test_signatures_are_stored_once_when_two_signers_sign_the_same_records(
    container: Container, tmp_path: Path
) -> None:
    pkg_mgr = generate()
    root_env, key_mgr_env = builders.new_chain(
        generate(), generate(), public_hex(pkg_mgr), utcnow()
    )
    with transaction(container.factory) as session:
        install(session, [root_env], key_mgr_env)
    keys = tmp_path / "signing-keys"
    keys.mkdir()
    write_key(keys / "pkg.key", pkg_mgr, None)
    settings = SigningSettings(keys_dir=keys)
    records = _records(BATCH + 7)  # more than one batch
    first = RecordSigner(container.factory, settings, tmp_path).sign_records(records)
    # a second process whose lookup found nothing yet: it signs and stores the same rows again
    second = RecordSigner(container.factory, settings, tmp_path)
    second._lookup = lambda keys, digests: None  # type: ignore[method-assign]
    assert second.sign_records(records) == first
    with container.read_factory() as session:
        count = session.scalar(select(func.count()).select_from(RecordSignature))
        rows = session.execute(select(RecordSignature.digest, RecordSignature.signature)).all()
        stored = {str(digest): str(signature) for digest, signature in rows}
    assert count == len(records) == len(stored)
    for fn, rec in records[:3] + records[-3:]:
        tv.verify_record(json.loads(rec), first[fn], key_mgr_env)
        assert first[fn][public_hex(pkg_mgr)]["signature"] in stored.values()


def test_with_two_delegated_pkg_mgr_keys_a_record_is_signed_once(
    container: Container, tmp_path: Path
) -> None:
    """key_mgr may delegate several pkg_mgr keys; the server signs with the one it holds, and a
    record signed by one of them is not signed again (memory, then record_signatures)."""
    held, other = generate(), generate()
    keys_hex = [public_hex(held), public_hex(other)]
    key_mgr_key = generate()
    root_env, key_mgr_env = builders.new_chain(generate(), key_mgr_key, keys_hex[0], utcnow())
    key_mgr_env = builders.key_mgr_metadata(1, keys_hex, key_mgr_key, utcnow())
    with transaction(container.factory) as session:
        install(session, [root_env], key_mgr_env)
    folder = tmp_path / "signing-keys"
    folder.mkdir()
    write_key(folder / "held.key", held, None)
    settings = SigningSettings(keys_dir=folder)
    signer = RecordSigner(container.factory, settings, tmp_path)
    signed: list[int] = []
    original = signer._sign

    def spy(keys: list[str], todo: list[tuple[str, bytes, str]], *args: object) -> None:
        signed.append(len(todo))
        original(keys, todo, *args)

    signer._sign = spy  # type: ignore[method-assign,assignment]
    records = _records(5)
    first = signer.sign_records(records)
    assert signed == [5]
    assert all(set(entry) == {keys_hex[0]} for entry in first.values())
    assert signer.sign_records(records) == first  # memory has one of two keys: looked up
    fresh = RecordSigner(container.factory, settings, tmp_path)
    assert fresh.sign_records(records) == first  # a new process: found in the table
    assert signed == [5]
    for fn, rec in records:
        tv.verify_record(json.loads(rec), first[fn], key_mgr_env)
