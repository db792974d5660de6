"""A REAL S3 server for tests: moto's server mode (``python -m moto.server``) in a subprocess on a
free loopback port, started once per test session (per xdist worker)::

    def test_x(s3_server: S3Server) -> None:
        bucket = s3_server.new_bucket()                  # a fresh, empty bucket
        store = s3_server.store(bucket, tmp_path)        # an S3BlobStore on it
        run_server(..., storage=s3_server.storage(bucket, downloads="stream"))

Nothing is mocked in the test process: boto3 talks HTTP to the server, as it would to MinIO.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stockade.settings import S3Settings
from stockade.storage.backends import s3_client
from stockade.storage.s3 import S3BlobStore
from tests.support.server import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

ACCESS_KEY = "stockade-test-key"
SECRET_KEY = "stockade-test-secret-value"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    log: Path

    def settings(self, bucket: str, **extra: Any) -> S3Settings:
        return S3Settings(
            bucket=bucket,
            endpoint_url=self.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            addressing_style="path",
            **extra,
        )

    def storage(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """``[storage]`` settings of a server on ``bucket`` (``run_server(storage=…)``)."""
        s3 = {
            "bucket": bucket,
            "endpoint_url": self.endpoint,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "addressing_style": "path",
            **extra,
        }
        return {"backend": "s3", "s3": s3}

    @cached_property
    def client(self) -> S3Client:
        """One client for the session (building one costs a few hundred milliseconds)."""
        return s3_client(self.settings("any"), self.endpoint)

    def new_bucket(self) -> str:
        bucket = f"stockade-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=bucket)
        return bucket

    def store(self, bucket: str, staging: Path, **options: Any) -> S3BlobStore:
        return S3BlobStore(self.client, bucket, staging, **options)


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto's S3 server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"moto's S3 server did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    log = Path(tempfile.mkdtemp(prefix="stockade-moto-")) / "moto.log"
    proc, endpoint = start_moto(log)
    try:
        yield S3Server(endpoint, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
