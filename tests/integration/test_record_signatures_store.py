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
