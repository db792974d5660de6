"""S3 blob store (AWS S3, MinIO, Ceph RGW): objects ``PREFIX/ab/cd/abcd…`` in one bucket.

An object appears whole or not at all (a PUT, or the completion of a multipart upload), so a
reader never sees a half-written blob. Reads stream (``open`` wraps the GET's body; a seek starts
a ranged GET); package downloads may be redirected to a presigned URL (``presigned_url``).
A 404 means "missing" (``exists`` is False, the rest raise ``BlobNotFoundError``); any other
error (access denied, no such bucket, throttling, network) raises ``BlobStoreUnavailableError``,
never mistaken for a missing blob.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from stockade.storage.errors import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStoreUnavailableError,
)
from stockade.storage.permissions import PRIVATE_DIR

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# A blob stored again this long after it was first stored has its date made now (``_refresh``).
_REFRESH_AFTER = timedelta(seconds=60)
#: characters kept in the file name of Content-Disposition (conda file names use only these)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")
MIB = 1024 * 1024
READ_CHUNK = MIB


class S3BlobStore:
    """``client`` talks to the store; ``presign_client`` (default: ``client``) signs the URLs
    clients are redirected to, with the endpoint they reach the store by. ``staging`` is a
    local folder (``0700``) for files on their way in."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        staging: Path,
        *,
        prefix: str = "",
        presign_client: S3Client | None = None,
        multipart_threshold: int = 64 * MIB,
        multipart_chunksize: int = 16 * MIB,
        upload_concurrency: int = 4,
        page_size: int = 1000,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._presign = presign_client or client
        self._staging = staging
        self._page_size = page_size
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=upload_concurrency,
            use_threads=upload_concurrency > 1,
        )
        staging.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        staging.chmod(PRIVATE_DIR)

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    def key_for(self, sha256: str) -> str:
        if not _SHA256.match(sha256):
            raise BlobNotFoundError(f"not a sha256: {sha256[:80]!r}")
        return f"{self.prefix}{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _unavailable(self, action: str, sha256: str, exc: Exception) -> BlobStoreUnavailableError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            why = f"{error.get('Code', '?')} (HTTP {status}): {error.get('Message', '')}".strip()
        else:
            why = f"{type(exc).__name__}: {exc}"
        return BlobStoreUnavailableError(
            f"blob store s3://{self.bucket}/{self.prefix}: {action} {sha256[:80]} failed: {why}"
        )

    def _call(self, action: str, sha256: str, call: Callable[[], Any]) -> Any:
        """``call()``; a 404 raises BlobNotFoundError, any other failure a storage error."""
        try:
            return call()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                raise BlobNotFoundError(f"blob {sha256} is missing") from None
            raise self._unavailable(action, sha256, exc) from exc
        except (BotoCoreError, Boto3Error) as exc:  # Boto3Error: S3UploadFailedError
            raise self._unavailable(action, sha256, exc) from exc

    def _head(self, sha256: str) -> dict[str, Any]:
        key = self.key_for(sha256)
        head: dict[str, Any] = self._call(
            "HEAD", sha256, lambda: self.client.head_object(Bucket=self.bucket, Key=key)
        )
        return head

    def staging_dir(self) -> Path:
        return self._staging

    def put_file(self, path: Path, sha256: str) -> None:
        """Upload (multipart above the threshold), then delete the local file; a blob already
        stored is not sent again."""
        key = self.key_for(sha256)
        if not self._refresh(sha256):
            self._call(
                "upload",
                sha256,
                lambda: self.client.upload_file(str(path), self.bucket, key, Config=self._transfer),
            )
        path.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        key = self.key_for(sha256)
        if not self._refresh(sha256):
            self._call(
                "PUT",
                sha256,
                lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data),
            )
        return sha256

    def _refresh(self, sha256: str) -> bool:
        """Whether the blob is stored; if so and it was stored over a minute ago, its
        ``LastModified`` is made now (a copy onto itself), so ``fsck --repair`` cannot collect
        bytes stored again between this store and the commit of the row that names them."""
        try:
            head = self._head(sha256)
        except BlobNotFoundError:
            return False
        stored: datetime = head["LastModified"]
        if datetime.now(UTC) - stored.astimezone(UTC) > _REFRESH_AFTER:
            key = self.key_for(sha256)
            self._call(
                "refresh",
                sha256,
                lambda: self.client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    MetadataDirective="REPLACE",
                    Metadata={"stored-again": datetime.now(UTC).isoformat(timespec="seconds")},
                ),
            )
        return True

    def check_reachable(self) -> None:
        """HEAD the bucket: a missing bucket (which a HEAD of a key cannot tell from a missing
        blob) or one refused to these credentials raises."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable("HEAD bucket", "", exc) from exc
        if not self._staging.is_dir():
            raise BlobStoreUnavailableError(f"staging folder {self._staging} is missing")

    def exists(self, sha256: str) -> bool:
        self.key_for(sha256)  # a bad name is refused, not "missing"
        try:
            self._head(sha256)
        except BlobNotFoundError:
            return False
        return True

    def size(self, sha256: str) -> int:
        return int(self._head(sha256)["ContentLength"])

    def modified_at(self, sha256: str) -> datetime:
        modified: datetime = self._head(sha256)["LastModified"]
        return modified.astimezone(UTC)

    def _get(self, sha256: str, start: int = 0) -> dict[str, Any]:
        key = self.key_for(sha256)

        def get() -> Any:
            if start:
                return self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-")
            return self.client.get_object(Bucket=self.bucket, Key=key)

        got: dict[str, Any] = self._call("GET", sha256, get)
        return got

    def open(self, sha256: str) -> BinaryIO:
        """A buffered stream over the object's body (nothing read ahead beyond the buffer);
        ``seek`` starts a ranged GET at the new position."""
        first = self._get(sha256)
        size = int(first["ContentLength"])
        raw = _ObjectReader(sha256, size, first["Body"], lambda start: self._get(sha256, start))
        return io.BufferedReader(raw, buffer_size=READ_CHUNK)

    def read_bytes(self, sha256: str) -> bytes:
        got = self._get(sha256)
        size = int(got["ContentLength"])
        with _reading(sha256):
            data: bytes = got["Body"].read()
        if len(data) != size:
            raise BlobStoreUnavailableError(
                f"blob {sha256}: the object store sent {len(data)} of {size} bytes"
            )
        return data

    def local_path(self, sha256: str) -> Path | None:
        return None

    def presigned_url(
        self,
        sha256: str,
        filename: str,
        expires_s: int = 300,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
    ) -> str | None:
        """A GET URL valid ``expires_s`` seconds; the object store answers it with
        ``Content-Disposition: attachment; filename=…`` (and the given Content-Type and
        Cache-Control). Signing is local: no request is made."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key_for(sha256),
            "ResponseContentDisposition": f'attachment; filename="{_safe_name(filename)}"',
        }
        if content_type:
            params["ResponseContentType"] = content_type
        if cache_control:
            params["ResponseCacheControl"] = cache_control
        url: str = self._presign.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_s
        )
        return url

    def delete(self, sha256: str) -> None:
        key = self.key_for(sha256)
        self._call("DELETE", sha256, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def iter_all(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.prefix,
            PaginationConfig={"PageSize": self._page_size},
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"].rsplit("/", 1)[-1]
                    if _SHA256.match(name) and item["Key"] == self.key_for(name):
                        yield name
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable("LIST", self.prefix, exc) from exc

    def verify(self, sha256: str) -> None:
        digest = hashlib.sha256()
        with self.open(sha256) as fh:
            for chunk in iter(lambda: fh.read(READ_CHUNK), b""):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise BlobIntegrityError(f"blob {sha256} has sha256 {digest.hexdigest()}")


@contextmanager
def _reading(sha256: str) -> Iterator[None]:
    """A failure while a body is read (timeout, connection reset) is the store's."""
    try:
        yield
    except BotoCoreError as exc:
        raise BlobStoreUnavailableError(
            f"blob {sha256}: reading from the object store failed: {type(exc).__name__}: {exc}"
        ) from exc


def _safe_name(filename: str) -> str:
    return _UNSAFE_NAME.sub("_", filename.rsplit("/", 1)[-1])[:200] or "download"


class _ObjectReader(io.RawIOBase):
    """The raw stream under ``S3BlobStore.open``: reads from the current GET's body; a seek to
    another position drops it, and the next read starts a ranged GET there."""

    def __init__(
        self,
        sha256: str,
        size: int,
        body: Any,
        fetch: Callable[[int], dict[str, Any]],
    ) -> None:
        super().__init__()
        self._sha256 = sha256
        self._size = size
        self._body: Any = body
        self._fetch = fetch
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._pos:
            self._drop_body()
            self._pos = position
        return position

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        if self._body is None:
            self._body = self._fetch(self._pos)["Body"]
        view = memoryview(buffer).cast("B")
        with _reading(self._sha256):
            data = self._body.read(len(view))
        if not data:
            raise BlobStoreUnavailableError(
                f"blob {self._sha256}: the object store's answer ended at byte {self._pos} "
                f"of {self._size}"
            )
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        """The rest, in big reads (``RawIOBase.readall`` reads 8 KiB at a time)."""
        parts = []
        while block := self.read(READ_CHUNK):
            parts.append(block)
        return b"".join(parts)

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()
