"""Channels, tokens, bulk operations, patches and freezing through the REST API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.eventually import AUTH_BOUND_S, eventually
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = pytest.mark.functional
RECIPES = "channels/test-recipes/noarch"


def repodata(live_server: LiveServer, channel: str, subdir: str = "noarch") -> dict[str, dict]:
    live_server.wait_published(channel)
    return live_server.admin.get(f"/conda/{channel}/{subdir}/repodata.json").json()


def test_channel_lifecycle(live_server: LiveServer) -> None:
    admin = live_server.admin
    name = live_server.new_channel(prefix="life")
    assert admin.post("/api/v1/channels", json={"name": name}).status_code == 409
    child = admin.post(
        "/api/v1/channels", json={"name": f"{name}/child", "privacy": "authenticated"}
    )
    assert child.status_code == 201
    assert child.json()["url"].endswith(f"/conda/{name}/child")
    assert admin.get(f"/conda/{name}/child/noarch/repodata.json").status_code == 200
    updated = admin.patch(
        f"/api/v1/channels/{name}", json={"description": "team builds", "privacy": "private"}
    )
    assert updated.json()["privacy"] == "private" and updated.json()["description"] == "team builds"
    names = [c["name"] for c in admin.get("/api/v1/channels").json()]
    assert name in names and f"{name}/child" in names
    assert admin.delete(f"/api/v1/channels/{name}").status_code == 204
    assert admin.get(f"/api/v1/channels/{name}/child").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Upper"}, "name"),
        ({"name": "a/../b"}, "name"),
        ({"name": "api"}, "name"),
        ({"name": "ok-name", "privacy": "secret"}, "privacy"),
        ({"name": ""}, "name"),
        ({"name": "x", "unknown": 1}, "unknown"),
    ],
)
def test_bad_channel_input_is_a_clear_4xx(live_server: LiveServer, body: dict, field: str) -> None:
    response = live_server.admin.post("/api/v1/channels", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert field in json.dumps(problem)


def test_subchannel_of_missing_parent_is_404(live_server: LiveServer) -> None:
    response = live_server.admin.post("/api/v1/channels", json={"name": "no-parent-here/child"})
    assert response.status_code == 404


def test_tokens_create_list_revoke(live_server: LiveServer) -> None:
    http = live_server.client(auth=("admin", ADMIN_PASSWORD))
    created = http.post("/api/v1/tokens", json={"name": "ci", "expires_in_days": 7})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("stk-")
    listed = http.get("/api/v1/tokens").json()
    assert any(t["id"] == created.json()["id"] and "token" not in t for t in listed)
    assert live_server.client(token).get("/api/v1/whoami").json()["username"] == "admin"
    basic = live_server.client(auth=("anything", token)).get("/api/v1/whoami")
    assert basic.json()["via"] == "token"
    assert http.delete(f"/api/v1/tokens/{created.json()['id']}").status_code == 200

    def refused() -> None:
        assert live_server.client(token).get("/api/v1/whoami").status_code == 401

    eventually(refused, within=AUTH_BOUND_S)  # at once here, within a second on other replicas
    too_long = http.post("/api/v1/tokens", json={"name": "x", "expires_in_days": 100_000})
    assert too_long.status_code == 422
    wrong = live_server.client(auth=("admin", "wrong-password")).get("/api/v1/whoami")
    assert wrong.status_code == 401 and "wrong-password" not in wrong.text


def test_token_is_never_logged_or_echoed(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = live_server.admin_token
    channel = live_server.new_channel(privacy="private", prefix="secret")
    with caplog.at_level("DEBUG"):
        ok = live_server.client().get(f"/t/{token}/conda/{channel}/noarch/repodata.json")
        bad = live_server.client().get(
            f"/t/stk_notarealtokenatall123456/conda/{channel}/noarch/repodata.json"
        )
    assert ok.status_code == 200
    assert token not in ok.text and "stk_notarealtoken" not in bad.text
    assert bad.status_code == 401
    server_lines = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "/conda/" in server_lines  # the access log did record the requests
    assert token not in server_lines and "stk_notarealtoken" not in server_lines


def test_copy_move_remove(live_server: LiveServer, testdata: Path) -> None:
    source = live_server.new_channel(prefix="src")
    target = live_server.new_channel(prefix="dst")
    files = sorted((testdata / RECIPES).glob("dependen*.conda"))
    assert live_server.upload(source, *files).status_code == 201
    admin = live_server.admin
    copied = admin.post(
        "/api/v1/copy",
        json={"source": source, "target": target, "name": "dependent", "version": ">=2"},
    )
    assert copied.status_code == 200
    assert [a["filename"] for a in copied.json()["artifacts"]] == ["dependent-2.0-0.conda"]
    again = admin.post(
        "/api/v1/copy",
        json={"source": source, "target": target, "files": ["noarch/dependent-2.0-0.conda"]},
    )
    assert again.status_code == 409
    moved = admin.post(
        "/api/v1/copy",
        json={"source": source, "target": target, "name": "dependency", "move": True},
    )
    assert len(moved.json()["artifacts"]) == 2
    assert set(repodata(live_server, target)["packages.conda"]) == {
        "dependent-2.0-0.conda",
        "dependency-1.0-0.conda",
        "dependency-2.0-0.conda",
    }
    assert set(repodata(live_server, source)["packages.conda"]) == {
        "dependent-1.0-0.conda",
        "dependent-2.0-0.conda",
    }
    removed = admin.post(
        f"/api/v1/channels/{source}/remove", json={"files": ["noarch/dependent-1.0-0.conda"]}
    )
    assert len(removed.json()["artifacts"]) == 1
    assert set(repodata(live_server, source)["packages.conda"]) == {"dependent-2.0-0.conda"}
    nothing = admin.post(f"/api/v1/channels/{source}/remove", json={})
    assert nothing.status_code == 422


def test_freeze_holds_publication(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="frozen")
    live_server.wait_published(channel)
    admin = live_server.admin
    assert admin.post(f"/api/v1/channels/{channel}/freeze").json()["frozen"] is True
    assert (
        live_server.upload(channel, testdata / RECIPES / "dependency-1.0-0.conda").status_code
        == 201
    )
    time.sleep(0.5)
    assert admin.get(f"/conda/{channel}/noarch/repodata.json").json()["packages.conda"] == {}
    assert any(s["pending"] for s in admin.get(f"/api/v1/channels/{channel}/subdirs").json())
    admin.post(f"/api/v1/channels/{channel}/unfreeze")
    assert "dependency-1.0-0.conda" in repodata(live_server, channel)["packages.conda"]


def test_hotfix_patches_survive_republication(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="hotfix")
    files = sorted((testdata / "channels/index-hotfix/osx-64").glob("*.tar.bz2"))
    assert live_server.upload(channel, *files).status_code == 201
    instructions = {
        "patch_instructions_version": 1,
        "packages": {"hotfix_depends_test-1.0-dummy_0.tar.bz2": {"depends": ["zlib >=1.2"]}},
        "revoke": ["revoke_test-1.0-0.tar.bz2"],
        "remove": ["remove_test-1.0-0.tar.bz2"],
    }
    admin = live_server.admin
    assert (
        admin.post(f"/api/v1/channels/{channel}/patches/osx-64", json=instructions).status_code
        == 200
    )
    # a later upload republishes the subdir: the patches are applied again
    assert (
        live_server.upload(channel, testdata / RECIPES / "dependency-1.0-0.conda").status_code
        == 201
    )
    data = repodata(live_server, channel, "osx-64")
    assert data["packages"]["hotfix_depends_test-1.0-dummy_0.tar.bz2"]["depends"] == ["zlib >=1.2"]
    revoked = data["packages"]["revoke_test-1.0-0.tar.bz2"]
    assert revoked["revoked"] is True and "package_has_been_revoked" in revoked["depends"]
    assert "remove_test-1.0-0.tar.bz2" not in data["packages"]
    assert "remove_test-1.0-0.tar.bz2" in data["removed"]
    cleared = admin.delete(f"/api/v1/channels/{channel}/patches/osx-64/remove_test-1.0-0.tar.bz2")
    assert cleared.status_code == 204
    assert "remove_test-1.0-0.tar.bz2" in repodata(live_server, channel, "osx-64")["packages"]
    bad = admin.put(
        f"/api/v1/channels/{channel}/patches/osx-64/revoke_test-1.0-0.tar.bz2",
        json={"changes": {"sha256": "x"}},
    )
    assert bad.status_code == 422


def test_openapi_document(live_server: LiveServer) -> None:
    doc = live_server.client().get("/api/v1/openapi.json").json()
    assert "/api/v1/channels" in doc["paths"]
    assert live_server.client().get("/api/docs").status_code == 200
