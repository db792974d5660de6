"""Per-file batches (``POST /channels/{c}/uploads``, what ``stockade upload`` sends): each good
file of a batch is kept and served, each bad one is named with its problem; the all-or-nothing
multipart endpoint stays all or nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


def _good(testdata: Path) -> list[Path]:
    return sorted((testdata / "channels/test-recipes/noarch").glob("dependen*.conda"))


def _parts(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


def _post_each(
    live_server: LiveServer, channel: str, parts: list[Any], **params: bool | str
) -> dict[str, Any]:
    response = live_server.admin.post(
        f"/api/v1/channels/{channel}/uploads", files=parts, params=params
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _served(live_server: LiveServer, channel: str, expected: set[str]) -> set[str]:
    """What ``noarch/repodata.json`` lists once it lists ``expected`` (each file is served once
    its scan verdict is in and published), or after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        response = live_server.client().get(f"/conda/{channel}/noarch/repodata.json")
        body = response.json() if response.status_code == 200 else {}
        served = set(body.get("packages.conda", {})) | set(body.get("packages", {}))
        if served >= expected or time.monotonic() > deadline:
            return served
        time.sleep(0.1)


def test_a_bad_file_in_a_batch_does_not_lose_the_good_ones(
    live_server: LiveServer, testdata: Path
) -> None:
    channel = live_server.new_channel(prefix="each")
    good = _good(testdata)
    bad = (testdata / "bad" / "another_bad_package.conda").read_bytes()
    parts = _parts(
        (good[0].name, good[0].read_bytes()),
        ("another-bad-1.0-0.conda", bad),
        (good[1].name, good[1].read_bytes()),
        ("junk-1.0-0.tar.bz2", b"not a package"),
        (good[2].name, good[2].read_bytes()),
    )
    body = _post_each(live_server, channel, parts)
    assert (body["accepted"], body["refused"]) == (3, 2)
    files = body["files"]
    assert [f["filename"] for f in files] == [name for _, (name, _, _) in parts]  # order sent
    assert [f["status"] for f in files] == [
        "accepted",
        "refused",
        "accepted",
        "refused",
        "accepted",
    ]
    for refused in (files[1], files[3]):
        problem = refused["problem"]
        assert refused["artifact"] is None
        assert 400 <= problem["status"] < 500 and problem["code"] == "package:format", problem
        assert problem["detail"] and problem["type"].endswith(problem["code"])
    assert files[0]["artifact"]["filename"] == good[0].name
    expected = {good[0].name, good[1].name, good[2].name}
    assert _served(live_server, channel, expected) == expected


def test_existing_and_repeated_files_are_refused_one_by_one(
    live_server: LiveServer, testdata: Path
) -> None:
    channel = live_server.new_channel(prefix="each-dup")
    good = _good(testdata)
    assert live_server.upload(channel, good[0]).status_code == 201
    parts = _parts(
        (good[0].name, good[0].read_bytes()),  # already there
        (good[1].name, good[1].read_bytes()),
        (good[1].name, good[1].read_bytes()),  # twice in this request
    )
    files = _post_each(live_server, channel, parts)["files"]
    assert [f["status"] for f in files] == ["refused", "accepted", "refused"]
    assert files[0]["problem"]["code"] == "artifact:exists"
    assert files[0]["problem"]["status"] == 409
    assert "twice" in files[2]["problem"]["detail"]
    forced = _post_each(
        live_server, channel, _parts((good[0].name, good[0].read_bytes())), force=True
    )
    assert forced["files"][0]["status"] == "accepted"
    assert _served(live_server, channel, {good[0].name, good[1].name}) == {
        good[0].name,
        good[1].name,
    }


def test_a_wrong_subdir_is_refused_per_file(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="each-subdir")
    good = _good(testdata)
    files = _post_each(
        live_server, channel, _parts((good[0].name, good[0].read_bytes())), subdir="linux-64"
    )["files"]
    assert files[0]["status"] == "refused" and files[0]["problem"]["status"] == 422


def test_request_level_problems_stay_problems(live_server: LiveServer, testdata: Path) -> None:
    """No access, an unknown channel, no files: a 4xx problem for the whole request."""
    channel = live_server.new_channel(prefix="each-auth", privacy="private")
    good = _good(testdata)
    parts = _parts((good[0].name, good[0].read_bytes()))
    anonymous = live_server.client().post(f"/api/v1/channels/{channel}/uploads", files=parts)
    assert anonymous.status_code in (401, 404), anonymous.text
    missing = live_server.admin.post("/api/v1/channels/no-such-channel-x/uploads", files=parts)
    assert missing.status_code == 404
    empty = live_server.admin.post(
        f"/api/v1/channels/{channel}/uploads", files=[("other", ("x", b"y", "text/plain"))]
    )
    assert empty.status_code == 422 and empty.json()["code"] == "upload:no-files"
    assert live_server.admin.get(f"/api/v1/channels/{channel}/files").json() == []


def test_the_multipart_files_endpoint_stays_all_or_nothing(
    live_server: LiveServer, testdata: Path
) -> None:
    channel = live_server.new_channel(prefix="atomic")
    good = _good(testdata)
    parts = _parts((good[0].name, good[0].read_bytes()), ("junk-1.0-0.tar.bz2", b"not a package"))
    response = live_server.admin.post(f"/api/v1/channels/{channel}/files", files=parts)
    assert response.status_code == 422 and response.json()["code"] == "package:format"
    assert live_server.admin.get(f"/api/v1/channels/{channel}/files").json() == []
