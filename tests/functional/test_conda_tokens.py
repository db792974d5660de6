"""Every way a conda client carries a Stockade token, against a live server (issue 11, item 5).

py-rattler is the real client here; conda's own URL parsing is reproduced in
tests/unit/auth/test_token_format.py (``split_anaconda_token``) and applied to the URLs below.
Tokens are issued as ``stk-…`` now; tokens issued before as ``stk_…`` keep working in every form
that does not depend on conda's URL parser.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from rattler import Channel, ChannelConfig, Gateway, SourceConfig, install, solve
from rattler.networking import Client
from sqlalchemy import select

from stockade.auth.models import ApiToken, User
from stockade.auth.secrets import hash_secret
from stockade.core.clock import utcnow
from tests.support.server import LiveServer
from tests.unit.auth.test_token_format import split_anaconda_token

pytestmark = pytest.mark.functional
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def private_channel(live_server: LiveServer, testdata: Path) -> str:
    name = live_server.new_channel(privacy="private", prefix="tok")
    files = sorted((testdata / "channels" / "test-recipes" / "noarch").glob("depend*.conda"))
    assert live_server.upload(name, *files).status_code == 201
    live_server.wait_published(name)
    return name


@pytest.fixture(scope="module")
def member_token(live_server: LiveServer, private_channel: str) -> str:
    """A fresh token of a plain member, as `POST /tokens` issues it today."""
    name = f"reader-{secrets.token_hex(4)}"
    live_server.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    r = live_server.admin.put(
        f"/api/v1/channels/{private_channel}/members", json={"level": "read", "user": name}
    )
    assert r.status_code == 200, r.text
    issued = live_server.client().post(
        "/api/v1/tokens", json={"name": "ci", "expires_in_days": 2}, auth=(name, PASSWORD)
    )
    token = str(issued.json()["token"])
    assert token.startswith("stk-") and "_" not in token
    return token


@pytest.fixture(scope="module")
def legacy_token(live_server: LiveServer) -> str:
    """A token in the form issued before (``stk_`` + url-safe base64), stored by hash as then."""
    secret = "stk_" + secrets.token_urlsafe(32)
    while "_" not in secret[4:] and "-" not in secret[4:]:
        secret = "stk_" + secrets.token_urlsafe(32)
    with live_server.container.factory.begin() as session:
        admin = session.scalars(select(User).where(User.username == "admin")).one()
        session.add(
            ApiToken(
                user_id=admin.id,
                name="legacy",
                token_hash=hash_secret(secret),
                display_prefix=secret[:8],
                expires_at=utcnow() + timedelta(days=1),
            )
        )
    return secret


def solve_and_install(url: str, tmp: Path, client: Client | None = None) -> set[str]:
    base, _, name = url.rstrip("/").rpartition("/conda/")
    channel = Channel(name, ChannelConfig(channel_alias=base + "/conda/"))
    gateway = Gateway(
        cache_dir=tmp / "cache", default_config=SourceConfig(sharded_enabled=False), client=client
    )
    records = asyncio.run(
        solve([channel], ["dependent 2.*"], gateway=gateway, platforms=["linux-64", "noarch"])
    )
    asyncio.run(
        install(
            records,
            target_prefix=tmp / "env",
            cache_dir=tmp / "pkgs",
            show_progress=False,
            client=client,
        )
    )
    return {r.name.normalized for r in records}


def url_forms(server: str, token: str, channel: str) -> dict[str, str]:
    return {
        "/t/TOKEN/conda/CHANNEL": f"{server}/t/{token}/conda/{channel}",
        "/conda/t/TOKEN/CHANNEL": f"{server}/conda/t/{token}/{channel}",
    }


def basic(user: str, password: str) -> dict[str, str]:
    value = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def test_every_url_form_round_trips_through_conda_and_rattler(
    live_server: LiveServer, private_channel: str, member_token: str, tmp_path: Path
) -> None:
    for i, (form, url) in enumerate(
        url_forms(live_server.url, member_token, private_channel).items()
    ):
        _, parsed = split_anaconda_token(url + "/noarch/repodata.json")
        assert parsed == member_token, form  # conda reads the whole token back
        assert solve_and_install(url, tmp_path / str(i)) == {"dependent", "dependency"}, form


@pytest.mark.parametrize("how", ["bearer", "basic-password", "basic-username"])
def test_every_header_form_works_with_rattler(
    live_server: LiveServer,
    private_channel: str,
    member_token: str,
    tmp_path: Path,
    how: str,
) -> None:
    headers = {
        "bearer": {"Authorization": f"Bearer {member_token}"},
        "basic-password": basic("anyone", member_token),  # conda/mamba: token as the password
        "basic-username": basic(member_token, ""),  # https://TOKEN@host/…
    }[how]
    url = f"{live_server.url}/conda/{private_channel}"
    assert solve_and_install(url, tmp_path, Client(headers=headers)) == {"dependent", "dependency"}


def test_tokens_issued_before_keep_working(
    live_server: LiveServer, private_channel: str, legacy_token: str, tmp_path: Path
) -> None:
    """Existing ``stk_`` tokens are found by hash as before: headers and rattler's URL forms."""
    client = live_server.client()
    for headers in (
        {"Authorization": f"Bearer {legacy_token}"},
        basic("anyone", legacy_token),
        basic(legacy_token, ""),
    ):
        r = client.get(f"/conda/{private_channel}/noarch/repodata.json", headers=headers)
        assert r.status_code == 200, r.text
        assert client.get("/api/v1/whoami", headers=headers).json()["username"] == "admin"
    for i, url in enumerate(url_forms(live_server.url, legacy_token, private_channel).values()):
        assert solve_and_install(url, tmp_path / str(i)) == {"dependent", "dependency"}
