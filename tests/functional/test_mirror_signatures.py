"""Issue 14: a mirror keeps each upstream record's signature, verifies it against the upstream's
trusted root, and ``signed_only`` keeps exactly the verified records (SPEC §5, §6, §8).

The upstream is signed here with its own keys (root, key_mgr, pkg_mgr): its ``1.root.json`` and
``key_mgr.json`` sit at its channel root, its ``linux-64/repodata.json`` carries ``signatures``.
What the mirror serves is checked with the independent verifier of ``tests/support/trust_verifier``
(not Stockade's code), against the upstream's root.

Records of the upstream:
- ``good-1`` (.conda) and ``good-2`` (.tar.bz2): signed by pkg_mgr → verified, served with it;
- ``withurl``: signed, but names its upstream ``url`` (which Stockade leaves out) → dropped;
- ``tampered``: its signature covers another record → invalid, not served;
- ``stranger``: signed by a key key_mgr does not delegate → invalid;
- ``plain``: no signature.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from stockade.channels.models import Artifact, Channel
from stockade.signing.builders import new_chain, sign_plain
from stockade.signing.keys import generate, public_hex
from tests.conftest import PG_URL, backends
from tests.functional.test_ui import sign_in
from tests.support import trust_verifier as tv
from tests.support.cli import admin_cli, run
from tests.support.mirror_api import (
    admin,
    assign,
    explain,
    make_mirror,
    make_policy,
    run_mirror,
    unique,
)
from tests.support.mirror_data import write_repodata
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server
from tests.support.upstream import serve

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [
    pytest.mark.functional,
    pytest.mark.xdist_group("mirror-signatures"),
    pytest.mark.one_config,
]

API = "/api/v1"
SUBDIR = "linux-64"
GOOD = ("good-1.0-0.conda", "good-2.0-0.tar.bz2")
WITH_URL = "withurl-1.0-0.conda"
TAMPERED = "tampered-1.0-0.conda"
STRANGER = "stranger-1.0-0.conda"
PLAIN = "plain-1.0-0.conda"


def _record(filename: str, **extra: Any) -> dict[str, Any]:
    name, version, build = filename.rsplit(".conda", 1)[0].rsplit(".tar.bz2", 1)[0].split("-")
    return {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": ["python >=3.8"],
        "license": "MIT",
        "md5": "0" * 32,
        "sha256": (name.encode().hex() * 64)[:64],
        "size": 1234,
        "subdir": SUBDIR,
        "timestamp": 1_700_000_000_000,
        **extra,
    }


@dataclass
class Signed:
    """An upstream channel folder signed with its own keys."""

    root: Path
    root_env: dict[str, Any]
    key_mgr_env: dict[str, Any]
    records: dict[str, dict[str, Any]]
    signatures: dict[str, dict[str, Any]]
    pkg_mgr: str

    @property
    def url(self) -> str:
        return self.root.as_uri()

    @property
    def root_json(self) -> dict[str, Any]:
        return self.root_env


def signed_upstream(folder: Path, *, now: datetime, key_mgr_days: int = 365) -> Signed:
    root_key, key_mgr_key, pkg_mgr_key, stranger = generate(), generate(), generate(), generate()
    root_env, key_mgr_env = new_chain(
        root_key, key_mgr_key, public_hex(pkg_mgr_key), now, key_mgr_days=key_mgr_days
    )
    records = {fn: _record(fn) for fn in (*GOOD, TAMPERED, STRANGER, PLAIN)}
    records[WITH_URL] = _record(WITH_URL, url=f"https://up.example/{SUBDIR}/{WITH_URL}")
    signatures = {
        fn: sign_plain(records[fn], [pkg_mgr_key])["signatures"] for fn in (*GOOD, WITH_URL)
    }
    other = {**records[TAMPERED], "depends": ["evil"]}
    signatures[TAMPERED] = sign_plain(other, [pkg_mgr_key])["signatures"]
    signatures[STRANGER] = sign_plain(records[STRANGER], [stranger])["signatures"]
    doc = {
        "info": {"subdir": SUBDIR},
        "packages": {fn: r for fn, r in records.items() if fn.endswith(".tar.bz2")},
        "packages.conda": {fn: r for fn, r in records.items() if fn.endswith(".conda")},
        "signatures": signatures,
        "repodata_version": 1,
    }
    write_repodata(folder / SUBDIR, doc, zst=False)
    (folder / "1.root.json").write_text(json.dumps(root_env))
    (folder / "key_mgr.json").write_text(json.dumps(key_mgr_env))
    return Signed(folder, root_env, key_mgr_env, records, signatures, public_hex(pkg_mgr_key))


@pytest.fixture(scope="module", params=backends())
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp(f"mirror-signatures-{request.param}")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url, mirror={"heartbeat_s": 0.2}) as server,
    ):
        yield server


@pytest.fixture
def upstream(tmp_path: Path) -> Signed:
    return signed_upstream(tmp_path / "up", now=datetime.now(UTC).replace(microsecond=0))


def served(live: LiveServer, channel: str) -> dict[str, Any]:
    response = admin(live).get(f"/conda/{channel}/{SUBDIR}/repodata.json")
    if response.status_code == 404:  # nothing kept: nothing published
        return {}
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def records_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**doc.get("packages", {}), **doc.get("packages.conda", {})}


def mirror_of(live: LiveServer, up: Signed, **fields: Any) -> dict[str, Any]:
    return make_mirror(live, source=up.url, subdirs=[SUBDIR], channel=unique("sig"), **fields)


def status_by_file(live: LiveServer, mirror: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """filename -> (signature_status, signature_detail) of the mirror's channel rows."""
    with live.container.factory() as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.name == mirror["channel"]))
        found = session.execute(
            select(Artifact.filename, Artifact.signature_status, Artifact.signature_detail).where(
                Artifact.channel_id == channel_id
            )
        ).all()
    return {fn: (status, detail) for fn, status, detail in found}


