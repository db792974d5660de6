"""Signed channels end to end over HTTP (SPEC §8, issue 14), checked with an independent verifier
(tests/support/trust_verifier.py) on SQLite and PostgreSQL.

One server for the module, its trust chain moving forward test by test: set up (with the refusals
of a server without keys first), signed channels verified (repodata.json, .zst, every shard),
only changed records signed, refusals of bad metadata, the pkg_mgr rotation (with a passphrase
key file), key_mgr and root rotations, an expired key_mgr, py-rattler, and no private key in the
database, the API or the logs.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from stockade.signing import builders
from stockade.signing.keys import public_hex
from stockade.signing.models import RecordSignature
from tests.conftest import TESTDATA, own_server
from tests.support import trust_verifier as tv
from tests.support.conda_client import install_records, solve_specs
from tests.support.server import LiveServer
from tests.support.signing import (
    Logs,
    Trust,
    get_json,
    leaks_in_database,
    new_user_token,
    post_metadata,
    problem_of,
    put_key,
    repodata,
    repodata_zst,
    secrets_of,
    shards,
    subdir_state,
    wait_failure,
)

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("signing")]

PASSPHRASE = b"pass phrase of the new pkg_mgr key"
PASS_ENV = "STOCKADE_SIGNING_PASSPHRASE"
RECIPES = TESTDATA / "channels" / "test-recipes" / "noarch"
SOLVABLE = [RECIPES / f"{n}.conda" for n in ("dependency-1.0-0", "dependent-1.0-0")]
SOLVABLE += [RECIPES / "another_dependent-1.0-0.conda", RECIPES / "small-executable-1.0-0.conda"]
PACKAGES = TESTDATA / "packages"


@pytest.fixture(scope="module")
def logs(live: LiveServer) -> Iterator[Logs]:
    """Every log record from the server's start on (run_server configures logging first)."""
    handler = Logs()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    os.environ.pop(PASS_ENV, None)
    try:
        with own_server(backend, tmp_path_factory, "signing") as server:
            yield server
    finally:
        os.environ.pop(PASS_ENV, None)  # set by the pkg_mgr rotation test


@pytest.fixture(scope="module")
def trust(live: LiveServer, logs: Logs) -> Trust:
    """The chain, set up once; a server without keys refuses what needs them first."""
    admin = live.admin
    assert admin.get("/api/v1/signing").json()["set_up"] is False
    channel = live.new_channel(prefix="unsigned-first")
    refused = admin.patch(f"/api/v1/channels/{channel}", json={"sign": True})
    assert refused.status_code == 404 and refused.json()["code"] == "signing:not-set-up"
    assert admin.get(f"/api/v1/channels/{channel}").json()["sign"] is False
    assert live.client().get("/signing/1.root.json").status_code == 404
    assert admin.get("/api/v1/signing/metadata").status_code == 404
    made = Trust.new()
    put_key(live.settings.data_dir / "keys", made.pkg_mgr)
    answer = post_metadata(admin, made.roots, made.key_mgr_env)
    assert answer.status_code == 200, answer.text
    status = answer.json()
    assert status["set_up"] and status["pkg_mgr_keys"] == [public_hex(made.pkg_mgr)]
    return made


def _signed_channel(live: LiveServer, *paths: Path, prefix: str = "signed") -> str:
    channel = live.new_channel(prefix=prefix)
    answer = live.admin.patch(f"/api/v1/channels/{channel}", json={"sign": True})
    assert answer.status_code == 200 and answer.json()["sign"] is True, answer.text
    if paths:
        assert live.upload(channel, *paths).status_code == 201
        live.wait_published(channel)
    return channel


def _served_key_mgr(live: LiveServer) -> dict[str, Any]:
    return dict(get_json(live.client(), "/signing/key_mgr.json"))


