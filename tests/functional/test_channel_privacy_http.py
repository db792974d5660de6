"""Issue 11 items 4 and 9 over HTTP: subchannel privacy on every surface, patch values, /readyz."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from stockade.channels.models import Channel, SubdirIndex
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from tests.support.eventually import SERVING_BOUND_S, answers, eventually
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional
PASSWORD = "correct-horse-battery"
FILE = "dependency-1.0-0.conda"
RECIPES = "channels/test-recipes/noarch"


def _user_token(live: LiveServer) -> tuple[str, str]:
    name = f"u-{uuid.uuid4().hex[:8]}"
    made = live.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert made.status_code == 201, made.text
    token = live.client().post(
        "/api/v1/tokens", json={"name": "t", "expires_in_days": 5}, auth=(name, PASSWORD)
    )
    assert token.status_code == 201, token.text
    return name, str(token.json()["token"])


@pytest.fixture(scope="module")
def team(live_server: LiveServer, testdata: Path) -> str:
    """The user guide's sequence: a private channel, a subchannel, a package moved into it."""
    admin = live_server.admin
    team = live_server.new_channel(privacy="private", prefix="team")
    child = admin.post("/api/v1/channels", json={"name": f"{team}/nightly"})
    assert child.status_code == 201 and child.json()["privacy"] == "private", child.text
    assert live_server.upload(team, testdata / RECIPES / FILE).status_code == 201
    moved = admin.post(
        "/api/v1/copy",
        json={"source": team, "target": f"{team}/nightly", "name": "dependency", "move": True},
    )
    assert moved.status_code == 200, moved.text
    live_server.wait_published(f"{team}/nightly")
    return f"{team}/nightly"


def _conda_paths(channel: str) -> list[str]:
    return [
        f"/conda/{channel}/noarch/repodata.json",
        f"/conda/{channel}/noarch/repodata.json.zst",
        f"/conda/{channel}/noarch/repodata.json.bz2",
        f"/conda/{channel}/noarch/repodata_shards.msgpack.zst",
        f"/conda/{channel}/noarch/run_exports.json",
        f"/conda/{channel}/noarch/{FILE}",
        f"/conda/{channel}/channeldata.json",
        f"/conda/{channel}/notices.json",
        f"/t/stk-not-a-token/conda/{channel}/noarch/repodata.json",
        f"/conda/t/stk-not-a-token/{channel}/noarch/repodata.json",
    ]


def _assert_closed_to_anonymous(live: LiveServer, channel: str) -> None:
    anon = live.client()
    for path in _conda_paths(channel):
        for method in ("GET", "HEAD"):
            assert anon.request(method, path).status_code == 401, (method, path)
    for path in (
        f"/api/v1/channels/{channel}",
        f"/api/v1/channels/{channel}/subdirs",
        f"/api/v1/channels/{channel}/files",
        f"/api/v1/channels/{channel}/patches",
        f"/api/v1/channels/{channel}/notices",
        f"/api/v1/channels/{channel}/vulnerabilities",
    ):
        assert anon.get(path).status_code == 401, path
    assert channel not in {c["name"] for c in anon.get("/api/v1/channels").json()}
    page = anon.get(f"/channels/{channel}")
    assert page.status_code in (303, 401, 404) and FILE not in page.text
    assert channel not in anon.get("/").text


def test_subchannel_of_a_private_channel_is_private_everywhere(
    live_server: LiveServer, team: str
) -> None:
    _assert_closed_to_anonymous(live_server, team)
    admin = live_server.admin
    assert admin.get(f"/conda/{team}/noarch/{FILE}").status_code == 200


def test_signed_in_outsider_gets_404_and_parent_members_read(
    live_server: LiveServer, team: str
) -> None:
    outsider_name, outsider = _user_token(live_server)
    member_name, member = _user_token(live_server)
    parent = team.rsplit("/", 1)[0]
    granted = live_server.admin.put(
        f"/api/v1/channels/{parent}/members", json={"level": "read", "user": member_name}
    )
    assert granted.status_code == 200, granted.text
    path = f"/conda/{team}/noarch/repodata.json"
    assert live_server.client(outsider).get(path).status_code == 404
    assert live_server.client(outsider).get(f"/api/v1/channels/{team}").status_code == 404
    assert FILE in live_server.client(member).get(path).json()["packages.conda"]
    assert live_server.client().get(f"/t/{member}/conda/{team}/noarch/{FILE}").status_code == 200
    assert live_server.client().get(f"/t/{outsider}/conda/{team}/noarch/{FILE}").status_code == 404
    assert outsider_name != member_name