# ------------------------------------------------------------------------------------- tests


def test_signatures_are_kept_verified_and_served(live: LiveServer, upstream: Signed) -> None:
    mirror = mirror_of(live, upstream, trusted_root=upstream.root_json)
    assert mirror["trusted_root"]["version"] == 1
    assert (
        mirror["trusted_root"]["key_mgr_keys"]
        == upstream.root_env["signed"]["delegations"]["key_mgr"]["pubkeys"]
    )
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    doc = served(live, mirror["channel"])
    records = records_of(doc)
    assert set(records) == set(upstream.records)
    # served exactly as upstream signed them, and their signatures verify independently
    root = upstream.root_env
    tv.verify_root(root)
    tv.verify_key_mgr(upstream.key_mgr_env, root)
    assert set(doc["signatures"]) == set(GOOD)
    for fn in GOOD:
        assert records[fn] == upstream.records[fn]
        tv.verify_record(records[fn], doc["signatures"][fn], upstream.key_mgr_env)
    # the record Stockade changed keeps no signature, and says why
    assert "url" not in records[WITH_URL] and "indexed_timestamp" in records[WITH_URL]
    found = status_by_file(live, mirror)
    assert found[GOOD[0]][0] == "verified"
    assert upstream.pkg_mgr[:16] in found[GOOD[0]][1]
    assert found[WITH_URL][0] == "dropped" and "url" in found[WITH_URL][1]
    assert found[TAMPERED] == ("invalid", "the signature does not match the record")
    assert found[STRANGER][0] == "invalid" and "does not delegate" in found[STRANGER][1]
    assert found[PLAIN] == (None, None)
    shown = admin(live).get(f"{API}/mirrors/{mirror['name']}").json()
    assert "key_mgr version 1" in shown["signature_trust"]


def test_signed_only_keeps_exactly_the_verified_records(live: LiveServer, upstream: Signed) -> None:
    mirror = mirror_of(live, upstream, trusted_root=upstream.root_json)
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    policy = make_policy(live, {"signed_only": True})
    assign(live, policy, mirror=mirror["name"])
    dry = admin(live).post(f"{API}/policies/{policy}/dry-run", json={"channel": mirror["channel"]})
    assert dry.status_code == 200, dry.text
    preview = dry.json()["mirrors"][0]
    assert preview["totals"]["kept"] == len(GOOD)
    assert any("2 verified" in note for note in preview["notes"]), preview["notes"]
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    assert set(records_of(served(live, mirror["channel"]))) == set(GOOD)

    def why(fn: str) -> dict[str, Any]:
        rec = upstream.records[fn]
        spec = f"{rec['name']} {rec['version']} {rec['build']}"
        found = [e for e in explain(live, mirror["channel"], spec, SUBDIR) if e["filename"] == fn]
        assert len(found) == 1, found
        return found[0]

    kept = why(GOOD[0])
    assert kept["kept"] and any(upstream.pkg_mgr[:16] in n for n in kept["notes"]), kept
    # the mirror page's "Why is … not here?" says it too
    web = live.client()
    assert sign_in(web, "admin", ADMIN_PASSWORD).status_code == 303
    page = web.get(f"/mirrors/{mirror['name']}", params={"spec": "good", "subdir": SUBDIR})
    assert page.status_code == 200, page.text
    assert (
        f"upstream signature verified: signed by pkg_mgr key {upstream.pkg_mgr[:16]}" in page.text
    )
    expected = {
        PLAIN: "no signature",
        TAMPERED: "the signature does not match the record",
        STRANGER: "does not delegate pkg_mgr",
        WITH_URL: "url",
    }
    for fn, text in expected.items():
        answer = why(fn)
        assert not answer["kept"], answer
        details = [r["detail"] for r in answer["reasons"] if r["criterion"] == "signed_only"]
        assert details and text in details[0], answer


