"""``/readyz`` names the part that keeps an instance from serving (SPEC §11): the blob store, the
job broker (Redis), migrations not current. Each is broken for real on a live server, the answer
must be 503 naming it, and it must come back once repaired. The answer never shows an address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from stockade.db.engine import transaction
from stockade.web.health import broker_state
from tests.conftest import own_server
from tests.support.redis_server import redis_server
from tests.support.s3 import S3Server
from tests.support.server import LiveServer, free_port

# SQLite only: what breaks here is the blob folder, Redis and one row; the database queries of
# /readyz run on both backends in the authorization matrix and test_metrics.
pytestmark = [pytest.mark.functional, pytest.mark.one_backend]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with own_server("sqlite", tmp_path_factory, "readyz") as server:
        yield server


def ready(live: LiveServer) -> tuple[int, dict[str, object]]:
    response = live.client().get("/readyz")
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json()


def test_ready_when_every_part_answers(live: LiveServer) -> None:
    status, body = ready(live)
    assert status == 200, body
    assert body["database"] == body["blob_store"] == body["migrations"] == "ok"
    assert body["broker"] == "local"  # the SQLite job queue: a file, nothing to reach


def test_a_missing_blob_store_is_named(live: LiveServer) -> None:
    blobs = live.settings.blob_dir
    away = blobs.with_name("blobs-away")
    blobs.rename(away)  # an unmounted volume, a deleted folder
    try:
        status, body = ready(live)
        assert status == 503, body
        assert body["blob_store"] == "unreachable"
        assert body["failed"] == ["blob_store"]
        assert str(live.settings.data_dir) not in str(body)
    finally:
        away.rename(blobs)
    assert ready(live)[0] == 200


def test_a_missing_s3_bucket_is_named(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A HEAD of a key answers 404 alike for a missing blob and a missing bucket: /readyz asks
    the bucket itself."""
    bucket = s3_server.new_bucket()
    with own_server(
        "sqlite", tmp_path_factory, "readyz-s3", storage=s3_server.storage(bucket)
    ) as live:
        assert ready(live)[0] == 200
        client = s3_server.client
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)  # deleted by mistake, or the wrong name configured
        status, body = ready(live)
        assert status == 503, body
        assert (body["blob_store"], body["failed"]) == ("unreachable", ["blob_store"])
        assert bucket not in str(body)
        client.create_bucket(Bucket=bucket)
        assert ready(live)[0] == 200


def test_an_old_schema_revision_is_named(live: LiveServer) -> None:
    factory = live.container.factory
    with transaction(factory) as session:
        current = session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        status, body = ready(live)
        assert status == 503, body
        assert body["migrations"] == "outdated"
        assert body["failed"] == ["migrations"]
    finally:
        with transaction(factory) as session:
            session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})
    assert ready(live)[0] == 200


@pytest.mark.slow
def test_a_stopped_broker_is_named(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    redis = redis_server(tmp_path)
    url = redis.__enter__()
    try:
        settings = {"embedded_worker": False, "jobs": {"redis_url": url}}
        with own_server("sqlite", tmp_path_factory, "readyz-redis", **settings) as live:
            status, body = ready(live)
            assert (status, body["broker"]) == (200, "ok"), body
            redis.__exit__(None, None, None)  # redis-server stopped
            redis = None
            status, body = ready(live)
            assert status == 503, body
            assert (body["broker"], body["failed"]) == ("unreachable", ["broker"])
            port = url.rsplit(":", 1)[-1].split("/")[0]
            assert "redis" not in str(body) and port not in str(body)
    finally:
        if redis is not None:
            redis.__exit__(None, None, None)


def test_a_broker_url_with_a_password_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing answers on the port: unreachable, and neither the answer nor the log shows
    the URL (its password)."""
    url = f"redis://:broker-secret-pw@127.0.0.1:{free_port()}/0"
    with caplog.at_level("WARNING"):
        assert broker_state(url) == "unreachable"
    assert "broker unreachable" in caplog.text
    assert "broker-secret-pw" not in caplog.text