def _verify_channel(live: LiveServer, channel: str, subdir: str) -> int:
    """Every record of every form of the subdir's index verifies; the number of records."""
    client = live.client()
    key_mgr = _served_key_mgr(live)
    served = repodata(client, channel, subdir)
    count = tv.verify_repodata(served, key_mgr)
    assert tv.verify_repodata(repodata_zst(client, channel, subdir), key_mgr) == count
    in_shards = sum(
        tv.verify_repodata(tv.shard_as_repodata(s), key_mgr)
        for s in shards(client, channel, subdir)
    )
    assert in_shards == count
    return count


def _signature_rows(live: LiveServer, pubkey: str) -> int:
    with live.container.read_factory() as session:
        query = select(func.count()).select_from(RecordSignature)
        return int(session.scalar(query.where(RecordSignature.pubkey == pubkey)) or 0)


# -- served metadata -----------------------------------------------------------------------------


def test_served_metadata_verifies_and_a_changed_record_does_not(
    live: LiveServer, trust: Trust
) -> None:
    channel = _signed_channel(live, *SOLVABLE)
    anonymous = live.client()
    root = get_json(anonymous, "/signing/1.root.json")
    assert root == trust.roots[0]
    assert tv.verify_root(root) == 1
    newest = _served_roots(live, trust)[-1]  # 1 unless a rotation test ran first
    key_mgr = _served_key_mgr(live)
    tv.verify_key_mgr(key_mgr, newest)
    for name in ("1.root.json", "key_mgr.json"):  # also at the channel root
        assert (
            anonymous.get(f"/conda/{channel}/{name}").content
            == anonymous.get(f"/signing/{name}").content
        )
    assert _verify_channel(live, channel, "noarch") == len(SOLVABLE)
    served = repodata(anonymous, channel, "noarch")
    assert set(served["signatures"]) == {p.name for p in SOLVABLE}
    filename, record = next(iter(served["packages.conda"].items()))
    signatures = served["signatures"][filename]
    assert list(signatures) == [public_hex(trust.pkg_mgr)]
    for change in ("sha256", "version", "depends"):
        tampered = copy.deepcopy(record)
        if change == "sha256":
            flip = "0" if tampered["sha256"][0] != "0" else "1"
            tampered["sha256"] = flip + tampered["sha256"][1:]
        elif change == "version":
            tampered["version"] += ".1"
        else:
            tampered["depends"] = [*tampered.get("depends", []), "evil"]
        with pytest.raises(tv.Untrusted):
            tv.verify_record(tampered, signatures, key_mgr)
    unsigned = live.new_channel(prefix="unsigned")
    assert live.upload(unsigned, *SOLVABLE).status_code == 201
    live.wait_published(unsigned)
    plain = repodata(anonymous, unsigned, "noarch")
    assert "signatures" not in plain and len(plain["packages.conda"]) == len(SOLVABLE)
    assert "signatures" not in repodata_zst(anonymous, unsigned, "noarch")
    assert all("signatures" not in s for s in shards(anonymous, unsigned, "noarch"))


@pytest.mark.parametrize("sharded", [True, False], ids=["shards", "repodata-json"])
def test_rattler_solves_and_installs_from_a_signed_channel(
    live: LiveServer, trust: Trust, tmp_path: Path, sharded: bool
) -> None:
    channel = _signed_channel(live, *SOLVABLE, prefix="rattler")
    assert "signatures" in repodata(live.client(), channel, "noarch")
    url = f"{live.url}/conda/{channel}"
    specs = ["another_dependent", "dependent 1.*", "small-executable"]
    records = solve_specs(url, specs, tmp_path / "cache", sharded=sharded)
    names = {r.name.normalized for r in records}
    assert names == {"another_dependent", "dependent", "dependency", "small-executable"}
    install_records(records, tmp_path / "env", tmp_path / "pkgs")
    assert len(list((tmp_path / "env" / "conda-meta").glob("*.json"))) == len(records)


def _settled(live: LiveServer, timeout: float = 60) -> None:
    """Until no signed channel is being signed (a rotation re-signs them all, with retries)."""
    deadline = time.monotonic() + timeout
    while any(c["signing"] for c in live.admin.get("/api/v1/signing").json()["channels"]):
        assert time.monotonic() < deadline, live.admin.get("/api/v1/signing").text
        time.sleep(0.05)


