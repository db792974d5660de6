"""The `stockade` CLI against a live server, as a user would run it."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.cli import run
from tests.support.server import ADMIN_PASSWORD, LiveServer
from tests.unit.auth.test_token_format import split_anaconda_token

pytestmark = pytest.mark.functional


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.delenv("STOCKADE_URL", raising=False)
    monkeypatch.delenv("STOCKADE_TOKEN", raising=False)
    return CliRunner()


def test_login_create_upload_show(
    cli: CliRunner, live_server: LiveServer, testdata: Path, tmp_path: Path
) -> None:
    out = run(cli, "login", live_server.url, "-u", "admin", "-p", ADMIN_PASSWORD)
    assert "signed in" in out and "admin" in out
    profile = (tmp_path / "profile.toml").read_text()
    assert "stk-" in profile and oct((tmp_path / "profile.toml").stat().st_mode)[-3:] == "600"
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert "created" in run(cli, "channel", "create", name, "--privacy", "private")
    files = [
        str(p) for p in sorted((testdata / "channels/test-recipes/noarch").glob("dependen*.conda"))
    ]
    out = run(cli, "upload", "-c", name, *files)
    assert "uploaded 4 file(s)" in out and "index published" in out
    out = run(cli, "channel", "show", name)
    assert "noarch" in out and "private" in out
    assert "dependent-2.0-0.conda" in run(cli, "channel", "files", name)
    assert name in run(cli, "channel", "list")
    condarc = run(cli, "conda-config", "--stdout", "--with-token", "-c", name)
    assert f"channel_alias: {live_server.url}/t/stk-" in condarc and f"  - {name}" in condarc
    alias = condarc.split("channel_alias: ")[1].split()[0]
    token = profile.split("stk-")[1].split('"')[0]
    assert split_anaconda_token(f"{alias}/{name}") == (
        f"{live_server.url}/conda/{name}",
        f"stk-{token}",
    )
    run(cli, "remove", name, "noarch/dependent-1.0-0.conda")
    out = run(cli, "channel", "files", name)
    assert "dependent-1.0-0.conda" not in out


def test_token_commands(
    cli: CliRunner, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_URL", live_server.url)
    monkeypatch.setenv("STOCKADE_TOKEN", live_server.admin_token)
    out = run(cli, "token", "create", "from-cli", "-e", "3")
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("stk-")
    listing = run(cli, "token", "list")
    assert "from-cli" in listing and secret not in listing
    token_id = re.search(r"token (\d+) \(from-cli\)", out).group(1)  # type: ignore[union-attr]
    assert "revoked" in run(cli, "token", "revoke", token_id)
    assert "admin" in run(cli, "whoami")


def test_errors_are_messages_not_tracebacks(
    cli: CliRunner, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOCKADE_URL", live_server.url)
    monkeypatch.setenv("STOCKADE_TOKEN", live_server.admin_token)
    out = run(cli, "channel", "show", "does-not-exist", code=1)
    assert "error:" in out and "not found" in out and "Traceback" not in out
    out = run(cli, "channel", "create", "Bad Name", code=1)
    assert "error:" in out and "name" in out
    bad = tmp_path / "broken-1.0-0.tar.bz2"
    bad.write_bytes(b"not a package")
    name = f"cli-{uuid.uuid4().hex[:8]}"
    run(cli, "channel", "create", name)
    out = run(cli, "upload", "-c", name, str(bad), code=1)
    assert "refused" in out and "package:format" in out
    out = run(cli, "upload", "-c", name, str(tmp_path / "missing.conda"), code=1)
    assert "not a file" in out
    monkeypatch.setenv("STOCKADE_TOKEN", "stk_wrongwrongwrongwrongwrong")
    out = run(cli, "whoami", code=1)
    assert "error:" in out and "stk_wrong" not in out


def test_conda_config_refuses_a_token_conda_would_cut(
    cli: CliRunner, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older ``stk_`` token still signs in, but conda cannot read it from a URL (issue 11)."""
    monkeypatch.setenv("STOCKADE_URL", live_server.url)
    monkeypatch.setenv("STOCKADE_TOKEN", "stk_old_token_with_underscores_0123456789abcdef")
    out = run(cli, "conda-config", "--stdout", "--with-token", code=1)
    assert "error:" in out and "token create" in out and "stk_old" not in out
    assert "channel_alias" in run(cli, "conda-config", "--stdout")  # without the token: fine