def test_no_trusted_root_leaves_signatures_unverified_until_one_is_given(
    live: LiveServer, upstream: Signed
) -> None:
    mirror = mirror_of(live, upstream)
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    found = status_by_file(live, mirror)
    for fn in (*GOOD, TAMPERED, STRANGER):
        assert found[fn] == ("unverified", "no trusted root configured for this mirror")
    doc = served(live, mirror["channel"])
    assert set(doc["signatures"]) == {*GOOD, TAMPERED, STRANGER}  # as upstream gave them
    policy = make_policy(live, {"signed_only": True})
    assign(live, policy, mirror=mirror["name"])
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    assert records_of(served(live, mirror["channel"])) == {}
    # the trusted root given later: the next run checks and updates every row
    patched = admin(live).patch(
        f"{API}/mirrors/{mirror['name']}", json={"trusted_root": json.dumps(upstream.root_json)}
    )
    assert patched.status_code == 200, patched.text
    run = run_mirror(live, mirror["name"], channel=mirror["channel"])
    assert run["counts"]["added"] == len(GOOD), run["counts"]
    assert set(records_of(served(live, mirror["channel"]))) == set(GOOD)
    assert status_by_file(live, mirror)[GOOD[1]][0] == "verified"


def test_an_expired_key_mgr_verifies_nothing(live: LiveServer, tmp_path: Path) -> None:
    then = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0)
    up = signed_upstream(tmp_path / "old", now=then, key_mgr_days=10)
    mirror = mirror_of(live, up, trusted_root=up.root_json)
    policy = make_policy(live, {"signed_only": True})
    assign(live, policy, mirror=mirror["name"])
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    assert records_of(served(live, mirror["channel"])) == {}
    found = status_by_file(live, mirror)
    assert found == {}  # nothing kept: the reasons say why
    rec = up.records[GOOD[0]]
    answer = explain(live, mirror["channel"], f"{rec['name']} {rec['version']}", SUBDIR)[0]
    assert "key_mgr metadata expired on" in answer["reasons"][0]["detail"], answer


def test_metadata_is_fetched_over_http_through_the_guard(
    live: LiveServer, upstream: Signed, tmp_path: Path
) -> None:
    with serve(upstream.root) as http:
        mirror = make_mirror(
            live,
            source=http.url,
            subdirs=[SUBDIR],
            channel=unique("sig"),
            trusted_root=upstream.root_json,
        )
        run_mirror(live, mirror["name"], channel=mirror["channel"])
        assert http.requests_for("key_mgr.json"), http.requests
        assert http.requests_for("2.root.json")[0].status == 404  # root updates looked for
        assert status_by_file(live, mirror)[GOOD[0]][0] == "verified"
        # metadata elsewhere that is not there: unverified, and the run log says why
        moved = admin(live).patch(
            f"{API}/mirrors/{mirror['name']}",
            json={"signing_metadata_url": f"{http.url}/nowhere"},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["signing_metadata_url"] == f"{http.url}/nowhere"
        run = run_mirror(live, mirror["name"], channel=mirror["channel"])
    logs = admin(live).get(f"{API}/runs/{run['id']}/logs").json()
    assert any("key_mgr.json could not be fetched" in ln["message"] for ln in logs), logs
    found = status_by_file(live, mirror)
    assert found[GOOD[0]] == (
        "unverified",
        "key_mgr.json could not be fetched: key_mgr.json not found",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"trusted_root": "{not json"}, "trusted_root"),
        ({"trusted_root": {"signed": {"type": "key_mgr"}, "signatures": {}}}, "trusted_root"),
        ({"trusted_root": ["a"]}, "trusted_root"),
        ({"signing_metadata_url": "ftp://up.example/x"}, "signing_metadata_url"),
        ({"signing_metadata_url": "https://user:pw@up.example/x"}, "signing_metadata_url"),
    ],
)
def test_bad_trust_settings_are_422_naming_the_field(
    live: LiveServer, upstream: Signed, fields: dict[str, Any], field: str
) -> None:
    body = {"name": unique("bad"), "source": upstream.url, "subdirs": [SUBDIR], **fields}
    created = admin(live).post(f"{API}/mirrors", json=body)
    assert created.status_code == 422, created.text
    assert created.json().get("field") == field or field in created.text, created.text
    mirror = mirror_of(live, upstream)
    patched = admin(live).patch(f"{API}/mirrors/{mirror['name']}", json=fields)
    assert patched.status_code == 422, patched.text
    assert field in patched.text