def _signing_passes(logs: Logs, since: int) -> list[str]:
    """RecordSigner's "signed N records" lines logged after line ``since``."""
    return [line.split(" with ")[0] for line in logs.lines[since:] if line.startswith("signed ")]


def test_publication_signs_only_the_changed_records(
    live: LiveServer, trust: Trust, logs: Logs
) -> None:
    _settled(live)
    key = public_hex(trust.pkg_mgr)
    before = _signature_rows(live, key)
    first = [PACKAGES / "clobber-1-0.1.0-h4616a5c_0.tar.bz2"]
    first.append(PACKAGES / "clobber-2-0.1.0-h4616a5c_0.tar.bz2")
    channel = _signed_channel(live, *first, prefix="incremental")
    assert _signature_rows(live, key) == before + 2
    old = repodata(live.client(), channel, "noarch")["signatures"]
    _settled(live)
    since = len(logs.lines)
    assert live.upload(channel, PACKAGES / "clobber-3-0.1.0-h4616a5c_0.tar.bz2").status_code == 201
    live.wait_published(channel)
    _settled(live)
    # ed25519 signatures are deterministic: only the signer's own count shows what was re-signed
    assert _signing_passes(logs, since) == ["signed 1 records"]
    assert _signature_rows(live, key) == before + 3  # one new signature, the others reused
    new = repodata(live.client(), channel, "noarch")["signatures"]
    assert {fn: new[fn] for fn in old} == old
    assert set(new) - set(old) == {"clobber-3-0.1.0-h4616a5c_0.tar.bz2"}
    assert _verify_channel(live, channel, "noarch") == 3
    state = subdir_state(live.admin, channel, "noarch")
    assert state["signing_done"] == state["signing_total"] == 3
    status = live.admin.get("/api/v1/signing").json()
    (shown,) = [c for c in status["channels"] if c["name"] == channel]
    assert shown == {"name": channel, "records": 3, "signed": 3, "signing": False}
    # turning signing off serves the channel without signatures
    off = live.admin.patch(f"/api/v1/channels/{channel}", json={"sign": False})
    assert off.status_code == 200 and off.json()["sign"] is False
    live.wait_published(channel)
    assert "signatures" not in repodata(live.client(), channel, "noarch")


# -- refusals ------------------------------------------------------------------------------------


def test_bad_metadata_is_refused_and_changes_nothing(live: LiveServer, trust: Trust) -> None:
    admin = live.admin
    before = admin.get("/api/v1/signing/metadata").json()
    url = "/api/v1/signing/metadata"
    now = datetime.now(UTC)
    intruder = trust.fresh_key()
    garbage = admin.post(url, content=b"{not json", headers={"content-type": "application/json"})
    problem_of(garbage, 422)
    problem_of(admin.post(url, json={"roots": "x"}), 422)
    problem_of(admin.post(url, json={"key_mgr": {"signed": []}}), 422, "signing:bad-metadata")
    not_self_signed = builders.rotate_root(trust.roots[-1], trust.root, intruder, now)
    del not_self_signed["signatures"][public_hex(intruder)]
    body = problem_of(post_metadata(admin, [not_self_signed], None), 422, "signing:bad-metadata")
    assert f"{len(trust.roots) + 1}.root.json" in body["detail"]
    wrong_signer = builders.rotate_pkg_mgr(trust.key_mgr_env, intruder, public_hex(intruder), now)
    body = problem_of(post_metadata(admin, [], wrong_signer), 422, "signing:bad-metadata")
    assert "key_mgr.json" in body["detail"]
    same_version = builders.key_mgr_metadata(
        trust.key_mgr_env["signed"]["version"], [public_hex(intruder)], trust.key_mgr, now
    )
    body = problem_of(post_metadata(admin, [], same_version), 422, "signing:bad-metadata")
    assert "not newer" in body["detail"]
    again = Trust.new()
    problem_of(post_metadata(admin, again.roots, again.key_mgr_env), 409, "signing:exists")
    user = live.client(new_user_token(admin))
    rotated = builders.rotate_pkg_mgr(trust.key_mgr_env, trust.key_mgr, public_hex(intruder), now)
    problem_of(post_metadata(user, [], rotated), 403)
    problem_of(user.get("/api/v1/signing"), 403)
    problem_of(post_metadata(live.client(), [], rotated), 401)
    assert admin.get("/api/v1/signing/metadata").json() == before
    assert _served_key_mgr(live) == trust.key_mgr_env


