"""Run the documented nginx front (``deploy/nginx/stockade.conf``) on a loopback port.

The file shipped in the repository (and shown in docs/deployment-nginx.md) is used as it is:
only its machine-specific values (listen and TLS lines, socket, paths) are replaced, each of
which must be found exactly once, so that the tested configuration is the documented one.
Used by tests/functional/test_nginx_front.py and benchmarks/bench_private_nginx.py.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "stockade.conf"
MAIN = ROOT / "benchmarks" / "nginx" / "auth-request.conf"
#: Where Debian's libnginx-mod-http-set-misc (and the ndk module it needs) put their modules
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules")
MODULES = ("ndk_http_module.so", "ngx_http_set_misc_module.so")


def nginx_binary() -> str | None:
    """``STOCKADE_TEST_NGINX`` (scripts/test-env), else nginx on the PATH or in /usr/sbin."""
    found = os.environ.get("STOCKADE_TEST_NGINX") or shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    return found


def modules_dir() -> str | None:
    """The folder holding the set-misc module and the ndk module it needs, if installed."""
    for folder in MODULE_DIRS:
        if all((Path(folder) / m).exists() for m in MODULES):
            return folder
    return None


@dataclass(frozen=True)
class Front:
    url: str
    prefix: Path
    cache: Path  # the auth_request answers nginx keeps
    access_log: Path
    error_log: Path


def render_site(*, port: int, upstream: str, blobs: Path, prefix: Path) -> str:
    """deploy/nginx/stockade.conf with this machine's values instead of the production ones."""
    text = SITE.read_text()
    replacements = {
        "    listen 443 ssl;\n": f"    listen 127.0.0.1:{port};\n",
        "    ssl_certificate /etc/nginx/tls/conda.example.org.crt;\n": "",
        "    ssl_certificate_key /etc/nginx/tls/conda.example.org.key;\n": "",
        "server unix:/run/stockade/stockade.sock;": f"server {upstream};",
        "/var/cache/nginx/stockade-authz": str(prefix / "authz-cache"),
        "/var/log/nginx/stockade-access.log": str(prefix / "logs" / "access.log"),
    }
    for production, here in replacements.items():
        assert text.count(production) == 1, f"{production!r} not once in {SITE}"
        text = text.replace(production, here)
    blobs_dir = "/srv/stockade/data/blobs"
    assert text.count(blobs_dir) == 2, f"{blobs_dir} not twice in {SITE}"
    return text.replace(blobs_dir, str(blobs.resolve()))


@contextmanager
def nginx_front(*, upstream: str, blobs: Path, prefix: Path, port: int) -> Iterator[Front]:
    """nginx with the documented configuration in front of ``upstream`` (``host:port`` or
    ``unix:/path``), in the foreground, stopped afterwards."""
    binary, modules = nginx_binary(), modules_dir()
    assert binary is not None and modules is not None, "nginx and its set-misc module are needed"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(prefix / "authz-cache", ignore_errors=True)
    site = render_site(port=port, upstream=upstream, blobs=blobs, prefix=prefix)
    values = {
        "modules": modules,
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "prefix": str(prefix),
        "site": site,
    }
    text = MAIN.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    stderr = (prefix / "logs" / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_listening(proc, url, prefix)
        yield Front(
            url,
            prefix,
            prefix / "authz-cache",
            prefix / "logs" / "access.log",
            prefix / "logs" / "error.log",
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        stderr.close()


def _wait_listening(proc: subprocess.Popen[bytes], url: str, prefix: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx failed: {(prefix / 'logs' / 'stderr.log').read_text()}")
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
