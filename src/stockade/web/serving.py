"""uvicorn's HTTP protocols with a deadline for a request's headers (against slowloris).

uvicorn closes an idle kept-alive connection after ``timeout_keep_alive``, but has no limit on the
time a client takes to send a request's headers: a connection that was opened and sent nothing, or
half a request line, stays open for good (and data received cancels the keep-alive timer, so a
kept-alive connection that starts a request and stops is no better). Neither h11 nor httptools
offer one. ``HeaderDeadline`` adds it to both of uvicorn's protocols: a timer armed when the
connection opens and again when each response is complete; when it fires and no request is being
handled (its headers never completed), the connection is closed. A request whose headers arrived
in time is never cut off by it. See docs/adr/0011-request-limits-and-header-deadline.md.

``stockade serve`` passes ``HttpToolsWithDeadline`` to uvicorn (``H11WithDeadline`` for h11);
``configure_header_timeout`` sets the deadline for the process (each worker process sets it from
its own settings, in ``stockade.asgi``).

:func:`uvicorn_options` are the options ``stockade serve`` gives uvicorn, with one worker or
several (uvicorn hands its configuration to each worker process): among them the reverse proxies
whose ``X-Forwarded-For``/``-Proto`` are believed (``server.trusted_proxies``), which decide the
client address that sign-in throttling, preview limits and the access log see.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stockade.settings import Settings
from stockade.storage.permissions import PRIVATE_DIR, secure_data_dir

if TYPE_CHECKING:
    _Base = HttpToolsProtocol  # what the mixin uses of it, both protocols have
else:
    _Base = object

DEFAULT_HEADER_TIMEOUT_S = 10.0


class HeaderDeadline(_Base):
    """Mixed into a uvicorn HTTP protocol: headers must arrive within ``header_timeout`` s."""

    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return  # a request's headers arrived in time; it is being handled
        if not self.transport.is_closing():
            self.transport.close()


class HttpToolsWithDeadline(HeaderDeadline, HttpToolsProtocol):
    """uvicorn's default protocol (``uvicorn[standard]`` brings httptools) with the deadline."""


class H11WithDeadline(HeaderDeadline, H11Protocol):  # type: ignore[misc]  # mixin typed on httptools
    """The same on h11."""


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for this configuration (the app, protocol and workers aside)."""
    proxies = settings.server.trusted_proxies
    return {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,  # ours is in RequestContextMiddleware
        "log_config": None,
        "timeout_graceful_shutdown": 10,
        # uvicorn's default trusts loopback, or whatever FORWARDED_ALLOW_IPS says: ours is explicit
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": list(proxies),
    }


def configure_header_timeout(seconds: float) -> None:
    """The header deadline of every connection this process accepts from now on."""
    HeaderDeadline.header_timeout = seconds


def secure_files(settings: Settings) -> None:
    """The data folder and the files in it private (what a command that writes there needs;
    nothing process-wide is changed, unlike :func:`prepare_server`)."""
    secure_data_dir(
        settings.data_dir,
        blob_dir=settings.blob_dir,
        extra_files=_sqlite_files(settings.db_url),
        group_blobs=settings.x_accel_redirect is not None,
    )


def prepare_server(settings: Settings) -> None:
    """Before a server or worker process touches its files: private files, spools kept in the
    data folder (not ``/tmp``), and this process's header deadline."""
    secure_files(settings)
    spool = settings.data_dir / "spool"
    spool.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    # Whatever a library spools to a temporary file (a form's parts past 1 MiB, say) goes here.
    tempfile.tempdir = str(spool)
    configure_header_timeout(settings.server.header_timeout_s)


def _sqlite_files(db_url: str) -> tuple[Path, ...]:
    if not db_url.startswith("sqlite"):
        return ()
    path = db_url.split("///", 1)[-1]
    if not path or path == ":memory:":
        return ()
    return tuple(Path(path + suffix) for suffix in ("", "-wal", "-shm", "-journal"))
