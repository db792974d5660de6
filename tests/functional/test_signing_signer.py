"""An external signer command (STOCKADE_SIGNING__SIGNER_COMMAND: an HSM or a cloud KMS behind a
small program) signs a channel's records; one that answers a wrong signature makes the publication
fail, recorded on the subdir, with the old index still served and no bad signature anywhere."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from stockade.signing import builders
from stockade.signing.keys import public_hex, write_key
from stockade.signing.models import RecordSignature
from tests.conftest import TESTDATA, own_server
from tests.support import trust_verifier as tv
from tests.support.server import LiveServer
from tests.support.signing import (
    get_json,
    post_metadata,
    repodata,
    shards,
    subdir_state,
    wait_failure,
)

# The signer process is what is tested; signatures are stored and published alike on both
# backends in test_signing_http.py.
pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("signing"), pytest.mark.one_backend]

COMMAND_ENV = "STOCKADE_SIGNING__SIGNER_COMMAND"
RECIPES = TESTDATA / "channels" / "test-recipes" / "noarch"
SIGNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(Path(sys.argv[1]).read_bytes(), password=None)
    wrong = Path(sys.argv[2]).read_text().strip() == "wrong"
    raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ).hex()
    print(raw, flush=True)
    for line in sys.stdin:
        data = bytes.fromhex(line.strip())
        print(key.sign(data + b"!" if wrong else data).hex(), flush=True)
    """
)


class Signer:
    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.key = Ed25519PrivateKey.generate()
        self.key_file = folder / "hsm.key"
        write_key(self.key_file, self.key, None)
        self.mode = folder / "mode"
        self.mode.write_text("good")
        self.script = folder / "signer.py"
        self.script.write_text(SIGNER)
        self.command = [sys.executable, str(self.script), str(self.key_file), str(self.mode)]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer(tmp_path_factory.mktemp("hsm") / "signer")


@pytest.fixture(scope="module")
def live(
    backend: str, tmp_path_factory: pytest.TempPathFactory, signer: Signer
) -> Iterator[LiveServer]:
    """A server configured by environment to sign with the signer command (no key file)."""
    os.environ[COMMAND_ENV] = json.dumps(signer.command)
    try:
        with own_server(backend, tmp_path_factory, "signer") as server:
            os.environ.pop(COMMAND_ENV)
            assert server.settings.signing.signer_command == signer.command
            root, key_mgr = builders.new_chain(
                Ed25519PrivateKey.generate(),
                Ed25519PrivateKey.generate(),
                public_hex(signer.key),
                datetime.now(UTC),
            )
            answer = post_metadata(server.admin, [root], key_mgr)
            assert answer.status_code == 200, answer.text
            yield server
    finally:
        os.environ.pop(COMMAND_ENV, None)


def _rows(live: LiveServer) -> int:
    with live.container.read_factory() as session:
        return int(session.scalar(select(func.count()).select_from(RecordSignature)) or 0)


def test_records_signed_by_the_signer_command_verify(live: LiveServer, signer: Signer) -> None:
    status = live.admin.get("/api/v1/signing").json()
    assert status["signer_ready"] is True and "external signer command" in status["signer"]
    channel = live.new_channel(prefix="hsm")
    assert live.admin.patch(f"/api/v1/channels/{channel}", json={"sign": True}).status_code == 200
    paths = [RECIPES / "dependency-1.0-0.conda", RECIPES / "dependent-1.0-0.conda"]
    assert live.upload(channel, *paths).status_code == 201
    live.wait_published(channel)
    client = live.client()
    key_mgr = get_json(client, "/signing/key_mgr.json")
    tv.verify_key_mgr(key_mgr, get_json(client, "/signing/1.root.json"))
    served = repodata(client, channel, "noarch")
    assert tv.verify_repodata(served, key_mgr) == 2
    assert all(list(s) == [public_hex(signer.key)] for s in served["signatures"].values())
    for shard in shards(client, channel, "noarch"):
        tv.verify_repodata(tv.shard_as_repodata(shard), key_mgr)


def test_a_wrong_signature_fails_the_publication_and_serves_nothing_new(
    live: LiveServer, signer: Signer
) -> None:
    channel = live.new_channel(prefix="hsm-bad")
    assert live.admin.patch(f"/api/v1/channels/{channel}", json={"sign": True}).status_code == 200
    assert live.upload(channel, RECIPES / "versioned-1.0-0.conda").status_code == 201
    live.wait_published(channel)
    client = live.client()
    before = repodata(client, channel, "noarch")
    rows = _rows(live)
    signer.mode.write_text("wrong")
    try:
        assert live.upload(channel, RECIPES / "versioned-2.0-0.conda").status_code == 201
        reason = wait_failure(live.admin, channel, "noarch")
        assert "does not verify with its public key" in reason, reason
        assert repodata(client, channel, "noarch") == before  # the old index, still signed
        assert _rows(live) == rows  # no bad signature stored
        status = live.admin.get("/api/v1/signing").json()
        assert status["signer_ready"] is True  # the command starts; its answers are wrong
    finally:
        signer.mode.write_text("good")
    live.wait_published(channel, timeout=60)  # the retry signs it
    served = repodata(client, channel, "noarch")
    assert set(served["signatures"]) == {"versioned-1.0-0.conda", "versioned-2.0-0.conda"}
    assert tv.verify_repodata(served, get_json(client, "/signing/key_mgr.json")) == 2
    assert subdir_state(live.admin, channel, "noarch")["failure"] is None
