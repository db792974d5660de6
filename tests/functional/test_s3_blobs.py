"""A live server with its blobs in S3 (moto's real server, ``tests/support/s3.py``): uploads go to
the bucket, scans read through it, conda clients download by a redirect to a presigned URL (or
streamed by the server, per ``[storage.s3] downloads``), with the same bytes, access checks,
caching headers and download records as from the filesystem."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import orjson
import pytest
from botocore.config import Config

from stockade.audit.downloads import Download, write_batch
from stockade.db.engine import transaction
from stockade.web.channel.responses import SMALL_FILE
from tests.factories.packages import PackageSpec, build_conda, file
from tests.support.conda_client import install_records, solve_specs
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.support.server import LiveServer, fresh_database, run_server
from tests.support.signing import Trust, post_metadata, put_key

# SQLite only: the database plays no part here (the blob store does); serving, access and download
# records run on both database backends in test_downloads.py and test_conda_client.py.
pytestmark = [pytest.mark.functional, pytest.mark.one_backend, pytest.mark.xdist_group("s3")]

PACKAGE = "empty-0.1.0-h4616a5c_0.conda"  # noarch, no dependencies
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass
class S3World:
    live: LiveServer
    s3: S3Server
    bucket: str
    public: str  # channel holding PACKAGE
    private: str  # private channel holding PACKAGE
    data: bytes  # PACKAGE's bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def servable(live: LiveServer, path: str, timeout: float = 60) -> None:
    """Wait for the upload's verdict: its scan read the file through the store."""
    deadline = time.monotonic() + timeout
    while live.admin.head(path).status_code != 200:
        assert time.monotonic() < deadline, f"{path} was not served within {timeout}s"
        time.sleep(0.05)


def world_on(
    s3: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
    testdata: Path,
    downloads: str,
    trust: Trust | None = None,
) -> Iterator[S3World]:
    """A live server on a new bucket; with ``trust``, it signs records (its pkg_mgr key)."""
    bucket = s3.new_bucket()
    storage = s3.storage(bucket, downloads=downloads, presign_expires_s=120)
    data_dir = tmp_path_factory.mktemp(f"s3-{downloads}")
    if trust is not None:
        put_key(data_dir / "keys", trust.pkg_mgr)
    with (
        fresh_database("sqlite", data_dir, None, migrated=True) as db_url,
        run_server(data_dir, db_url, storage=storage, downloads={"flush_interval_s": 0.05}) as live,
    ):
        if trust is not None:
            assert post_metadata(live.admin, trust.roots, trust.key_mgr_env).status_code == 200
        package = testdata / "packages" / PACKAGE
        public, private = live.new_channel("public", "s3-open"), live.new_channel("private", "s3-x")
        for channel in (public, private):
            assert live.upload(channel, package).status_code == 201
            live.wait_published(channel)
            servable(live, f"/conda/{channel}/noarch/{PACKAGE}")
        yield S3World(live, s3, bucket, public, private, package.read_bytes())


@pytest.fixture(scope="module")
def redirect(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory, testdata: Path
) -> Iterator[S3World]:
    yield from world_on(s3_server, tmp_path_factory, testdata, "redirect")


@pytest.fixture(scope="module")
def stream(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory, testdata: Path
) -> Iterator[S3World]:
    yield from world_on(s3_server, tmp_path_factory, testdata, "stream", Trust.new())


