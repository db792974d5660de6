"""The blob store chosen by configuration: ``[storage] backend = "filesystem" | "s3"``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stockade.settings import S3Settings, Settings
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.interfaces import BlobStore

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from stockade.storage.s3 import S3BlobStore

#: connections kept to the object store (serving threads share one client)
S3_POOL = 32


def open_blob_store(settings: Settings) -> BlobStore:
    """The configured store; the S3 one has its staging folder under the data folder."""
    if settings.storage.backend == "s3":
        return open_s3(settings)
    return FilesystemBlobStore(
        settings.blob_dir, group_readable=settings.x_accel_redirect is not None
    )


def open_s3(settings: Settings) -> S3BlobStore:
    from stockade.storage.s3 import S3BlobStore  # boto3 is imported only when S3 is used

    s3 = settings.storage.s3
    assert s3.bucket is not None  # StorageSettings checked it
    client = s3_client(s3, s3.endpoint_url)
    presign = s3_client(s3, s3.public_endpoint_url) if s3.public_endpoint_url else client
    return S3BlobStore(
        client,
        s3.bucket,
        settings.data_dir / "s3-staging",
        prefix=s3.prefix,
        presign_client=presign,
        multipart_threshold=s3.multipart_threshold,
        multipart_chunksize=s3.multipart_chunksize,
    )


def s3_client(s3: S3Settings, endpoint_url: str | None) -> S3Client:
    """A boto3 S3 client; without keys in the settings, boto3's own credential chain."""
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": s3.addressing_style},
        connect_timeout=s3.timeout_s,
        read_timeout=s3.timeout_s,
        retries={"max_attempts": 4, "mode": "standard"},
        max_pool_connections=S3_POOL,
    )
    secret = s3.secret_access_key.get_secret_value() if s3.secret_access_key else None
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id or None,
        aws_secret_access_key=secret,
        config=config,
    )
