"""Pieces shared by the upstream sources and the downloader: errors, URL redaction, retry rules,
and a temporary file that hashes what is written to it and checks the result."""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urljoin

import httpx
import zstandard

from stockade.core.errors import ErrorKind, InvalidInputError, StockadeError
from stockade.core.outbound import MAX_BODY, RefusedDestinationError
from stockade.core.urls import redact_text, redact_url

log = logging.getLogger("stockade.mirroring")

CHUNK = 1 << 20


class UpstreamError(StockadeError):
    """The upstream could not give what was asked. ``code``: ``mirror:upstream-unreachable``,
    ``mirror:upstream-status``, ``mirror:upstream-auth`` (401/403), ``mirror:no-subdir``,
    ``mirror:upstream-tls``, ``mirror:bad-repodata``. Messages carry redacted URLs only."""

    kind = ErrorKind.UNAVAILABLE
    code = "mirror:upstream-unreachable"
    title = "Upstream channel error"


class ChecksumMismatchError(UpstreamError):
    """A downloaded file is not the one its record describes (``mirror:sha256-mismatch``, or
    ``mirror:size-mismatch`` when more or fewer bytes than the record's ``size`` arrived)."""

    kind = ErrorKind.INVALID
    code = "mirror:sha256-mismatch"
    title = "Downloaded file does not match its record"


class TransientStatusError(Exception):
    """A transient status (429, 5xx): try again after the backoff (or ``Retry-After``)."""

    def __init__(self, retry_after: str | None) -> None:
        super().__init__("transient status")
        self.retry_after = retry_after


class TransferStoppedError(Exception):
    """A copy was interrupted because the run is stopping."""


# --------------------------------------------------------------------------------- names and URLs


def check_subdir(subdir: str) -> None:
    """A subdir a run may fetch (a mirror saved before its settings were checked for length
    fails with this, not with a database error: ``SubdirIndex.subdir`` holds 64 characters)."""
    if (
        not subdir
        or len(subdir) > 64
        or not all(c.isascii() and (c.isalnum() or c in "-_") for c in subdir)
    ):
        raise InvalidInputError(f"not a subdir name: {subdir[:80]!r}", code="mirror:bad-subdir")


def check_filename(filename: str) -> None:
    if not filename or filename.startswith(".") or any(c in filename for c in "/\\\0?#"):
        raise InvalidInputError(
            f"not a package file name: {filename[:80]!r}", code="mirror:bad-file"
        )


def resolve_file_url(channel_url: str, subdir: str, filename: str, base_url: str | None) -> str:
    """Where a package file is: next to the repodata, or under its CEP 15 ``info.base_url``."""
    check_subdir(subdir)
    check_filename(filename)
    subdir_url = f"{channel_url.rstrip('/')}/{subdir}/"
    if base_url:
        subdir_url = urljoin(subdir_url + "repodata.json", base_url)
        if not subdir_url.endswith("/"):
            subdir_url += "/"
    return subdir_url + quote(filename, safe="+!=,~")


def scrub_secrets(text: str, secrets: tuple[str, ...]) -> str:
    return redact_text(text, secrets)


def status_error(status: int, url: str, secrets: tuple[str, ...] = ()) -> UpstreamError:
    code = "mirror:upstream-auth" if status in (401, 403) else "mirror:upstream-status"
    shown = scrub_secrets(redact_url(url), secrets)
    return UpstreamError(f"{shown}: HTTP {status}", code=code, status=status, url=shown)


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def transport_error(exc: BaseException, url: str, secrets: tuple[str, ...] = ()) -> UpstreamError:
    """What a run says when the upstream cannot be reached: TLS, or "unreachable", never why
    (refused, reset, timed out: that would tell a channel reader which internal ports are
    open). The reason goes to the server log for administrators."""
    shown = scrub_secrets(redact_url(url), secrets)
    tls = _is_tls(exc) or "CERTIFICATE_VERIFY_FAILED" in str(exc)
    code = "mirror:upstream-tls" if tls else "mirror:upstream-unreachable"
    what = "TLS verification failed" if tls else "cannot be reached"
    log.warning(
        "upstream %s: %s (%s)",
        shown,
        what,
        scrub_secrets(str(exc), secrets)[:300] or type(exc).__name__,
    )
    return UpstreamError(f"{shown}: {what}", code=code, url=shown)


def refused_error(exc: RefusedDestinationError, url: str) -> UpstreamError:
    """A connection the outbound guard refused (the reason to the server log only)."""
    shown = redact_url(url)
    log.warning("upstream %s: %s", shown, exc)
    return UpstreamError(
        f"{shown}: {RefusedDestinationError.public}", code="mirror:refused-destination", url=shown
    )


# --------------------------------------------------------------------------------- retries


def is_transient_status(status: int) -> bool:
    return status == 429 or status >= 500


