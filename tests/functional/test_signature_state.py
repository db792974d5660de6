"""Issue 14: the signature state users see (SPEC §8, §10) in the files API, the package page, the
CLI, and the read-only signing page of the admin UI, on both database backends.

States come from real flows: a channel signed by this server (``channels.sign``, keys installed
through ``/api/v1/signing/metadata``, the pkg_mgr key file in the server's key folder) and a mirror
of an upstream signed with its own keys (its records verified, dropped, invalid, or unsigned).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from stockade.channels.signature_names import SignatureState
from stockade.channels.signature_state import EXPLANATIONS
from stockade.signing.builders import new_chain
from stockade.signing.keys import generate, public_hex, write_key
from tests.conftest import PG_URL, backends
from tests.factories.packages import PackageSpec, build_conda
from tests.functional.test_mirror_signatures import (
    GOOD,
    PLAIN,
    STRANGER,
    TAMPERED,
    WITH_URL,
    Signed,
    mirror_of,
    signed_upstream,
)
from tests.functional.test_ui import assert_html, new_user, sign_in
from tests.support.cli import run
from tests.support.mirror_api import run_mirror
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [
    pytest.mark.functional,
    pytest.mark.xdist_group("signature-state"),
    pytest.mark.one_config,
]

API = "/api/v1"


@pytest.fixture(scope="module")
def pkg_mgr_key() -> Ed25519PrivateKey:
    return generate()


@pytest.fixture(scope="module")
def pkg_mgr(pkg_mgr_key: Ed25519PrivateKey) -> str:
    return public_hex(pkg_mgr_key)


@pytest.fixture(scope="module", params=backends())
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pkg_mgr_key: Ed25519PrivateKey,
) -> Iterator[LiveServer]:
    """A server whose signing is set up: chain installed, pkg_mgr key file in DATA_DIR/keys."""
    data_dir = tmp_path_factory.mktemp(f"signature-state-{request.param}")
    with (
        fresh_database(request.param, data_dir, PG_URL, migrated=True) as db_url,
        run_server(data_dir, db_url, mirror={"heartbeat_s": 0.2}) as server,
    ):
        keys = data_dir / "keys"
        keys.mkdir(mode=0o700)
        write_key(keys / "pkg_mgr.key", pkg_mgr_key, None)
        root_env, key_mgr_env = new_chain(generate(), generate(), public_hex(pkg_mgr_key), _now())
        response = server.admin.post(
            f"{API}/signing/metadata", json={"roots": [root_env], "key_mgr": key_mgr_env}
        )
        assert response.status_code == 200, response.text
        yield server


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _channel(live: LiveServer, *, sign: bool) -> str:
    name = live.new_channel(prefix="sig")
    if sign:
        response = live.admin.patch(f"{API}/channels/{name}", json={"sign": True})
        assert response.status_code == 200, response.text
    return name


def _upload(live: LiveServer, channel: str, tmp_path: Path, name: str) -> str:
    package = build_conda(tmp_path, PackageSpec(name=name))
    response = live.upload(channel, package)
    assert response.status_code == 201, response.text
    live.wait_published(channel)
    return package.name


def _files(live: LiveServer, channel: str, **params: str) -> dict[str, dict[str, Any]]:
    response = live.admin.get(f"{API}/channels/{channel}/files", params=params)
    assert response.status_code == 200, response.text
    return {a["filename"]: a["signature"] for a in response.json()}


def _web(live: LiveServer) -> httpx.Client:
    client = live.client()
    assert sign_in(client, "admin", ADMIN_PASSWORD).status_code == 303
    return client


# ----------------------------------------------------------------------------- signed here


def test_a_signed_channels_files_are_signed_and_an_unsigned_channels_are_not(
    live: LiveServer, pkg_mgr: str, tmp_path: Path
) -> None:
    signed, plain = _channel(live, sign=True), _channel(live, sign=False)
    filename = _upload(live, signed, tmp_path, "trusted")
    _upload(live, plain, tmp_path, "trusted")
    assert _files(live, signed) == {
        filename: {"state": "signed", "upstream_status": None, "detail": None}
    }
    assert _files(live, plain)[filename]["state"] == "unsigned"
    shown = live.admin.get(f"{API}/channels/{signed}/files/noarch/{filename}")
    assert shown.status_code == 200 and shown.json()["signature"]["state"] == "signed"
    # the state matches what is served: the record carries this server's signature
    served = live.admin.get(f"/conda/{signed}/noarch/repodata.json").json()
    assert set(served["signatures"][filename]) == {pkg_mgr}
    assert "signatures" not in live.admin.get(f"/conda/{plain}/noarch/repodata.json").json()
    # the filter
    assert set(_files(live, signed, signature="signed")) == {filename}
    assert _files(live, signed, signature="unsigned") == {}
    assert _files(live, plain, signature="signed") == {}
    assert set(_files(live, plain, signature="unsigned")) == {filename}
    bad = live.admin.get(f"{API}/channels/{plain}/files", params={"signature": "maybe"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


def test_turning_signing_off_makes_the_files_unsigned(live: LiveServer, tmp_path: Path) -> None:
    channel = _channel(live, sign=True)
    filename = _upload(live, channel, tmp_path, "toggled")
    assert _files(live, channel)[filename]["state"] == "signed"
    response = live.admin.patch(f"{API}/channels/{channel}", json={"sign": False})
    assert response.status_code == 200, response.text
    assert _files(live, channel)[filename]["state"] == "unsigned"


# ----------------------------------------------------------------------------- upstream


@pytest.fixture
def upstream(tmp_path: Path) -> Signed:
    return signed_upstream(tmp_path / "up", now=_now())


def test_a_mirrors_files_show_their_upstream_signature(
    live: LiveServer, pkg_mgr: str, upstream: Signed
) -> None:
    mirror = mirror_of(live, upstream, trusted_root=upstream.root_json)
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    channel = mirror["channel"]
    found = _files(live, channel)
    for fn in GOOD:
        assert found[fn]["state"] == "upstream-verified"
        assert found[fn]["upstream_status"] == "verified"
        assert upstream.pkg_mgr[:16] in found[fn]["detail"]
    assert found[WITH_URL]["state"] == "upstream-dropped" and "url" in found[WITH_URL]["detail"]
    assert found[TAMPERED] == {
        "state": "upstream-invalid",
        "upstream_status": "invalid",
        "detail": "the signature does not match the record",
    }
    assert found[STRANGER]["state"] == "upstream-invalid"
    assert found[PLAIN] == {"state": "unsigned", "upstream_status": None, "detail": None}
    assert set(_files(live, channel, signature="upstream-verified")) == set(GOOD)
    assert set(_files(live, channel, signature="upstream-invalid")) == {TAMPERED, STRANGER}
    assert set(_files(live, channel, signature="upstream-dropped")) == {WITH_URL}
    assert set(_files(live, channel, signature="unsigned")) == {PLAIN}

    # the package page: a Signature column, and the selected build's state explained
    web = _web(live)
    page = web.get(f"/channels/{channel}/packages/good")
    assert_html(page, 200)
    text = unescape(page.text)
    assert "<th>Signature</th>" in page.text and 'data-signature="upstream-verified"' in text
    assert 'id="signature-state"' in page.text
    assert EXPLANATIONS[SignatureState.UPSTREAM_VERIFIED] in text
    assert upstream.pkg_mgr[:16] in text
    tampered = unescape(web.get(f"/channels/{channel}/packages/tampered").text)
    assert 'data-signature="upstream-invalid"' in tampered
    assert "the signature does not match the record" in tampered

    # signed here too: the primary state is ours, the upstream verdict stays
    response = live.admin.patch(f"{API}/channels/{channel}", json={"sign": True})
    assert response.status_code == 200, response.text
    live.wait_published(channel)
    both = _files(live, channel)
    assert both[GOOD[0]]["state"] == "signed"
    assert both[GOOD[0]]["upstream_status"] == "verified"
    assert set(_files(live, channel, signature="upstream-verified")) == set()
    page = unescape(web.get(f"/channels/{channel}/packages/good").text)
    assert 'data-signature="signed"' in page and "Upstream signature: verified" in page
    served = live.admin.get(f"/conda/{channel}/linux-64/repodata.json").json()
    assert {pkg_mgr, upstream.pkg_mgr} <= set(served["signatures"][GOOD[0]])


def _search(web: httpx.Client, query: str, **params: str) -> str:
    page = web.get("/search", params={"q": query, **params})
    assert_html(page, 200)
    return page.text


def test_search_shows_signed_channels_and_filters_on_signatures(
    live: LiveServer, tmp_path: Path, upstream: Signed
) -> None:
    name = f"findme{uuid.uuid4().hex[:8]}"
    signed, plain = _channel(live, sign=True), _channel(live, sign=False)
    _upload(live, signed, tmp_path, name)
    _upload(live, plain, tmp_path, name)
    web = _web(live)
    both = _search(web, name)
    assert f'href="/channels/{signed}/packages/{name}"' in both
    assert f'href="/channels/{plain}/packages/{name}"' in both
    assert both.count('data-signature="signed"') == 1  # the signed channel's hit only
    only = _search(web, name, signed="1")
    assert f"/channels/{signed}/packages/{name}" in only
    assert f"/channels/{plain}/packages/{name}" not in only
    assert 'id="signed-only" checked' in only
    # an upstream-verified record counts as signed; an unsigned mirrored one does not
    mirror = mirror_of(live, upstream, trusted_root=upstream.root_json)
    run_mirror(live, mirror["name"], channel=mirror["channel"])
    assert f"/channels/{mirror['channel']}/packages/good" in _search(web, "good", signed="1")
    assert f"/channels/{mirror['channel']}/packages/plain" not in _search(web, "plain", signed="1")
    assert f"/channels/{mirror['channel']}/packages/plain" in _search(web, "plain")
    assert_html(web.get("/search", params={"q": name, "signed": "x" * 5000}), 200)


# ----------------------------------------------------------------------------- UI and CLI


def test_the_signing_page_shows_the_chain_and_the_signed_channels(
    live: LiveServer, pkg_mgr: str, tmp_path: Path
) -> None:
    channel = _channel(live, sign=True)
    _upload(live, channel, tmp_path, "listed")
    web = _web(live)
    index = web.get("/admin")
    assert_html(index, 200)
    assert 'href="/admin/signing"' in index.text
    page = web.get("/admin/signing")
    assert_html(page, 200)
    assert 'id="root-version">1<' in page.text and 'id="key-mgr-version">1<' in page.text
    assert pkg_mgr in page.text
    assert 'id="signer"' in page.text and "ready" in page.text
    assert f'href="/channels/{channel}"' in page.text
    assert f"{live.url}/signing" in page.text

    # security:read is needed; anonymous callers are sent to sign in
    username, password = new_user(live)
    reader = live.client()
    assert sign_in(reader, username, password).status_code == 303
    denied = reader.get("/admin/signing")
    assert_html(denied, 403)
    assert pkg_mgr not in denied.text
    anonymous = live.client().get("/admin/signing")
    assert anonymous.status_code in {303, 401}
    assert pkg_mgr not in anonymous.text


def test_the_cli_lists_files_with_their_signature_state(
    live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed, plain = _channel(live, sign=True), _channel(live, sign=False)
    filename = _upload(live, signed, tmp_path, f"cli{uuid.uuid4().hex[:6]}")
    _upload(live, plain, tmp_path, "cliplain")
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.delenv("STOCKADE_URL", raising=False)
    monkeypatch.delenv("STOCKADE_TOKEN", raising=False)
    cli = CliRunner()
    run(cli, "login", live.url, "-u", "admin", "-p", ADMIN_PASSWORD)
    listed = run(cli, "channel", "files", signed)
    assert "signature" in listed and "signed" in listed and filename[:12] in listed
    assert "unsigned" in run(cli, "channel", "files", plain)
    assert filename[:12] in run(cli, "channel", "files", signed, "--signature", "signed")
    assert filename[:12] not in run(cli, "channel", "files", signed, "--signature", "unsigned")
    refused = run(cli, "channel", "files", signed, "--signature", "maybe", code=2)
    assert "maybe" in refused