# -- rotations ------------------------------------------------------------------------------------


def test_pkg_mgr_rotation_revokes_the_old_key_and_needs_the_passphrase(
    live: LiveServer, trust: Trust
) -> None:
    channel = _signed_channel(live, *SOLVABLE[:2], prefix="rotate")
    client = live.client()
    old_index = repodata(client, channel, "noarch")
    old_key_mgr = _served_key_mgr(live)
    new_pkg = trust.fresh_key()
    put_key(live.settings.data_dir / "keys", new_pkg, PASSPHRASE)
    os.environ.pop(PASS_ENV, None)
    key_mgr2 = builders.rotate_pkg_mgr(
        trust.key_mgr_env, trust.key_mgr, public_hex(new_pkg), datetime.now(UTC)
    )
    assert post_metadata(live.admin, [], key_mgr2).status_code == 200
    trust.key_mgr_env, trust.pkg_mgr = key_mgr2, new_pkg
    # Without the passphrase: the signer is not ready, the publication fails and says why, and
    # the index served is the one before.
    reason = wait_failure(live.admin, channel, "noarch")
    assert "encrypted and no passphrase" in reason, reason
    status = live.admin.get("/api/v1/signing").json()
    assert status["signer_ready"] is False and "no passphrase" in status["signer"]
    assert any("cannot publish" in w for w in status["warnings"])
    assert repodata(client, channel, "noarch") == old_index
    os.environ[PASS_ENV] = PASSPHRASE.decode()  # until the module ends (fixture `live`)
    live.wait_published(channel, timeout=60)  # the retry signs with the new key
    assert live.admin.get("/api/v1/signing").json()["signer_ready"] is True
    served = _served_key_mgr(live)
    assert served == key_mgr2
    assert served["signed"]["version"] == old_key_mgr["signed"]["version"] + 1
    tv.verify_key_mgr(served, _served_roots(live, trust)[-1])
    assert _verify_channel(live, channel, "noarch") == 2
    new_index = repodata(client, channel, "noarch")
    assert all(list(s) == [public_hex(new_pkg)] for s in new_index["signatures"].values())
    tv.verify_repodata(old_index, old_key_mgr)  # the old signatures were good...
    with pytest.raises(tv.Untrusted, match="0 of 1"):
        tv.verify_repodata(old_index, served)  # ...and are revoked now


def _served_roots(live: LiveServer, trust: Trust) -> list[dict[str, Any]]:
    """Every root version served, 1 to N, chained by the verifier (the tests of this module may
    run in any order, on any worker: each rotation adds to the chain it finds)."""
    client = live.client()
    served = [get_json(client, f"/signing/{n}.root.json") for n in range(1, len(trust.roots) + 1)]
    assert served == trust.roots
    assert client.get(f"/signing/{len(served) + 1}.root.json").status_code == 404
    tv.verify_root_chain(served)
    return served


def test_key_mgr_rotation_serves_the_next_root(live: LiveServer, trust: Trust) -> None:
    channel = _signed_channel(live, *SOLVABLE[:1], prefix="rotate-km")
    new_key_mgr = trust.fresh_key()
    new_root, new_key_mgr_env = builders.rotate_key_mgr(
        trust.roots[-1], trust.key_mgr_env, trust.root, new_key_mgr, datetime.now(UTC)
    )
    assert post_metadata(live.admin, [new_root], new_key_mgr_env).status_code == 200
    trust.roots.append(new_root)
    trust.key_mgr, trust.key_mgr_env = new_key_mgr, new_key_mgr_env
    *_, previous, newest = _served_roots(live, trust)
    version = len(trust.roots)
    assert get_json(live.client(), f"/conda/{channel}/{version}.root.json") == new_root
    assert tv.verify_root(newest, previous) == version
    key_mgr = _served_key_mgr(live)
    assert key_mgr == new_key_mgr_env
    tv.verify_key_mgr(key_mgr, newest)
    with pytest.raises(tv.Untrusted):
        tv.verify_key_mgr(key_mgr, previous)  # the old root delegates key_mgr to the old key
    assert _verify_channel(live, channel, "noarch") == 1