def is_transient_error(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TimeoutException | httpx.RemoteProtocolError | httpx.ProxyError):
        return True
    return isinstance(exc, httpx.NetworkError) and not _is_tls(exc)


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more attempts after the first, ``backoff_s * 2**attempt`` apart (capped), or
    what a 429/503 ``Retry-After`` asks (in seconds, capped)."""

    retries: int = 3
    backoff_s: float = 0.25
    max_delay_s: float = 10.0

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        return attempt < self.retries and is_transient_error(exc)

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), self.max_delay_s)
            except ValueError:
                pass  # an HTTP date: use our own backoff
        return min(self.backoff_s * 2.0**attempt, self.max_delay_s)


# --------------------------------------------------------------------------------- files


class VerifyingSink:
    """A temporary file in ``directory`` that hashes what is written; :meth:`finish` checks the
    sha256 (and size) and returns the path, or deletes the file and raises ChecksumMismatchError.
    More bytes than ``size`` fail at once (an endless answer never fills the disk)."""

    def __init__(self, directory: Path, sha256: str, size: int | None, label: str) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix="mirror-", suffix=".part")
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb")
        self._sha256 = hashlib.sha256()
        self.expected_sha256 = sha256.lower()
        self.expected_size = size
        self.label = label
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.expected_size is not None and self.size > self.expected_size:
            raise self._size_error()
        self._sha256.update(chunk)
        self._fh.write(chunk)

    def write_many(self, chunks: list[bytes]) -> None:
        """Several chunks in one call (one thread hop for ~1 MiB, no joining copy)."""
        for chunk in chunks:
            self.write(chunk)

    def finish(self) -> Path:
        self._fh.close()
        if self.expected_size is not None and self.size != self.expected_size:
            self.abort()
            raise self._size_error()
        actual = self._sha256.hexdigest()
        if actual != self.expected_sha256:
            self.abort()
            raise ChecksumMismatchError(
                f"{self.label}: sha256 mismatch: expected {self.expected_sha256}, got {actual}",
                expected=self.expected_sha256,
                actual=actual,
            )
        return self.path

    def abort(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)

    def _size_error(self) -> ChecksumMismatchError:
        got = (
            f"more than {self.expected_size}"
            if self.size > (self.expected_size or 0)
            else self.size
        )
        return ChecksumMismatchError(
            f"{self.label}: size mismatch: expected {self.expected_size} bytes, got {got}",
            code="mirror:size-mismatch",
            expected=self.expected_size,
            actual=self.size,
        )


def copy_verified(
    path: Path,
    dest_dir: Path,
    sha256: str,
    size: int | None,
    stop: threading.Event | None = None,
) -> Path:
    """Copy ``path`` into a verified temporary file of ``dest_dir`` (see VerifyingSink)."""
    with path.open("rb") as source:
        sink = VerifyingSink(dest_dir, sha256, size, path.name)
        try:
            while chunk := source.read(CHUNK):
                if stop is not None and stop.is_set():
                    raise TransferStoppedError(path.name)
                sink.write(chunk)
            return sink.finish()
        except BaseException:
            sink.abort()
            raise


_ZST_STEP = 1024  # compressed bytes fed at once: at most ~32 MiB out, checked against the cap


def decompress_zst(raw: bytes, limit: int = MAX_BODY) -> bytes:
    """Every zstd frame of ``raw``, decompressed; UpstreamError(mirror:bad-repodata) if corrupt
    or larger than ``limit`` bytes (a zstd bomb never fills the memory)."""
    out: list[bytes] = []
    data, size = raw, 0
    try:
        while data:
            frame = zstandard.ZstdDecompressor().decompressobj()
            start = 0
            while start < len(data) and not frame.eof:
                out.append(frame.decompress(data[start : start + _ZST_STEP]))
                start += _ZST_STEP
                size += len(out[-1])
                if size > limit:
                    raise UpstreamError(
                        f"repodata.json.zst decompresses to more than {limit} bytes",
                        code="mirror:bad-repodata",
                    )
            if not frame.eof:
                raise UpstreamError("repodata.json.zst is truncated", code="mirror:bad-repodata")
            data = frame.unused_data + data[start:]
    except zstandard.ZstdError as exc:
        raise UpstreamError(
            f"repodata.json.zst is not valid zstd ({exc})", code="mirror:bad-repodata"
        ) from None
    return b"".join(out)


# --------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DownloadItem:
    subdir: str
    filename: str
    sha256: str
    size: int | None
    url: str


@dataclass
class DownloadResult:
    item: DownloadItem
    ok: bool
    bytes: int
    skipped: bool  # the blob was already present (resume): nothing fetched
    error: str | None = None
    code: str | None = None  # e.g. "mirror:sha256-mismatch"


@dataclass
class DownloadSummary:
    done: int
    skipped: int
    failed: list[DownloadResult]
    bytes: int
    stopped: bool


@dataclass
class Tally:
    on_result: Callable[[DownloadResult], None] | None
    done: int = 0
    skipped: int = 0
    bytes: int = 0
    failed: list[DownloadResult] = field(default_factory=list)

    def add(self, result: DownloadResult) -> None:
        if result.skipped:
            self.skipped += 1
        elif result.ok:
            self.done += 1
            self.bytes += result.bytes
        else:
            self.failed.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def summary(self, stopped: bool) -> DownloadSummary:
        return DownloadSummary(self.done, self.skipped, self.failed, self.bytes, stopped)


class StopSignal:
    """``should_stop`` polled from the calling thread; ``event`` tells copying threads."""

    def __init__(self, should_stop: Callable[[], bool] | None) -> None:
        self._should_stop = should_stop
        self.event = threading.Event()

    def check(self) -> bool:
        if not self.event.is_set() and self._should_stop is not None and self._should_stop():
            self.event.set()
        return self.event.is_set()


def failure_result(item: DownloadItem, exc: BaseException) -> DownloadResult:
    if isinstance(exc, StockadeError):
        return DownloadResult(item, False, 0, False, exc.detail, exc.code)
    message = f"{item.filename}: {type(exc).__name__}: {exc}"[:500]
    return DownloadResult(item, False, 0, False, message, "mirror:download-failed")