def recorded(live: LiveServer, filename: str) -> list[dict[str, object]]:
    def write(batch: list[Download]) -> None:
        with transaction(live.container.factory) as session:
            write_batch(session, batch)

    live.container.downloads.flush(write, drain=True)
    r = live.admin.get("/api/v1/downloads", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [row for row in r.json()["downloads"] if row["filename"] == filename]


def test_blobs_live_in_the_bucket_not_on_disk(redirect: S3World) -> None:
    keys = [
        item["Key"]
        for page in redirect.s3.client.get_paginator("list_objects_v2").paginate(
            Bucket=redirect.bucket
        )
        for item in page.get("Contents", [])
    ]
    sha = redirect.sha256
    assert f"{sha[:2]}/{sha[2:4]}/{sha}" in keys
    assert len(keys) > 1  # index files and shards too
    data_dir = redirect.live.settings.data_dir
    assert not [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    assert not list((data_dir / "s3-staging").iterdir())  # uploads and scan copies are gone


def test_a_download_redirects_to_the_same_bytes(redirect: S3World) -> None:
    conda = redirect.live.client()
    path = f"/conda/{redirect.public}/noarch/{PACKAGE}"
    first = conda.get(path)
    assert first.status_code == 307
    location = first.headers["location"]
    assert location.startswith(redirect.s3.endpoint + "/")
    assert first.headers["cache-control"] == "no-store"  # the URL expires: never cached
    got = httpx.get(location)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == redirect.sha256
    assert got.headers["cache-control"] == IMMUTABLE  # as when Stockade sends the file
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == f'attachment; filename="{PACKAGE}"'
    ranged = conda.get(path, headers={"range": "bytes=0-9"}, follow_redirects=True)
    assert ranged.status_code == 206 and ranged.content == redirect.data[:10]
    head = conda.head(path)  # answered here: size and headers, no redirect
    assert head.status_code == 200 and "location" not in head.headers
    assert int(head.headers["content-length"]) == len(redirect.data)
    assert conda.get(path, headers={"if-none-match": f'"{redirect.sha256}"'}).status_code == 304
    index = conda.get(f"/conda/{redirect.public}/noarch/repodata.json")
    assert index.status_code == 200  # index files are sent from memory, not redirected
    assert index.json()["packages.conda"][PACKAGE]["sha256"] == redirect.sha256
    rows = recorded(redirect.live, PACKAGE)
    assert sorted((row["status"], row["bytes"]) for row in rows) == [
        (200, len(redirect.data)),
        (206, 10),
        (304, 0),
    ]


def test_private_downloads_are_checked_before_the_redirect(redirect: S3World) -> None:
    path = f"/conda/{redirect.private}/noarch/{PACKAGE}"
    anonymous = redirect.live.client().get(path)
    assert anonymous.status_code == 401 and "location" not in anonymous.headers
    token = redirect.live.admin_token
    answer = redirect.live.client().get(f"/t/{token}/conda/{redirect.private}/noarch/{PACKAGE}")
    assert answer.status_code == 307
    assert token not in answer.headers["location"]
    got = httpx.get(answer.headers["location"])
    assert got.content == redirect.data
    assert got.headers["cache-control"] == IMMUTABLE.replace("public", "private")


def test_a_conda_client_installs_through_the_redirect(redirect: S3World, tmp_path: Path) -> None:
    url = f"{redirect.live.url}/conda/{redirect.public}"
    records = solve_specs(url, ["empty"], tmp_path / "cache")
    assert [(r.name.normalized, r.sha256.hex()) for r in records] == [("empty", redirect.sha256)]
    install_records(records, tmp_path / "env", tmp_path / "pkgs")
    assert (tmp_path / "env" / "conda-meta" / "empty-0.1.0-h4616a5c_0.json").is_file()


def test_stream_mode_sends_the_bytes_itself(stream: S3World) -> None:
    conda = stream.live.client()
    path = f"/conda/{stream.public}/noarch/{PACKAGE}"
    full = conda.get(path)
    assert full.status_code == 200, full.text
    assert hashlib.sha256(full.content).hexdigest() == stream.sha256
    assert full.headers["cache-control"] == IMMUTABLE
    assert full.headers["etag"] == f'"{stream.sha256}"'
    tail = conda.get(path, headers={"range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == stream.data[100:]
    token = stream.live.admin_token
    private = conda.get(f"/t/{token}/conda/{stream.private}/noarch/{PACKAGE}")
    assert private.status_code == 200 and private.content == stream.data
    assert [row["status"] for row in recorded(stream.live, PACKAGE)].count(200) == 2


def test_stream_mode_streams_big_files_in_ranges(stream: S3World, tmp_path: Path) -> None:
    """Above the in-memory size, the file streams from the store; a range starts a ranged GET."""
    spec = PackageSpec(name="bigpkg", payload=(file("lib/big.bin", os.urandom(700_000)),))
    path = build_conda(tmp_path, spec)
    data = path.read_bytes()
    assert len(data) > SMALL_FILE
    assert stream.live.upload(stream.public, path).status_code == 201
    url = f"/conda/{stream.public}/noarch/{path.name}"
    servable(stream.live, url)
    conda = stream.live.client()
    full = conda.get(url)
    assert full.status_code == 200 and full.content == data
    middle = conda.get(url, headers={"range": "bytes=300000-500000"})
    assert middle.status_code == 206 and middle.content == data[300000:500001]


def test_an_air_gap_export_reads_package_files_through_the_store(stream: S3World) -> None:
    """The export's members come from the bucket (signed records: the server signs with S3)."""
    planned = stream.live.admin.post("/api/v1/airgap/exports", json={"channel": stream.public})
    assert planned.status_code == 201, planned.text
    members = f"/api/v1/airgap/exports/{planned.json()['bundle_id']}/members"
    manifest = orjson.loads(stream.live.admin.get(f"{members}/manifest.json").content)
    sha = manifest["files"][f"pkgs/noarch/{PACKAGE}"]["sha256"]
    assert sha == stream.sha256
    got = stream.live.admin.get(f"{members}/pkgs/noarch/{PACKAGE}", params={"sha256": sha})
    assert got.status_code == 200, got.text
    assert got.content == stream.data
    assert got.headers["x-sha256"] == sha


def test_a_store_that_fails_is_a_503_not_a_500(
    stream: S3World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The store unreachable while a file no one asked for yet is needed (the .bz2 index is
    derived from repodata.json on first request): a problem naming the store, and no secret."""
    down = boto3.session.Session().client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # nothing listens on the discard port
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    monkeypatch.setattr(stream.live.container.blobs, "client", down)
    answer = stream.live.client().get(f"/conda/{stream.public}/noarch/repodata.json.bz2")
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "storage:unavailable"
    assert SECRET_KEY not in answer.text
    spec = PackageSpec(name="notstored")
    upload = stream.live.upload(stream.public, build_conda(tmp_path, spec))
    assert upload.status_code == 503, upload.text
    assert upload.json()["code"] == "storage:unavailable"
    staging = stream.live.settings.data_dir / "s3-staging"
    assert not list(staging.iterdir())  # the staged upload is not left behind