def test_root_rotation_chains(live: LiveServer, trust: Trust) -> None:
    new_root = trust.fresh_key()
    rotated = builders.rotate_root(trust.roots[-1], trust.root, new_root, datetime.now(UTC))
    assert post_metadata(live.admin, [rotated], None).status_code == 200
    trust.roots.append(rotated)
    old_root, trust.root = trust.root, new_root
    served = _served_roots(live, trust)
    assert set(served[-1]["signatures"]) == {public_hex(old_root), public_hex(new_root)}
    tv.verify_key_mgr(_served_key_mgr(live), served[-1])
    status = live.admin.get("/api/v1/signing").json()
    assert status["root_version"] == len(served) >= 2
    assert status["root_keys"] == [public_hex(new_root)]


def test_an_expired_key_mgr_is_refused(live: LiveServer, trust: Trust) -> None:
    past = datetime.now(UTC) - timedelta(days=10)
    stale = builders.rotate_pkg_mgr(
        trust.key_mgr_env, trust.key_mgr, public_hex(trust.pkg_mgr), past, days=1
    )
    assert tv.expired(stale)
    with pytest.raises(tv.Untrusted, match="expired"):
        tv.verify_key_mgr(stale, trust.roots[-1])
    body = problem_of(post_metadata(live.admin, [], stale), 422, "signing:bad-metadata")
    assert "expired" in body["detail"]
    assert _served_key_mgr(live) == trust.key_mgr_env
    stale_root = builders.rotate_root(
        trust.roots[-1], trust.root, trust.fresh_key(), past, root_days=1
    )
    body = problem_of(post_metadata(live.admin, [stale_root], None), 422, "signing:bad-metadata")
    assert "root metadata expired" in body["detail"]
    assert live.client().get(f"/signing/{len(trust.roots) + 1}.root.json").status_code == 404
    # One that expires soon is accepted, and status warns about it.
    soon = builders.rotate_pkg_mgr(
        trust.key_mgr_env, trust.key_mgr, public_hex(trust.pkg_mgr), datetime.now(UTC), days=10
    )
    answer = post_metadata(live.admin, [], soon)
    assert answer.status_code == 200, answer.text
    trust.key_mgr_env = soon
    warnings = live.admin.get("/api/v1/signing").json()["warnings"]
    assert any(w.startswith("key_mgr expires on") and "rotate it" in w for w in warnings)


def test_trust_files_at_a_private_channel_root_follow_its_access_rules(
    live: LiveServer, trust: Trust
) -> None:
    private = live.new_channel(privacy="private", prefix="private-signed")
    for name in ("1.root.json", "key_mgr.json"):
        assert live.client().get(f"/conda/{private}/{name}").status_code in (401, 403, 404)
        assert live.admin.get(f"/conda/{private}/{name}").status_code == 200
        assert live.client().get(f"/signing/{name}").status_code == 200  # public here


# -- secrets --------------------------------------------------------------------------------------


def test_private_keys_are_nowhere_but_in_key_files(
    live: LiveServer, trust: Trust, logs: Logs
) -> None:
    files = sorted((live.settings.data_dir / "keys").glob("*.key"))
    assert files
    secrets = secrets_of(trust.every_key, files, PASSPHRASE)
    engine = live.container.engine
    assert leaks_in_database(engine, secrets) == []
    admin = live.admin
    shown = [admin.get(p).text for p in ("/api/v1/signing", "/api/v1/signing/metadata")]
    shown.append(admin.get("/api/v1/audit", params={"limit": 500}).text)
    for text in [*shown, *logs.lines]:
        assert not any(secret in text for secret in secrets)
    assert logs.lines  # the handler did see the server's logs
