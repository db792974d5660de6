"""``[storage]``: the backend chosen by configuration, checked at start, its secret never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stockade.cli.main import app
from stockade.core.errors import ConfigurationError
from stockade.settings import load_settings
from stockade.storage.backends import open_blob_store
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.s3 import S3BlobStore

SECRET = "s3-secret-never-shown"


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("STOCKADE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"storage": {"backend": "s3"}}, "needs s3.bucket (STOCKADE_STORAGE__S3__BUCKET)"),
        (
            {"storage": {"backend": "s3", "s3": {"bucket": "b", "access_key_id": "AK"}}},
            "set both s3.access_key_id and s3.secret_access_key",
        ),
        (
            {"storage": {"backend": "s3", "s3": {"bucket": "b"}}, "x_accel_redirect": "/_blobs/"},
            "x_accel_redirect serves blobs from the local blob folder",
        ),
        (
            {"storage": {"s3": {"endpoint_url": "ftp://minio:9000"}}},
            "storage.s3.endpoint_url (STOCKADE_STORAGE__S3__ENDPOINT_URL)",
        ),
        (
            {"storage": {"s3": {"endpoint_url": "http://user:pw@minio:9000"}}},
            "without credentials",
        ),
        ({"storage": {"s3": {"downloads": "proxy"}}}, "'redirect' or 'stream'"),
        ({"storage": {"s3": {"multipart_chunksize": 1024}}}, "multipart_chunksize"),
        ({"storage": {"s3": {"prefix": "a b"}}}, "letters, digits"),
        ({"storage": {"backend": "gcs"}}, "'filesystem' or 's3'"),
    ],
)
def test_mistakes_are_refused_at_start(
    clean_env: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    assert message in caught.value.detail
    assert "pw@" not in caught.value.detail


def test_backend_chosen_by_environment(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_blob_store(load_settings()), FilesystemBlobStore)
    monkeypatch.setenv("STOCKADE_STORAGE__BACKEND", "s3")
    monkeypatch.setenv("STOCKADE_STORAGE__S3__BUCKET", "repo-blobs")
    monkeypatch.setenv("STOCKADE_STORAGE__S3__ENDPOINT_URL", "http://minio.internal:9000/")
    monkeypatch.setenv("STOCKADE_STORAGE__S3__PREFIX", "/stockade/")
    monkeypatch.setenv("STOCKADE_STORAGE__S3__ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("STOCKADE_STORAGE__S3__SECRET_ACCESS_KEY", SECRET)
    settings = load_settings()
    assert settings.storage.s3.endpoint_url == "http://minio.internal:9000"
    assert SECRET not in repr(settings)
    store = open_blob_store(settings)  # no request is made to build it
    assert isinstance(store, S3BlobStore)
    assert store.bucket == "repo-blobs"
    assert store.key_for("ab" * 32) == f"stockade/ab/ab/{'ab' * 32}"
    assert store.local_path("ab" * 32) is None
    assert store.staging_dir() == clean_env / "s3-staging"
    assert stat.S_IMODE(store.staging_dir().stat().st_mode) == 0o700
    assert SECRET not in repr(store)


def test_config_check_hides_the_secret_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "stockade.toml").write_text(
        '[storage]\nbackend = "s3"\n[storage.s3]\nbucket = "repo-blobs"\n'
        f'access_key_id = "AKIDEXAMPLE"\nsecret_access_key = "{SECRET}"\n'
    )
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["config", "check"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    lines = result.output.splitlines()
    assert "[storage.s3]" in lines
    assert any(row.startswith('secret_access_key = "***"') for row in lines)
    assert any(row.startswith('bucket = "repo-blobs"') and row.endswith("# file") for row in lines)
