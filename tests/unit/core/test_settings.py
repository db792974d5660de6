from __future__ import annotations

from pathlib import Path

import pytest

from stockade.core.errors import ConfigurationError
from stockade.settings import load_settings


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.db_url == f"sqlite:///{(tmp_path / 'stockade.db').resolve()}"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.embedded_worker


def test_env_and_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "stockade.toml").write_text("port = 9000\n[upload]\nmax_archive_size = 1234\n")
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STOCKADE_UPLOAD__MAX_RATIO", "50")
    settings = load_settings()
    assert settings.port == 9000
    assert settings.upload.max_archive_size == 1234
    assert settings.upload.max_ratio == 50
    monkeypatch.setenv("STOCKADE_PORT", "9100")
    assert load_settings().port == 9100
    monkeypatch.setenv("STOCKADE_DATABASE_URL", "postgresql://u:p@h/db")
    assert load_settings().db_url == "postgresql+psycopg://u:p@h/db"


@pytest.mark.parametrize(
    ("env", "value", "words"),
    [
        ("STOCKADE_PORT", "eighty", "STOCKADE_PORT"),
        ("STOCKADE_PORT", "70000", "STOCKADE_PORT"),
        ("STOCKADE_DATABASE_URL", "mysql://x", "sqlite:// or postgresql://"),
        ("STOCKADE_LOG_LEVEL", "loud", "STOCKADE_LOG_LEVEL"),
    ],
)
def test_mistakes_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, value: str, words: str
) -> None:
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigurationError, match=words):
        load_settings()


def test_bad_toml_and_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "stockade.toml").write_text("port = = 1")
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings()
    monkeypatch.setenv("STOCKADE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigurationError, match="not a file"):
        load_settings()


def test_audit_export_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = '[audit]\nexport_folder = "exports"\nexport_schedule = "*/15 * * * *"\n'
    (tmp_path / "stockade.toml").write_text(toml + 'export_format = "csv"\n')
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(tmp_path))
    audit = load_settings().audit
    assert audit.export_format == "csv" and audit.export_schedule == "*/15 * * * *"
    assert audit.export_folder_in(tmp_path) == tmp_path / "exports"  # relative: in the data dir
    assert load_settings(audit={"export_folder": "/srv/a"}).audit.export_folder_in(tmp_path) == (
        Path("/srv/a")
    )
    for env, value, words in [
        ("STOCKADE_AUDIT__EXPORT_SCHEDULE", "hourly please", "cron"),
        ("STOCKADE_AUDIT__EXPORT_FORMAT", "xml", "EXPORT_FORMAT"),
        ("STOCKADE_AUDIT__EXPORT_MAX_EVENTS", "0", "EXPORT_MAX_EVENTS"),
    ]:
        monkeypatch.setenv(env, value)
        with pytest.raises(ConfigurationError, match=words):
            load_settings()
        monkeypatch.delenv(env)
