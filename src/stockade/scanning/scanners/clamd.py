"""ClamAV through ``clamd`` where configured (``[scanning] clamd = "unix:///run/clamav/clamd.ctl"``).

The client is written here on the stdlib :mod:`socket`: the protocol is tiny. Each member is sent
on a connection of its own with ``zINSTREAM`` (chunks prefixed by their 4-byte big-endian length, a
zero length ends the stream); clamd answers ``stream: OK``, ``stream: <signature> FOUND`` or
``<reason> ERROR``. ``zVERSION`` answers ``ClamAV 1.4.6/27483/<date>``: the engine and signature
database versions are part of this scanner's ``version``, so a signature update triggers rescans.

This does not go through the outbound HTTP guard (:mod:`stockade.core.outbound`): the guard is for
URLs that users or upstreams name, which could point the server at internal services. The clamd
address is set only by the administrator in the server's configuration, is a local socket (or a
daemon on the administrator's network), speaks no HTTP and is sent package bytes, never a secret.

Any failure to get an answer (no daemon, timeout, refused stream, unknown answer) raises
:class:`ScannerUnavailableError`: the artifact is held (fail closed), never passed unscanned.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from stockade.scanning.interfaces import (
    Finding,
    Member,
    ScannerUnavailableError,
    ScanSubject,
    Verdict,
)

__all__ = ["ClamdAddress", "ClamdClient", "ClamdScanner", "parse_address"]

CODE_REVISION: Final = 1  # bump when findings change without a signature change
CHUNK: Final = 64 * 1024
MAX_ANSWER: Final = 4096
DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_MAX_BYTES: Final = 16 * 1024**2  # under clamd's default StreamMaxLength (25 MiB)
VERSION_TTL_S: Final = 30.0
SUSPICIOUS_PREFIXES: Final = ("Heuristics.", "PUA.")  # ClamAV's guesses and unwanted programs


@dataclass(frozen=True, slots=True)
class ClamdAddress:
    """A unix socket path, or a TCP host and port."""

    path: str | None = None
    host: str | None = None
    port: int = 3310

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.path else f"tcp://{self.host}:{self.port}"


def parse_address(text: str) -> ClamdAddress:
    """``unix:///run/clamav/clamd.ctl`` or ``tcp://127.0.0.1:3310`` (ValueError otherwise)."""
    parts = urlsplit(text.strip())
    if parts.scheme == "unix" and parts.path.startswith("/") and not parts.netloc:
        return ClamdAddress(path=parts.path)
    if parts.scheme == "tcp" and parts.hostname and not parts.path.strip("/"):
        try:
            port = parts.port or 3310
        except ValueError:
            raise ValueError(f"bad clamd port in {text!r}") from None
        return ClamdAddress(host=parts.hostname, port=port)
    raise ValueError("clamd is unix:///path/to/clamd.ctl or tcp://host:port")


