"""A user's mistake never produces a 500: odd characters, unknown routes, wrong methods."""

from __future__ import annotations

import pytest

from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/channels/a%00b", None),
        ("GET", "/conda/a%00b/noarch/repodata.json", None),
        ("GET", "/api/v1/channels?prefix=%00", None),
        ("POST", "/api/v1/channels", {"name": "x\u0000y"}),
        ("POST", "/api/v1/channels", {"name": "okname-nul", "description": "a\u0000b"}),
        ("GET", "/api/v1/nope", None),
        ("DELETE", "/api/v1/whoami", None),
        ("POST", "/api/v1/tokens", {"name": ""}),
        ("POST", "/api/v1/tokens", "not json"),
        ("GET", "/api/v1/channels/x/files?limit=-1", None),
        ("GET", "/conda/x", None),
    ],
)
def test_no_5xx(live_server: LiveServer, method: str, path: str, body: object) -> None:
    kwargs = {"json": body} if isinstance(body, dict) else {"content": body} if body else {}
    response = live_server.admin.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
