"""OpenID discovery and keys pass the outbound guard (issue 11, item 6): the configured issuer's
host is allowed (an admin named it); a key location on another, internal host is not fetched."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stockade.auth.oidc_discovery import ProviderMetadata
from stockade.core.errors import UnavailableError
from stockade.settings import OidcSettings


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        server.hits.append(self.path)
        body = json.dumps(server.documents.get(self.path, {})).encode()
        self.send_response(200 if self.path in server.documents else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


class _Server(ThreadingHTTPServer):
    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.hits: list[str] = []
        self.documents: dict[str, object] = {}

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


@pytest.fixture
def provider_and_internal() -> Iterator[tuple[_Server, _Server]]:
    provider, internal = _Server("127.0.0.1"), _Server("127.0.0.2")
    internal.documents["/jwks"] = {"keys": []}
    for server in (provider, internal):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield provider, internal
    for server in (provider, internal):
        server.shutdown()
        server.server_close()


def test_keys_on_an_internal_host_are_not_fetched(
    provider_and_internal: tuple[_Server, _Server],
) -> None:
    provider, internal = provider_and_internal
    provider.documents["/.well-known/openid-configuration"] = {
        "issuer": provider.url,
        "authorization_endpoint": f"{provider.url}/auth",
        "token_endpoint": f"{provider.url}/token",
        "jwks_uri": f"{internal.url}/jwks",
    }
    metadata = ProviderMetadata(OidcSettings(issuer=provider.url, client_id="stockade"))
    try:
        assert metadata.issuer == provider.url  # the configured issuer's host: allowed
        with pytest.raises(UnavailableError) as caught:
            metadata.keys()
        assert caught.value.code == "oidc:unreachable"
    finally:
        metadata.close()
    assert provider.hits == ["/.well-known/openid-configuration"]
    assert internal.hits == []
