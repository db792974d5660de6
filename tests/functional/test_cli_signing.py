"""`stockade signing init|status|rotate`, `channel update --sign` and `conda-config --verify`
against a live server of its own (no keys at first), in one session as an administrator runs
them; the metadata they make is checked with the independent verifier. Mistakes end with
``error: …``, a non-zero exit and no traceback."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from stockade.cli.main import app
from stockade.signing import builders
from stockade.signing.keys import public_hex
from tests.conftest import TESTDATA, own_server
from tests.support import trust_verifier as tv
from tests.support.cli import admin_cli, run
from tests.support.server import LiveServer
from tests.support.signing import (
    Trust,
    get_json,
    new_user_token,
    post_metadata,
    repodata,
    secrets_of,
)

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("signing")]

RECIPES = TESTDATA / "channels" / "test-recipes" / "noarch"


@pytest.fixture
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with own_server(backend, tmp_path_factory, "cli-signing") as server:
        yield server


@pytest.fixture
def keys(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The administrator's key folder (`signing init --out`), kept off the server."""
    return tmp_path_factory.mktemp(f"admin-keys-{backend}") / "keys"


@pytest.fixture
def channel(live: LiveServer) -> str:
    return live.new_channel(prefix="cli-signed")


@pytest.fixture
def cli(live: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("STOCKADE_SIGNING_PASSPHRASE", raising=False)
    return admin_cli(live, monkeypatch, tmp_path, columns=250)


def error(cli: CliRunner, *args: str, code: int = 1) -> str:
    """A refused command: exit ``code``, a message, no traceback."""
    result = cli.invoke(app, list(args), catch_exceptions=False)
    text = " ".join(result.output.split())
    assert result.exit_code == code, text
    assert "Traceback" not in text, text
    if code == 1:
        assert text.startswith("error:"), text
    return text


def _serve_pkg_key(live: LiveServer, keys: Path, name: str) -> None:
    """Copy the administrator's pkg_mgr key file ``name`` to the server's key folder."""
    target = live.settings.data_dir / "keys"
    target.mkdir(exist_ok=True, mode=0o700)
    shutil.copy2(keys / name, target / name)


def _new_key_file(keys: Path, before: set[str], role: str) -> str:
    (name,) = {p.name for p in keys.glob(f"{role}-*.key")} - before
    return name


def _verify_channel(live: LiveServer, channel: str) -> dict[str, object]:
    client = live.client()
    key_mgr = get_json(client, "/signing/key_mgr.json")
    served = repodata(client, channel, "noarch")
    assert tv.verify_repodata(served, key_mgr) == 2
    return served


def _without_keys_the_commands_say_what_to_run(
    cli: CliRunner, live: LiveServer, channel: str, tmp_path: Path
) -> None:
    assert "signing is not set up" in run(cli, "signing", "status")
    assert json.loads(run(cli, "signing", "status", "--json"))["set_up"] is False
    text = error(cli, "channel", "update", channel, "--sign")
    assert "[HTTP 404, signing:not-set-up]" in text and "signing init" in text
    text = error(cli, "signing", "rotate", "pkg_mgr", "--keys", str(tmp_path))
    assert "signing:not-set-up" in text
    text = error(cli, "conda-config", "--verify", "--trust-dir", str(tmp_path / "t"), "--stdout")
    assert "no signing keys yet" in text
    # A first root that its own key did not sign is refused over the API, and nothing is kept.
    made = Trust.new()
    forged = builders.sign_root(made.roots[0]["signed"], [made.key_mgr], datetime.now(UTC))
    refused = post_metadata(live.admin, [forged], made.key_mgr_env)
    assert refused.status_code == 422 and refused.json()["code"] == "signing:bad-metadata"
    assert "1.root.json" in refused.json()["detail"]
    assert live.admin.get("/api/v1/signing").json()["set_up"] is False


def _init_makes_the_keys_and_a_signed_channel_verifies(
    cli: CliRunner, live: LiveServer, channel: str, keys: Path
) -> None:
    out = " ".join(run(cli, "signing", "init", "--out", str(keys)).split())
    assert "keep this file OFFLINE" in out and "the server signs with it" in out
    key_files = sorted(keys.glob("*.key"))
    assert [p.name.split("-")[0] for p in key_files] == ["key_mgr", "pkg_mgr", "root"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in key_files)
    assert not any(secret in out for secret in secrets_of([], key_files))
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    client = live.client()
    root = json.loads((keys / "1.root.json").read_text())
    assert get_json(client, "/signing/1.root.json") == root
    assert tv.verify_root(root) == 1
    tv.verify_key_mgr(json.loads((keys / "key_mgr.json").read_text()), root)
    text = error(cli, "signing", "init", "--out", str(keys.parent / "again"))
    assert "set up already" in text and not (keys.parent / "again").exists()
    _serve_pkg_key(live, keys, _new_key_file(keys, set(), "pkg_mgr"))
    assert "signed" in run(cli, "channel", "update", channel, "--sign")
    assert "yes (content trust)" in run(cli, "channel", "show", channel)
    paths = [str(RECIPES / "dependency-1.0-0.conda"), str(RECIPES / "dependent-1.0-0.conda")]
    run(cli, "upload", "-c", channel, *paths)
    live.wait_published(channel)
    _verify_channel(live, channel)


def _status_shows_the_chain_the_signer_and_the_channels(cli: CliRunner, channel: str) -> None:
    data = json.loads(run(cli, "signing", "status", "--json"))
    assert data["set_up"] and data["root_version"] == 1 and data["key_mgr_version"] == 1
    assert data["signer_ready"] is True and data["signer"].startswith("key file")
    assert data["warnings"] == []
    assert {"name": channel, "records": 2, "signed": 2, "signing": False} in data["channels"]
    out = run(cli, "signing", "status")
    assert "version 1" in out and "key file for pkg_mgr key" in out and channel in out
    assert data["metadata_url"].endswith("/signing") and data["metadata_url"] in out


def _rotate_pkg_mgr_re_signs_with_the_new_key(
    cli: CliRunner, live: LiveServer, channel: str, keys: Path
) -> None:
    before_files = {p.name for p in keys.glob("pkg_mgr-*.key")}
    old_index = repodata(live.client(), channel, "noarch")
    old_key_mgr = json.loads((keys / "key_mgr.json").read_text())
    out = " ".join(run(cli, "signing", "rotate", "pkg_mgr", "--keys", str(keys)).split())
    assert "old pkg_mgr key is revoked" in out
    _serve_pkg_key(live, keys, _new_key_file(keys, before_files, "pkg_mgr"))
    key_mgr = json.loads((keys / "key_mgr.json").read_text())
    assert key_mgr["signed"]["version"] == 2
    assert get_json(live.client(), "/signing/key_mgr.json") == key_mgr
    live.wait_published(channel)
    _verify_channel(live, channel)
    tv.verify_repodata(old_index, old_key_mgr)
    with pytest.raises(tv.Untrusted):
        tv.verify_repodata(old_index, key_mgr)


def _rotate_key_mgr_then_root_chain(cli: CliRunner, live: LiveServer, keys: Path) -> None:
    run(cli, "signing", "rotate", "key_mgr", "--keys", str(keys))
    run(cli, "signing", "rotate", "root", "--keys", str(keys))
    client = live.client()
    roots = [get_json(client, f"/signing/{n}.root.json") for n in (1, 2, 3)]
    assert roots[1:] == [json.loads((keys / f"{n}.root.json").read_text()) for n in (2, 3)]
    assert tv.verify_root_chain(roots) == roots[2]
    tv.verify_key_mgr(get_json(client, "/signing/key_mgr.json"), roots[2])
    data = json.loads(run(cli, "signing", "status", "--json"))
    assert (data["root_version"], data["key_mgr_version"]) == (3, 3)


def _rotate_refused_by_the_server_keeps_the_folders_metadata(
    cli: CliRunner, live: LiveServer, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user without security:manage: the server refuses, the folder's key_mgr.json stays."""
    before = (keys / "key_mgr.json").read_bytes()
    monkeypatch.setenv("STOCKADE_TOKEN", new_user_token(live.admin))
    try:
        text = error(cli, "signing", "rotate", "pkg_mgr", "--keys", str(keys))
        assert "[HTTP 403" in text
    finally:
        monkeypatch.setenv("STOCKADE_TOKEN", live.admin_token)
    assert (keys / "key_mgr.json").read_bytes() == before


def _rotate_mistakes_are_refused(cli: CliRunner, keys: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for role in ("pkg_mgr", "key_mgr", "root"):
        text = error(cli, "signing", "rotate", role, "--keys", str(empty))
        assert "no key file in" in text and "holds the current" in text
        assert not list(empty.iterdir())  # no new key written
    text = error(cli, "signing", "rotate", "everything", "--keys", str(keys), code=2)
    assert "everything" in text


def _conda_config_verify_writes_the_trust_settings(
    cli: CliRunner, live: LiveServer, tmp_path: Path
) -> None:
    trust_dir = tmp_path / "trust"
    out = run(cli, "conda-config", "--verify", "--trust-dir", str(trust_dir), "--stdout")
    assert "extra_safety_checks: true" in out
    assert f"signing_metadata_url_base: {live.url}/signing" in out
    saved = json.loads((trust_dir / "1.root.json").read_text())
    assert saved == get_json(live.client(), "/signing/1.root.json") and tv.verify_root(saved)
    condarc = tmp_path / "condarc"
    run(cli, "conda-config", "--verify", "--file", str(condarc))
    assert "extra_safety_checks: true" in condarc.read_text()


def _rotate_pkg_mgr_to_a_key_held_elsewhere(cli: CliRunner, keys: Path) -> None:
    """--pkg-mgr-public-key: key_mgr delegates to an HSM's key; no key file is made, and the
    server says it has no signer for it until signing.signer_command is set."""
    text = error(
        cli, "signing", "rotate", "pkg_mgr", "--keys", str(keys), "--pkg-mgr-public-key", "zz"
    )
    assert "64 hex" in text
    hsm = public_hex(Ed25519PrivateKey.generate())
    args = ("--keys", str(keys), "--pkg-mgr-public-key", hsm)
    text = error(cli, "signing", "rotate", "key_mgr", *args)
    assert "`rotate pkg_mgr` only" in text
    files = sorted(p.name for p in keys.iterdir())
    run(cli, "signing", "rotate", "pkg_mgr", *args)
    assert sorted(p.name for p in keys.iterdir()) == files  # no key file made
    data = json.loads(run(cli, "signing", "status", "--json"))
    assert data["pkg_mgr_keys"] == [hsm] and data["signer_ready"] is False
    assert any("cannot publish" in w for w in data["warnings"]), data["warnings"]


def test_signing_from_the_cli(
    cli: CliRunner,
    live: LiveServer,
    channel: str,
    keys: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One administrator's session, in order, on a server of its own (each step needs the state
    the one before left: tests of a module may run on different workers)."""
    _without_keys_the_commands_say_what_to_run(cli, live, channel, tmp_path)
    _init_makes_the_keys_and_a_signed_channel_verifies(cli, live, channel, keys)
    _status_shows_the_chain_the_signer_and_the_channels(cli, channel)
    _rotate_pkg_mgr_re_signs_with_the_new_key(cli, live, channel, keys)
    _rotate_key_mgr_then_root_chain(cli, live, keys)
    _rotate_mistakes_are_refused(cli, keys, tmp_path)
    _rotate_refused_by_the_server_keeps_the_folders_metadata(cli, live, keys, monkeypatch)
    _conda_config_verify_writes_the_trust_settings(cli, live, tmp_path)
    _rotate_pkg_mgr_to_a_key_held_elsewhere(cli, keys)