class ClamdClient:
    """The two clamd commands Stockade uses, each on a connection of its own."""

    def __init__(self, address: ClamdAddress, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.address = address
        self.timeout_s = timeout_s

    def version(self) -> str:
        """clamd's ``VERSION`` answer (``ClamAV 1.4.6/27483/Sun Dec  6 09:25:03 2026``)."""
        with self._connect() as sock:
            self._send(sock, b"zVERSION\0")
            return self._answer(sock)

    def scan(self, data: bytes) -> str:
        """clamd's answer to an ``INSTREAM`` of ``data`` (``stream: OK``, ``… FOUND``, ``… ERROR``)."""
        with self._connect() as sock:
            try:
                sock.sendall(b"zINSTREAM\0")
                for start in range(0, len(data), CHUNK):
                    chunk = data[start : start + CHUNK]
                    sock.sendall(len(chunk).to_bytes(4, "big") + chunk)
                sock.sendall(b"\0\0\0\0")
            except TimeoutError:
                raise self._unavailable("timed out") from None
            except OSError:
                pass  # clamd closes early on a refused stream: its answer says why
            return self._answer(sock)

    def _connect(self) -> socket.socket:
        family = socket.AF_UNIX if self.address.path else socket.AF_INET
        target: str | tuple[str, int]
        if self.address.path:
            target = self.address.path
        else:
            assert self.address.host is not None
            target = (self.address.host, self.address.port)
            family = _family(self.address.host)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(target)
        except OSError as exc:
            sock.close()
            raise self._unavailable(f"is not reachable ({type(exc).__name__})") from None
        return sock

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except OSError as exc:
            raise self._unavailable(f"connection failed ({type(exc).__name__})") from None

    def _answer(self, sock: socket.socket) -> str:
        received = b""
        deadline = time.monotonic() + self.timeout_s
        try:
            while b"\0" not in received and len(received) < MAX_ANSWER:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                part = sock.recv(MAX_ANSWER)
                if not part:
                    break
                received += part
        except TimeoutError:
            raise self._unavailable("timed out") from None
        except OSError as exc:
            raise self._unavailable(f"connection failed ({type(exc).__name__})") from None
        answer = received.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
        if not answer:
            raise self._unavailable("closed the connection without an answer")
        return answer

    def _unavailable(self, why: str) -> ScannerUnavailableError:
        return ScannerUnavailableError(f"clamd at {self.address} {why}")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class ClamdScanner:
    """Send every member (its first ``max_bytes``) to clamd; a signature found is a finding.

    ``Heuristics.*`` and ``PUA.*`` signatures are ``suspicious``, every other one ``malicious``.
    ``version`` asks clamd at most every :data:`VERSION_TTL_S` seconds; when clamd does not answer
    it is ``…/unavailable`` (the scan itself then fails and holds the artifact).
    """

    name = "clamd"

    def __init__(
        self,
        address: ClamdAddress | str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        parsed = parse_address(address) if isinstance(address, str) else address
        self.client = ClamdClient(parsed, timeout_s=timeout_s)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._version: tuple[float, str] | None = None

    @property
    def version(self) -> str:
        with self._lock:
            now = time.monotonic()
            if self._version is None or now - self._version[0] > VERSION_TTL_S:
                self._version = (now, f"{CODE_REVISION}/{self._daemon_version()}")
            return self._version[1]

    def _daemon_version(self) -> str:
        try:
            answer = self.client.version()
        except ScannerUnavailableError:
            return "unavailable"
        return "/".join(answer.split("/")[:2])  # engine and database versions, not the date

    def wants(self, path: str) -> bool:
        return True

    def scan_member(self, subject: ScanSubject, member: Member) -> Iterable[Finding]:
        answer = self.client.scan(member.data[: self._max_bytes])
        signature = _signature(answer, member.path)
        if signature is None:
            return ()
        suspicious = signature.startswith(SUSPICIOUS_PREFIXES)
        return (
            Finding(
                scanner=self.name,
                rule=f"clamd:{signature}",
                verdict=Verdict.SUSPICIOUS if suspicious else Verdict.MALICIOUS,
                member=member.path,
                evidence=f"ClamAV signature {signature}",
                details={
                    "signature": signature,
                    "scanned_bytes": min(len(member.data), self._max_bytes),
                },
            ),
        )

    def finish(self, subject: ScanSubject) -> Iterable[Finding]:
        return ()


def _signature(answer: str, path: str) -> str | None:
    """The signature an INSTREAM answer names, None for ``OK``; an error raises."""
    _, _, verdict = answer.partition(": ")
    if answer.startswith("stream: ") and verdict == "OK":
        return None
    if answer.startswith("stream: ") and verdict.endswith(" FOUND"):
        name = verdict.removesuffix(" FOUND").strip()
        return "".join(c if c.isprintable() else "?" for c in name)[:200] or "unknown"
    reason = "".join(c if c.isprintable() else "?" for c in answer)[:200]
    raise ScannerUnavailableError(f"clamd could not scan {path}: {reason}")
