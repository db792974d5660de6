"""The OpenID provider of the functional tests: npm ``oidc-provider`` on a loopback port.

``scripts/test-env`` installs it (``npm ci`` in ``tests/support/oidc_provider``) and exports
``STOCKADE_TEST_OIDC_PROVIDER``; without node or its ``node_modules`` the tests that need it
skip, saying how to install it. ::

    with run_oidc_provider(port, redirect_uris=[...]) as provider:
        oidc_settings(issuer)                     # the `oidc` settings for Stockade
        provider.client_credentials_token()       # a JWT access token for `stockade-api` (CI)
        provider.user_access_token("alice")       # the same for a user (code flow + PKCE)
        provider.forge({...})                     # any claims, signed with the provider's key

The provider signs with a key made here (``OIDC_JWKS_FILE``), so tests can also forge tokens the
provider would never issue (expired, ...) that still carry a valid signature.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import queue
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "tests" / "support" / "oidc_provider"
CLIENT_ID = "stockade"
CI_CLIENT_ID = "ci-runner"
CLIENT_SECRET = "stockade-test-secret-" + "x" * 16
API_RESOURCE = "urn:stockade:api"
API_AUDIENCE = "stockade-api"
OTHER_RESOURCE = "urn:other:api"
KID = "stockade-test-rs256"
START_TIMEOUT_S = 20.0
FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
INSTALL_HINT = (
    "run scripts/test-env (or: cd tests/support/oidc_provider && npm ci) and export "
    "STOCKADE_TEST_OIDC_PROVIDER"
)


def provider_dir_or_skip() -> Path:
    """The provider's folder, or skip the test with what to install."""
    folder = Path(os.environ.get("STOCKADE_TEST_OIDC_PROVIDER") or DEFAULT_DIR)
    if shutil.which("node") is None:
        pytest.skip(f"node is not installed: the OpenID provider cannot run ({INSTALL_HINT})")
    if not (folder / "node_modules" / "oidc-provider").is_dir():
        pytest.skip(f"oidc-provider is not installed in {folder} ({INSTALL_HINT})")
    return folder


def oidc_settings(issuer: str, **extra: Any) -> dict[str, Any]:
    """The ``oidc`` settings of a Stockade that signs in at ``issuer`` (known before it starts)."""
    return {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ["openid", "profile", "email", "groups"],
        "display_name": "Test SSO",
        "api_audience": [API_AUDIENCE],
        **extra,
    }


@dataclass
class OidcProvider:
    issuer: str
    redirect_uris: list[str]
    keys: KeySet
    process: subprocess.Popen[bytes]
    log_path: Path
    _clients: list[httpx.Client] = field(default_factory=list)

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The ``oidc`` settings of a Stockade that signs in here."""
        return oidc_settings(self.issuer, **extra)

    def http(self) -> httpx.Client:
        client = httpx.Client(base_url=self.issuer, timeout=30)
        self._clients.append(client)
        return client

    def client_credentials_token(
        self, client_id: str = CI_CLIENT_ID, resource: str = API_RESOURCE
    ) -> str:
        """A JWT access token for ``resource`` by the client credentials grant (CI)."""
        response = self.http().post(
            "/token",
            data={"grant_type": "client_credentials", "resource": resource, "scope": "conda:read"},
            auth=(client_id, CLIENT_SECRET),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def user_access_token(self, login: str, resource: str = API_RESOURCE) -> str:
        """A user's JWT access token: the code flow with PKCE, through the provider's own pages."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": self.redirect_uris[0],
            "scope": "openid conda:read",
            "state": secrets.token_urlsafe(16),
            "code_challenge": challenge.decode().rstrip("="),
            "code_challenge_method": "S256",
            "resource": resource,
        }
        back = self.sign_in(self.http(), f"/auth?{urlencode(params)}", login)
        code = parse_qs(urlsplit(back).query)["code"][0]
        response = self.http().post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uris[0],
                "code_verifier": verifier,
                "resource": resource,
            },
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def sign_in(self, client: httpx.Client, url: str, login: str) -> str:
        """Follow the provider's pages from an authorization URL: sign in as ``login`` (any
        password), consent; the redirect back to the client (``...?code=...&state=...``)."""
        for _ in range(12):
            response = client.get(url)
            if response.status_code in (302, 303):
                url = urljoin(str(response.url), response.headers["location"])
                if url.startswith(self.redirect_uris[0]):
                    return url
                continue
            assert response.status_code == 200, response.text
            action = FORM_ACTION.search(response.text)
            assert action, f"no form on the provider's page: {response.text[:500]}"
            if 'name="login"' in response.text:
                form = {"prompt": "login", "login": login, "password": "any"}
            else:
                form = {"prompt": "consent"}
            target = urljoin(str(response.url), html.unescape(action.group(1)))
            posted = client.post(target, data=form)
            assert posted.status_code in (302, 303), posted.text
            url = urljoin(str(posted.url), posted.headers["location"])
            if url.startswith(self.redirect_uris[0]):
                return url
        raise AssertionError("the provider did not redirect back to the client")

    def forge(self, claims: dict[str, Any], *, kid: str = KID, alg: str = "RS256") -> str:
        """A JWT with any claims, signed with the provider's own key (for edge cases)."""
        base = {"iss": self.issuer, "iat": int(time.time()), "jti": secrets.token_hex(8)}
        header = {"alg": alg, "kid": kid, "typ": "at+jwt"}
        return jwt.encode(header, {**base, **claims}, self.keys.keys[0], algorithms=[alg])

    def close(self) -> None:
        for client in self._clients:
            client.close()


def _signing_keys(folder: Path) -> tuple[KeySet, Path]:
    key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"})
    keys = KeySet([key])
    path = folder / "jwks.json"
    path.write_bytes(orjson.dumps(keys.as_dict(private=True)))
    path.chmod(0o600)
    return keys, path


@contextmanager
def run_oidc_provider(
    port: int, *, redirect_uris: Sequence[str], post_logout_redirect_uris: Sequence[str] = ()
) -> Iterator[OidcProvider]:
    """Start ``node server.mjs PORT``, wait for its ready line, stop it afterwards."""
    folder = provider_dir_or_skip()
    workdir = Path(tempfile.mkdtemp(prefix="stockade-oidc-"))
    keys, jwks_path = _signing_keys(workdir)
    log_path = workdir / "provider.log"
    env = {
        **os.environ,
        "OIDC_REDIRECT_URIS": " ".join(redirect_uris),
        "OIDC_POST_LOGOUT_REDIRECT_URIS": " ".join(post_logout_redirect_uris),
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_JWKS_FILE": str(jwks_path),
        "NODE_ENV": "test",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["node", "server.mjs", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    provider = OidcProvider(
        f"http://127.0.0.1:{port}", list(redirect_uris), keys, process, log_path
    )
    try:
        _wait_ready(process, log_path)
        yield provider
    finally:
        provider.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait for the ``listening on`` line; keep draining stdout afterwards so it never blocks."""
    assert process.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    stdout = process.stdout

    def drain() -> None:
        for line in iter(stdout.readline, b""):
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if lines.get(timeout=0.1).startswith(b"listening on "):
                return
        except queue.Empty:
            if process.poll() is not None:
                break
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the OpenID provider did not start (exit {process.poll()}):\n{tail}")