def test_a_looser_subchannel_is_refused(live_server: LiveServer, team: str) -> None:
    admin = live_server.admin
    for response in (
        admin.patch(f"/api/v1/channels/{team}", json={"privacy": "public"}),
        admin.post("/api/v1/channels", json={"name": f"{team}/x", "privacy": "authenticated"}),
    ):
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "channel:privacy-looser-than-parent"
        assert "parent" in problem["detail"]


def test_a_subchannel_stored_public_is_still_closed(live_server: LiveServer, team: str) -> None:
    """Rows from before the rule (or edited by hand): read time takes the strictest privacy."""
    container = live_server.container
    with transaction(container.factory) as session:
        session.execute(update(Channel).where(Channel.name == team).values(privacy="public"))
    container.locator.invalidate_channels()  # this process; a replica within the bound
    try:
        eventually(lambda: _assert_closed_to_anonymous(live_server, team), within=SERVING_BOUND_S)
    finally:
        with transaction(container.factory) as session:
            session.execute(update(Channel).where(Channel.name == team).values(privacy="private"))


def test_tightening_the_parent_closes_public_subchannels(live_server: LiveServer) -> None:
    admin = live_server.admin
    parent = live_server.new_channel(prefix="open")
    assert admin.post("/api/v1/channels", json={"name": f"{parent}/kid"}).status_code == 201
    assert live_server.client().get(f"/conda/{parent}/kid/noarch/repodata.json").status_code == 200
    assert admin.patch(f"/api/v1/channels/{parent}", json={"privacy": "private"}).status_code == 200
    assert admin.get(f"/api/v1/channels/{parent}/kid").json()["privacy"] == "private"
    live_server.container.locator.invalidate_channels()  # this process; a replica within the bound
    kid = f"/conda/{parent}/kid/noarch/repodata.json"
    answers(lambda: live_server.client().get(kid), 401, within=SERVING_BOUND_S)


def test_patch_values_are_checked_and_never_wedge_publication(
    live_server: LiveServer, testdata: Path
) -> None:
    channel = live_server.new_channel(prefix="patch")
    assert live_server.upload(channel, testdata / RECIPES / FILE).status_code == 201
    admin = live_server.admin
    path = f"/api/v1/channels/{channel}/patches/noarch/{FILE}"
    for changes, field in (
        ({"timestamp": 10**40}, "timestamp"),
        ({"timestamp": 1.5}, "timestamp"),
        ({"depends": [1]}, "depends"),
        ({"anything": 10**30}, "anything"),
    ):
        response = admin.put(path, json={"changes": changes})
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field and field in response.json()["detail"]
    ok = admin.put(path, json={"changes": {"timestamp": 1_700_000_000_000}})
    assert ok.status_code == 200, ok.text
    live_server.wait_published(channel)
    record = admin.get(f"/conda/{channel}/noarch/repodata.json").json()["packages.conda"][FILE]
    assert record["timestamp"] == 1_700_000_000_000


def test_a_failing_publication_shows_on_the_channel_and_readyz(
    live_server: LiveServer, team: str
) -> None:
    container = live_server.container
    assert live_server.client().get("/readyz").json()["database"] == "ok"
    with transaction(container.factory) as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.name == team))
        session.execute(
            update(SubdirIndex)
            .where(SubdirIndex.channel_id == channel_id, SubdirIndex.subdir == "noarch")
            .values(
                failure="OverflowError: int too big to convert",
                failures=3,
                failed_at=utcnow(),
                failed_rev=1,
            )
        )
    try:
        admin = live_server.admin
        subdirs = admin.get(f"/api/v1/channels/{team}/subdirs").json()
        assert subdirs[0]["failure"] == "OverflowError: int too big to convert"
        assert subdirs[0]["failures"] == 3
        assert admin.get(f"/api/v1/channels/{team}").json()["failing_subdirs"] == ["noarch"]
        page = admin.get(f"/channels/{team}")
        assert "Publication of noarch is failing" in page.text and "OverflowError" in page.text
        ready = admin.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert {"channel": team, "subdir": "noarch"}.items() <= ready.json()["publications"][
            0
        ].items()
        anonymous = live_server.client().get("/readyz").json()
        assert team not in str(anonymous)  # a private channel's name is not shown to outsiders
        # nor counted: the count and status cover only what the caller can read
        assert anonymous["failing_publications"] == len(anonymous["publications"])
        assert anonymous["failing_publications"] < ready.json()["failing_publications"]
        assert anonymous["status"] == ("degraded" if anonymous["publications"] else "ok")
    finally:
        with transaction(container.factory) as session:
            session.execute(update(SubdirIndex).values(failure=None, failures=0, failed_rev=None))


def test_readyz_is_cheap_and_uncached(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/readyz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["database"] == "ok"
