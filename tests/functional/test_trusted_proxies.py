"""``server.trusted_proxies``: X-Forwarded-For is believed only from the reverse proxies it names,
with one worker and with ``--workers N`` (a real ``stockade serve``). A client connecting directly
cannot dodge the sign-in throttle (a new forwarded address per guess) nor aim it at someone
else's address; behind a trusted proxy, the forwarded address is the one counted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from stockade.auth.ratelimit import address_key
from tests.support import process
from tests.support.process import ServerProcess, server_process
from tests.support.server import fresh_database

pytestmark = pytest.mark.functional
LIMIT = 3
SPOOFED = "198.51.100.7"


# --workers 2 only (CI time): what one worker does is the same code, and the sign-in throttle
# it feeds is tested in-process in tests/integration/auth/test_shared_state.py.
@pytest.fixture(params=[2], ids=["two-workers"])
def workers(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    if request.param > 1:  # `stockade serve --workers N`, as an administrator runs it
        wrapper = tmp_path / "stockade-workers"
        wrapper.write_text(f'#!/bin/sh\nexec "{process.STOCKADE}" "$@" --workers {request.param}\n')
        wrapper.chmod(0o755)
        monkeypatch.setattr(process, "STOCKADE", wrapper)
    return int(request.param)


def _served(tmp_path: Path, trusted: str | None) -> Iterator[tuple[ServerProcess, str]]:
    env = {"STOCKADE_AUTH__LOGIN_ATTEMPTS_PER_MINUTE": str(LIMIT)}
    if trusted is not None:
        env["STOCKADE_SERVER__TRUSTED_PROXIES"] = trusted
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with (
        fresh_database("sqlite", data_dir, None) as db_url,
        server_process(data_dir, db_url, **env) as server,
    ):
        yield server, db_url


def _guess(server: ServerProcess, forwarded: str) -> int:
    """A wrong password (a new one each time: a repeated failure is answered from a cache)."""
    response = httpx.get(
        f"{server.url}/api/v1/whoami",
        auth=("victim", f"wrong-{uuid.uuid4().hex}"),
        headers={"X-Forwarded-For": forwarded},
        timeout=30,
    )
    return response.status_code


def _counted(db_url: str, ip: str) -> bool:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sa.text("SELECT 1 FROM signin_throttle WHERE key = :key"), {"key": address_key(ip)}
            ).first()
    finally:
        engine.dispose()
    return found is not None


def test_a_direct_client_cannot_spoof_x_forwarded_for(tmp_path: Path, workers: int) -> None:
    for server, db_url in _served(tmp_path, '["192.0.2.1", "10.0.0.0/8"]'):  # not loopback
        statuses = [_guess(server, f"203.0.113.{i}") for i in range(LIMIT)]
        assert statuses == [401] * LIMIT
        assert _guess(server, "203.0.113.99") == 429, "a new forwarded address per guess"
        assert _counted(db_url, "127.0.0.1")
        assert not _counted(db_url, "203.0.113.0") and not _counted(db_url, SPOOFED)


def test_behind_a_trusted_proxy_the_forwarded_address_counts(tmp_path: Path, workers: int) -> None:
    for server, db_url in _served(tmp_path, None):  # the default trusts loopback, as uvicorn's
        assert [_guess(server, SPOOFED) for _ in range(LIMIT)] == [401] * LIMIT
        assert _guess(server, SPOOFED) == 429
        assert _guess(server, "198.51.100.8") == 401, "another client behind the proxy"
        assert _counted(db_url, SPOOFED) and not _counted(db_url, "127.0.0.1")


def test_a_bad_trusted_proxy_is_refused_at_start(tmp_path: Path) -> None:
    from stockade.core.errors import ConfigurationError
    from stockade.settings import load_settings

    with pytest.raises(ConfigurationError, match="not an IP address or network"):
        load_settings(data_dir=tmp_path, server={"trusted_proxies": ["proxy.example"]})


def test_uvicorn_gets_the_trusted_proxies(tmp_path: Path) -> None:
    from stockade.settings import load_settings
    from stockade.web.serving import uvicorn_options

    default = uvicorn_options(load_settings(data_dir=tmp_path))
    assert default["proxy_headers"] and default["forwarded_allow_ips"] == ["127.0.0.1", "::1"]
    none = uvicorn_options(load_settings(data_dir=tmp_path, server={"trusted_proxies": []}))
    assert not none["proxy_headers"] and none["forwarded_allow_ips"] == []
