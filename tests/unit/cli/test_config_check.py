"""`stockade config check` prints TOML with where each value came from; secrets never shown."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stockade.cli.main import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("STOCKADE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(tmp_path))
    (tmp_path / "stockade.toml").write_text(
        'public_url = "https://repo.example.org"\n'
        'secret_key = "file-secret-value"\n'
        "[ldap]\n"
        'url = "ldap://ldap.example.org"\n'
        'bind_password = "file-bind-password"\n'
        "[jobs]\n"
        'redis_url = "redis://:redis-password@redis:6379/0"\n'
        "[upload]\n"
        "max_ratio = 50\n"
    )
    return tmp_path


def check(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["config", "check"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def line(output: str, start: str) -> str:
    found = [row for row in output.splitlines() if row.startswith(start)]
    assert len(found) == 1, (start, output)
    return found[0]


def test_toml_with_origins(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_PORT", "9100")
    monkeypatch.setenv("STOCKADE_UPLOAD__MAX_RATIO", "75")  # the environment beats the file
    monkeypatch.setenv("STOCKADE_DATABASE_URL", "postgresql://stockade:db-password@db/stockade")
    out = check(monkeypatch)
    assert f"(file: {(env / 'stockade.toml').resolve()})" in out
    assert line(out, "port = 9100").endswith("# env STOCKADE_PORT")
    assert line(out, "host = ").endswith("# default")
    assert line(out, "public_url = ").endswith("# file")
    assert line(out, "max_ratio = 75.0").endswith("# env STOCKADE_UPLOAD__MAX_RATIO")
    assert line(out, 'url = "ldap://ldap.example.org"').endswith("# file")
    assert line(out, "secure_cookies = true").endswith("# derived from other settings")
    assert line(out, "# proxy = (not set)").endswith("# default")
    assert line(out, "embedded_worker = true")  # TOML booleans, not Python's True
    assert "None" not in out and "True" not in out and "{'" not in out
    assert "[ldap]" in out and "[jobs]" in out


def test_output_is_toml(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = check(monkeypatch)
    body = "\n".join(r for r in out.splitlines() if r != "configuration is valid")
    parsed = tomllib.loads(body)
    assert parsed["upload"]["max_ratio"] == 50.0
    assert parsed["server"]["trusted_proxies"] == ["127.0.0.1", "::1"]
    assert parsed["ldap"]["group_roles"] == {}
    assert "public_url" in parsed and "proxy" not in parsed["outbound"]  # unset → a comment


def test_secrets_redacted(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_OIDC__CLIENT_SECRET", "env-client-secret")
    monkeypatch.setenv("STOCKADE_DATABASE_URL", "postgresql://stockade:db-password@db/stockade")
    out = check(monkeypatch)
    for secret in (
        "file-secret-value",
        "file-bind-password",
        "redis-password",
        "env-client-secret",
        "db-password",
    ):
        assert secret not in out
    assert line(out, 'secret_key = "***"').endswith("# file")
    assert line(out, 'bind_password = "***"').endswith("# file")
    assert line(out, 'client_secret = "***"').endswith("# env STOCKADE_OIDC__CLIENT_SECRET")
    assert 'redis_url = "redis://:***@redis:6379/0"' in out
    assert "postgresql+psycopg://stockade:***@db/stockade" in out
    assert line(out, "token_max_days = ").split("#")[0].strip() != 'token_max_days = "***"'


def test_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("STOCKADE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(tmp_path))
    out = check(monkeypatch)
    assert "no file: defaults and environment only" in out
    assert line(out, "# admin_password = (not set)").endswith("# default")
    assert f"# database: sqlite:///{(tmp_path / 'stockade.db').resolve()}" in out
