"""One SSL context for every httpx client the tests make with the defaults.

httpx builds a new SSL context for each ``Client`` (and for each module-level ``httpx.get``),
loading every CA certificate of certifi: about 20 ms of CPU each time. The tests make tens of
thousands of clients (``LiveServer.admin`` opens one at every use, readiness polls call
``httpx.get``), almost all for ``http://`` URLs on loopback, so that cost alone was a large part
of the suite's CPU time. With :func:`share_default_ssl_context` (called by ``tests/conftest.py``),
clients built with the default verification share one context, built once per process and per
``SSL_CERT_FILE``/``SSL_CERT_DIR`` (a test that points them at its own CA gets its own context).
Clients given a context, a CA bundle, ``verify=False`` or a client certificate are untouched.
Sharing is safe: a context is only read when a connection is wrapped (httpcore sets the same
ALPN list on it for every HTTP/1.1 client).
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

import httpx._transports.default as transports

_original = transports.create_ssl_context
_lock = threading.Lock()
_shared: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}


def _create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
    if verify is not True or cert is not None:
        return _original(verify=verify, cert=cert, trust_env=trust_env)
    key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _lock:
        context = _shared.get(key)
        if context is None:
            context = _shared[key] = _original(verify=True, cert=None, trust_env=trust_env)
        return context


def share_default_ssl_context() -> None:
    transports.create_ssl_context = _create_ssl_context  # type: ignore[assignment]