def test_a_forged_trusted_root_is_refused(live: LiveServer, upstream: Signed) -> None:
    forged = json.loads(json.dumps(upstream.root_json))
    forged["signed"]["delegations"]["key_mgr"]["pubkeys"] = [public_hex(generate())]
    mirror = mirror_of(live, upstream)
    patched = admin(live).patch(f"{API}/mirrors/{mirror['name']}", json={"trusted_root": forged})
    assert patched.status_code == 422, patched.text
    assert patched.json()["field"] == "trusted_root"
    assert "self-signature" in patched.json()["detail"]


def _flat(text: str) -> str:
    """The words of a panel, whatever the terminal's width wrapped (its borders left out)."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def test_the_cli_sets_shows_and_clears_the_trusted_root(
    live: LiveServer, upstream: Signed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli = admin_cli(live, monkeypatch, tmp_path, columns=250)
    name = unique("climirror")
    root_file = tmp_path / "upstream-1.root.json"
    root_file.write_text(json.dumps(upstream.root_json))
    run(
        cli, "mirror", "create", name,
        "--source", upstream.url,
        "--subdirs", SUBDIR,
        "--channel", unique("sig"),
        "--trusted-root", str(root_file),
        "--signing-metadata-url", upstream.url,
    )  # fmt: skip
    root_key = upstream.root_env["signed"]["delegations"]["root"]["pubkeys"][0]
    shown = _flat(run(cli, "mirror", "show", name))
    assert "version 1" in shown and root_key[:16] in shown, shown
    assert "changed after the last run" in shown  # nothing fetched yet
    run_mirror(live, name)
    shown = _flat(run(cli, "mirror", "show", name))
    assert "key_mgr version 1" in shown, shown
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = " ".join(run(cli, "mirror", "update", name, "--trusted-root", str(bad), code=1).split())
    assert out.startswith("error: trusted_root") and "[HTTP 422" in out, out
    out = run(cli, "mirror", "update", name, "--trusted-root", str(tmp_path / "missing"), code=1)
    assert "--trusted-root: cannot read" in out
    run(cli, "mirror", "update", name, "--trusted-root", "")
    data = json.loads(run(cli, "mirror", "show", name, "--json"))
    assert data["trusted_root"] is None
    assert data["signature_trust"] == "no trusted root configured for this mirror"


def test_a_new_trusted_root_changes_the_rows_it_checks(live: LiveServer, upstream: Signed) -> None:
    """Same records, same bytes: only what their signatures prove changes, and that is a change
    (counted, stored, served)."""
    mirror = mirror_of(live, upstream)
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    before = served(live, mirror["channel"])
    assert TAMPERED in before["signatures"]
    patched = admin(live).patch(
        f"{API}/mirrors/{mirror['name']}", json={"trusted_root": upstream.root_json}
    )
    assert patched.status_code == 200, patched.text
    run = run_mirror(live, mirror["name"], channel=mirror["channel"])
    assert run["counts"]["changed"] == 4, run["counts"]  # the signed ones but the dropped one
    assert run["counts"]["added"] == 0 and run["counts"]["removed"] == 0
    after = served(live, mirror["channel"])
    assert records_of(after) == records_of(before)
    assert set(after["signatures"]) == set(GOOD)
    # and once more: nothing to do
    again = run_mirror(live, mirror["name"], channel=mirror["channel"])
    assert again["counts"].get("changed", 0) == 0, again["counts"]
