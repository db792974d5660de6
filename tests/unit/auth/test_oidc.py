"""OIDC: claim mapping, the code flow's checks, and the bearer verifier's edge cases.

The provider is simulated with ``httpx.MockTransport`` (discovery, JWKS, token, userinfo); the
functional tests run the same code against a real provider (``tests/functional/test_oidc.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from stockade.auth.errors import InvalidCredentialsError
from stockade.auth.oidc import (
    AuthRequest,
    OidcBearerVerifier,
    OidcClient,
    OidcError,
    claim_value,
    identity_from_claims,
)
from stockade.core.errors import UnavailableError
from stockade.settings import OidcSettings

ISSUER = "https://idp.test/realms/main"
REDIRECT = "https://stockade.test/auth/oidc/callback"


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


KEY = rsa_key("k1")


@dataclass
class FakeProvider:
    """Discovery, JWKS, token and userinfo endpoints of a simulated provider."""

    keys: list[Any] = field(default_factory=lambda: [KEY])
    id_claims: dict[str, Any] = field(default_factory=dict)
    userinfo: dict[str, Any] = field(default_factory=dict)
    id_token: str | None = None  # sent as is instead of signing id_claims
    token_status: int = 200
    token_error: str = "invalid_grant"
    end_session: bool = True
    down: bool = False
    requests: list[httpx.Request] = field(default_factory=list)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.url.path.endswith(path))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json=self.discovery())
        if path.endswith("/certs"):
            return httpx.Response(200, json=KeySet(self.keys).as_dict())
        if path.endswith("/token"):
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"error": self.token_error})
            return httpx.Response(200, json=self.tokens(request))
        if path.endswith("/userinfo"):
            return httpx.Response(200, json=self.userinfo)
        return httpx.Response(404)

    def discovery(self) -> dict[str, Any]:
        base = f"{ISSUER}/protocol/openid-connect"
        document = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{base}/auth",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/certs",
            "userinfo_endpoint": f"{base}/userinfo",
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }
        if self.end_session:
            document["end_session_endpoint"] = f"{base}/logout"
        return document

    def tokens(self, request: httpx.Request) -> dict[str, Any]:
        form = parse_qs(request.content.decode())
        assert form["grant_type"] == ["authorization_code"]
        return {
            "access_token": "opaque-access-token",
            "token_type": "Bearer",
            "id_token": self.id_token or sign(self.id_claims),
        }


def sign(claims: dict[str, Any], key: Any = KEY, alg: str = "RS256") -> str:
    header = {"alg": alg, **({"kid": key.kid} if key.kid else {})}
    return str(jwt.encode(header, claims, key, algorithms=[alg]))


def settings(**extra: Any) -> OidcSettings:
    base: dict[str, Any] = {
        "issuer": ISSUER,
        "client_id": "stockade",
        "client_secret": "s3cret",
        "scopes": ["profile", "email", "groups"],
    }
    return OidcSettings(**{**base, **extra})


def id_claims(nonce: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "f3a1",
        "aud": "stockade",
        "exp": now + 300,
        "iat": now,
        "nonce": nonce,
        "preferred_username": "alice",
        "email": "alice@example.test",
        "name": "Alice",
        "groups": ["/devs", "readers"],
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def access_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "ci-runner",
        "aud": "stockade-api",
        "exp": now + 300,
        "iat": now,
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


# --- claim mapping ---------------------------------------------------------------------------


def test_claims_map_to_an_identity_with_keycloak_group_paths() -> None:
    claims = {
        "sub": "f3a1",
        "preferred_username": "alice",
        "email": "alice@example.test",
        "name": "Alice",
        "groups": ["/devs", "/devs/core", "readers", "readers", 7, ""],
    }
    identity = identity_from_claims(settings(), ISSUER, claims)
    assert identity.source == "oidc"
    assert identity.external_id == f"{ISSUER}|f3a1"
    assert (identity.username, identity.email, identity.display_name) == (
        "alice",
        "alice@example.test",
        "Alice",
    )
    assert [g.name for g in identity.groups] == ["devs", "devs/core", "readers"]
    assert all(g.external_id == g.name for g in identity.groups)


def test_username_falls_back_to_sub_and_claims_are_configurable() -> None:
    identity = identity_from_claims(settings(), ISSUER, {"sub": "ci-runner"})
    assert identity.username == "ci-runner"
    assert identity.groups == ()
    custom = settings(username_claim="upn", email_claim="mail", groups_claim="realm_access.roles")
    claims = {
        "sub": "x",
        "upn": "bob@corp",
        "mail": "bob@corp.test",
        "realm_access": {"roles": ["ops"]},
    }
    identity = identity_from_claims(custom, ISSUER, claims)
    assert (identity.username, identity.email) == ("bob@corp", "bob@corp.test")
    assert [g.name for g in identity.groups] == ["ops"]
    assert identity_from_claims(settings(groups_claim=None), ISSUER, claims).groups == ()
    assert claim_value({"a": {"b": 1}}, "a.c") is None


def test_a_single_group_string_counts_and_no_sub_is_refused() -> None:
    identity = identity_from_claims(settings(), ISSUER, {"sub": "s", "groups": "/admins"})
    assert [g.name for g in identity.groups] == ["admins"]
    with pytest.raises(OidcError):
        identity_from_claims(settings(), ISSUER, {"preferred_username": "nobody"})


# --- the code flow ---------------------------------------------------------------------------


def client_for(provider: FakeProvider, **extra: Any) -> OidcClient:
    return OidcClient(settings(**extra), REDIRECT, transport=provider.transport())


def test_begin_builds_a_pkce_authorization_request() -> None:
    client = client_for(FakeProvider())
    first, second = client.begin(), client.begin()
    parts = urlsplit(first.url)
    assert (
        f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ISSUER}/protocol/openid-connect/auth"
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "stockade"
    assert query["redirect_uri"] == REDIRECT
    assert query["scope"].split() == ["openid", "profile", "email", "groups"]
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == create_s256_code_challenge(first.code_verifier)
    assert (query["state"], query["nonce"]) == (first.state, first.nonce)
    assert 43 <= len(first.code_verifier) <= 128
    assert len({first.state, first.nonce, second.state, second.nonce}) == 4


def test_finish_exchanges_the_code_and_validates_the_id_token() -> None:
    provider = FakeProvider()
    client = client_for(provider)
    kept = client.begin()
    provider.id_claims = id_claims(kept.nonce)
    identity = client.finish("the-code", kept.state, kept, issuer=ISSUER)
    assert identity.username == "alice"
    assert [g.name for g in identity.groups] == ["devs", "readers"]
    (token_request,) = [r for r in provider.requests if r.url.path.endswith("/token")]
    form = {k: v[0] for k, v in parse_qs(token_request.content.decode()).items()}
    assert form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "code_verifier": kept.code_verifier,
    }
    assert token_request.headers["authorization"].startswith("Basic ")
    assert provider.count("/userinfo") == 0


def test_missing_claims_come_from_userinfo() -> None:
    provider = FakeProvider()
    client = client_for(provider)
    kept = client.begin()
    provider.id_claims = id_claims(kept.nonce, preferred_username=None, email=None, groups=None)
    provider.userinfo = {"sub": "f3a1", "preferred_username": "alice2", "groups": ["/ops"]}
    identity = client.finish("c", kept.state, kept)
    assert (identity.username, identity.email) == ("alice2", None)
    assert [g.name for g in identity.groups] == ["ops"]
    provider.userinfo = {"sub": "someone-else", "groups": []}
    kept = client.begin()
    provider.id_claims = id_claims(kept.nonce, groups=None)
    with pytest.raises(OidcError) as caught:
        client.finish("c", kept.state, kept)
    assert caught.value.code == "oidc:userinfo"


def test_state_mismatch_stops_before_the_token_request() -> None:
    provider = FakeProvider()
    client = client_for(provider)
    kept = client.begin()
    with pytest.raises(OidcError) as caught:
        client.finish("c", kept.state + "x", kept)
    assert caught.value.code == "oidc:state-mismatch"
    assert provider.count("/token") == 0
    with pytest.raises(OidcError) as caught:
        client.finish("c", kept.state, kept, issuer="https://evil.test")
    assert caught.value.code == "oidc:issuer-mismatch"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"nonce": "replayed"}, "nonce"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": ["stockade", "other"], "azp": "other"}, "azp"),
        ({"iss": "https://evil.test"}, "another provider"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iat": int(time.time()) + 3600}, "future"),
        ({"sub": None}, "sub"),
    ],
)
def test_bad_id_tokens_are_refused(change: dict[str, Any], reason: str) -> None:
    provider = FakeProvider()
    client = client_for(provider)
    kept = client.begin()
    provider.id_claims = {**id_claims(kept.nonce), **change}
    provider.id_claims = {k: v for k, v in provider.id_claims.items() if v is not None}
    with pytest.raises(OidcError) as caught:
        client.finish("c", kept.state, kept)
    assert caught.value.code == "oidc:invalid-id-token"
    assert reason in caught.value.detail


def test_an_id_token_signed_with_the_client_secret_is_refused() -> None:
    provider = FakeProvider()
    client = client_for(provider)
    kept = client.begin()
    hmac_key = OctKey.import_key("s3cret" * 6)
    token = sign(id_claims(kept.nonce), hmac_key, "HS256")
    provider.id_token = token
    with pytest.raises(OidcError, match="algorithm is not accepted"):
        client.finish("c", kept.state, kept)


def test_a_refused_code_says_why() -> None:
    provider = FakeProvider(token_status=400)
    client = client_for(provider)
    kept = client.begin()
    with pytest.raises(OidcError) as caught:
        client.finish("c", kept.state, kept)
    assert caught.value.code == "oidc:token-exchange"
    assert "invalid_grant" in caught.value.detail


def test_end_session_url() -> None:
    client = client_for(FakeProvider())
    url = client.end_session_url(None, "https://stockade.test/")
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query == {
        "client_id": ["stockade"],
        "post_logout_redirect_uri": ["https://stockade.test/"],
    }
    assert client_for(FakeProvider(end_session=False)).end_session_url() is None
    assert client_for(FakeProvider(down=True)).end_session_url() is None


def test_auth_request_is_a_kept_request() -> None:
    kept = AuthRequest(url="u", state="s", nonce="n", code_verifier="v")
    with pytest.raises(OidcError):
        client_for(FakeProvider()).finish("c", "other", kept)


# --- bearer tokens on the API ----------------------------------------------------------------


def verifier_for(provider: FakeProvider, **extra: Any) -> OidcBearerVerifier:
    extra.setdefault("api_audience", ["stockade-api"])
    return OidcBearerVerifier(settings(**extra), transport=provider.transport())


def refused(verifier: OidcBearerVerifier, token: str) -> str:
    with pytest.raises(InvalidCredentialsError) as caught:
        verifier.verify(token)
    assert token not in caught.value.detail
    assert token not in str(caught.value.extra)
    return caught.value.detail


def test_a_valid_access_token_gives_its_identity() -> None:
    verifier = verifier_for(FakeProvider(), group_roles={"ops": ["admin"]})
    identity = verifier.verify(sign(access_claims(groups=["/ops"])))
    assert (identity.username, identity.external_id) == ("ci-runner", f"{ISSUER}|ci-runner")
    assert [g.name for g in identity.groups] == ["ops"]
    assert verifier.group_roles == {"ops": ["admin"]}


def test_audience_defaults_to_the_client_id() -> None:
    verifier = verifier_for(FakeProvider(), api_audience=[])
    assert verifier.verify(sign(access_claims(aud=["account", "stockade"]))).username == "ci-runner"
    assert "audience" in refused(verifier, sign(access_claims()))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (lambda now: {"aud": "other-api"}, "audience"),
        (lambda now: {"aud": None}, "aud"),
        (lambda now: {"iss": "https://evil.test"}, "another provider"),
        (lambda now: {"exp": now - 120}, "expired"),
        (lambda now: {"exp": None}, "exp"),
        (lambda now: {"nbf": now + 600}, "not valid yet"),
        (lambda now: {"typ": "ID", "aud": "stockade-api"}, "ID token"),
    ],
)
def test_bad_access_tokens_are_refused(
    changes: Callable[[int], dict[str, Any]], reason: str
) -> None:
    # Claims are made when the test runs, not at collection: a long suite must not expire them.
    claims = access_claims(**changes(int(time.time())))
    assert reason in refused(verifier_for(FakeProvider()), sign(claims))


def test_small_clock_skew_is_tolerated() -> None:
    verifier = verifier_for(FakeProvider())
    assert verifier.verify(sign(access_claims(exp=int(time.time()) - 5))).username == "ci-runner"


def test_signatures_none_hmac_and_tampering_are_refused() -> None:
    verifier = verifier_for(FakeProvider())
    good = sign(access_claims())
    header, payload, signature = good.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert "signature does not verify" in refused(verifier, f"{header}.{payload}.{flipped}")
    other = sign(access_claims(sub="admin"))
    assert "signature" in refused(verifier, f"{header}.{other.split('.')[1]}.{signature}")
    none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"  # {"alg":"none","typ":"JWT"}
    assert "algorithm" in refused(verifier, f"{none_header}.{payload}.")
    hmac_key = OctKey.import_key("s3cret" * 6)
    assert "algorithm" in refused(verifier, sign(access_claims(), hmac_key, "HS256"))
    assert "not a signed JWT" in refused(verifier, "eyJhbGciOi.only-two")
    assert "well-formed" in refused(verifier, "eyJub3QganNvbg.e30.c2ln")


def test_rotated_keys_are_fetched_once_on_an_unknown_kid() -> None:
    provider = FakeProvider()
    verifier = verifier_for(provider)
    verifier.verify(sign(access_claims()))
    assert provider.count("/certs") == 1
    new_key = ECKey.generate_key("P-256", parameters={"kid": "k2", "use": "sig"})
    provider.keys = [KEY, new_key]
    verifier.provider._keys_at -= 60  # the last fetch was a minute ago
    assert verifier.verify(sign(access_claims(), new_key, "ES256")).username == "ci-runner"
    assert provider.count("/certs") == 2
    stranger = rsa_key("k3")
    for _ in range(3):  # unknown kids do not hammer the provider
        assert "does not publish" in refused(verifier, sign(access_claims(), stranger))
    assert provider.count("/certs") == 2
    assert provider.count("/openid-configuration") == 1


def test_an_unreachable_provider_is_unavailable_not_unauthenticated() -> None:
    verifier = verifier_for(FakeProvider(down=True))
    with pytest.raises(UnavailableError) as caught:
        verifier.verify(sign(access_claims()))
    assert caught.value.code == "oidc:unreachable"


def test_a_discovery_document_for_another_issuer_is_refused() -> None:
    provider = FakeProvider()
    verifier = OidcBearerVerifier(
        settings(issuer="https://idp.test/realms/other"), transport=provider.transport()
    )
    with pytest.raises(UnavailableError, match=r"check oidc\.issuer"):
        verifier.verify(sign(access_claims()))


def test_disabled_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="not configured"):
        OidcBearerVerifier(OidcSettings())
    with pytest.raises(ValueError, match="not configured"):
        OidcClient(OidcSettings(issuer=ISSUER), REDIRECT)
