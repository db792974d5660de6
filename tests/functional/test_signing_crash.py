"""A server killed in the middle of signing a channel serves the old index or the fully signed one,
never a partly signed one, and signs only what was left after the restart.

The server is a real subprocess (:mod:`tests.support.process`) that dies at ``signing:after-batch``
(the first batch of 1,000 record signatures is stored, the publication not switched). The channel
holds 1,500 records, written straight to the database as a passive mirror's records not fetched
yet (uploading 1,500 files would take minutes): what is signed is the record, not the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from stockade.channels.models import Artifact, Channel, PackageContent
from stockade.channels.publishing import request_publication
from stockade.conda.repodata import encode_record
from stockade.core.clock import utcnow
from stockade.db.engine import make_engine, make_session_factory, transaction
from stockade.signing.models import RecordSignature
from tests.conftest import PG_URL
from tests.support import trust_verifier as tv
from tests.support.process import ServerProcess
from tests.support.server import fresh_database
from tests.support.signing import (
    Trust,
    get_json,
    post_metadata,
    put_key,
    repodata,
    repodata_zst,
    shards,
)

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.xdist_group("signing-crash")]

KILLED = 137
RECORDS = 1500  # the signer stores signatures in batches of 1,000
SUBDIR = "linux-64"


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with fresh_database(backend, tmp_path, PG_URL) as db_url:
        live = ServerProcess(tmp_path, db_url)
        try:
            yield live
        finally:
            live.kill()
            live.stop()


def _record(i: int) -> tuple[str, dict[str, Any]]:
    name, version = f"signcrash{i % 40}", f"1.{i}"
    digest = hashlib.sha256(f"{name}-{version}".encode()).digest()
    record = {
        "build": "h0_0",
        "build_number": 0,
        "depends": [f"signcrash{(i + 1) % 40} >=1"],
        "license": "MIT",
        "md5": hashlib.md5(digest, usedforsecurity=False).hexdigest(),
        "name": name,
        "sha256": digest.hex(),
        "size": 1000 + i,
        "subdir": SUBDIR,
        "timestamp": 1_700_000_000_000 + i,
        "version": version,
    }
    return f"{name}-{version}-h0_0.conda", record


def _fill(db_url: str, channel: str) -> None:
    """RECORDS servable records in the channel's SUBDIR, and a publication request."""
    engine = make_engine(db_url)
    try:
        factory = make_session_factory(engine)
        now = utcnow()
        with transaction(factory) as session:
            channel_id = session.scalar(select(Channel.id).where(Channel.name == channel))
            assert channel_id is not None
            artifacts, contents = [], []
            for i in range(RECORDS):
                filename, record = _record(i)
                artifacts.append(
                    {
                        "channel_id": channel_id,
                        "subdir": SUBDIR,
                        "filename": filename,
                        "name": record["name"],
                        "version": record["version"],
                        "build": record["build"],
                        "build_number": 0,
                        "format": "conda",
                        "sha256": record["sha256"],
                        "md5": record["md5"],
                        "size": record["size"],
                        "record_json": encode_record(record),
                        "timestamp_ms": record["timestamp"],
                        "indexed_timestamp": record["timestamp"],
                        "license": "MIT",
                        # a passive mirror's records, not fetched yet: served, and not
                        # rescanned (there are no bytes to scan until a client asks)
                        "source": "mirror",
                        "scan_status": "unfetched",
                        "servable": True,
                        "created_at": now,
                    }
                )
                contents.append({"sha256": record["sha256"], "index_json": record})
            session.execute(insert(PackageContent), contents)
            session.execute(insert(Artifact), artifacts)
            request_publication(session, channel_id, SUBDIR)
    finally:
        engine.dispose()


def _signature_rows(db_url: str) -> dict[str, str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            query = select(RecordSignature.digest, RecordSignature.signature)
            found = {str(digest): str(sig) for digest, sig in conn.execute(query)}
            assert conn.scalar(select(func.count()).select_from(RecordSignature)) == len(found)
            return found
    finally:
        engine.dispose()


# One backend (CI time): stored signature batches are plain commits; tests/integration
# covers their storage on both backends.
@pytest.mark.one_backend
def test_a_kill_mid_signing_serves_old_or_whole_and_reuses_stored_signatures(
    server: ServerProcess,
) -> None:
    # One start for the whole first life: the crash point is reached only once the channel signs.
    server.start(crash_at="signing:after-batch")
    channel = server.new_channel("sign-crash")
    trust = Trust.new()
    put_key(server.data_dir / "keys", trust.pkg_mgr)
    with server.client() as client:
        assert post_metadata(client, trust.roots, trust.key_mgr_env).status_code == 200
    _fill(server.db_url, channel)
    server.wait_published(channel)
    with server.client() as client:
        old = repodata(client, channel, SUBDIR)
    assert len(old["packages.conda"]) == RECORDS and "signatures" not in old

    with server.client() as client, contextlib.suppress(httpx.TransportError):
        answer = client.patch(f"/api/v1/channels/{channel}", json={"sign": True})
        assert answer.status_code == 200, answer.text
    assert server.wait_exit() == KILLED, server.log_tail()
    before_restart = _signature_rows(server.db_url)
    assert len(before_restart) == 1000  # one batch stored, then the kill

    server.start(STOCKADE_LOG_LEVEL="info")
    deadline = time.monotonic() + 60
    with server.client() as client:
        while True:
            served = repodata(client, channel, SUBDIR)
            if "signatures" in served:
                break
            assert served == old  # never anything between old and whole
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.02)
        key_mgr = get_json(client, "/signing/key_mgr.json")
        assert set(served["signatures"]) == set(served["packages.conda"])
        assert tv.verify_repodata(served, key_mgr) == RECORDS
        assert tv.verify_repodata(repodata_zst(client, channel, SUBDIR), key_mgr) == RECORDS
        in_shards = sum(
            tv.verify_repodata(tv.shard_as_repodata(s), key_mgr)
            for s in shards(client, channel, SUBDIR)
        )
        assert in_shards == RECORDS
    after = _signature_rows(server.db_url)
    assert len(after) == RECORDS
    assert {d: after[d] for d in before_restart} == before_restart
    restarted = server.log_path.read_text().rsplit("=== start", 1)[1]
    assert f"signed {RECORDS - 1000} records" in restarted, restarted[-3000:]
    assert f"signed {RECORDS} records" not in restarted
