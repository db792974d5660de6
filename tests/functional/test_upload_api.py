"""Upload through the API: every real broken package refused with a named rule, nothing stored."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.support.server import LiveServer

pytestmark = pytest.mark.functional

# Each real broken file, uploaded under a well-formed name so that the content rule is reached.
BAD_RULES = {
    "bad_package.tar.bz2": ("bad-package-1.0-0.tar.bz2", "package:format"),
    "another_bad_package.conda": ("another-bad-1.0-0.conda", "package:format"),
    "a.tar.bz2": ("a-1.0-0.tar.bz2", "package:missing-index"),
    "subfolder.tar.bz2": ("subfolder-1.0-0.tar.bz2", "package:missing-index"),
    "dotslash-test-1.0.0-0.conda": ("dotslash-test-1.0.0-0.conda", "package:format"),
    "ca-certificates-2024.7.4-hbcca054_0.conda": (
        "ca-certificates-2024.7.4-hbcca054_0.conda",
        "package:",
    ),
}


def _listing(live_server: LiveServer, channel: str) -> list[dict[str, object]]:
    response = live_server.admin.get(f"/api/v1/channels/{channel}/files")
    assert response.status_code == 200
    return list(response.json())


@pytest.mark.parametrize("filename", sorted(BAD_RULES))
def test_real_broken_packages_are_refused(
    live_server: LiveServer, testdata: Path, filename: str
) -> None:
    channel = live_server.new_channel(prefix="bad")
    upload_as, rule = BAD_RULES[filename]
    data = (testdata / "bad" / filename).read_bytes()
    for name, expected in ((filename, "package:"), (upload_as, rule)):
        response = live_server.admin.post(
            f"/api/v1/channels/{channel}/files",
            files=[("files", (name, data, "application/octet-stream"))],
        )
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["status"] == response.status_code
        assert body["code"].startswith(expected), body
        assert body["detail"]
    assert _listing(live_server, channel) == []
    assert not live_server.container.blobs.exists(hashlib.sha256(data).hexdigest())
    staging = live_server.container.blobs.staging_dir()
    assert not [p for p in staging.iterdir() if p.name.startswith("upload-")]


# One backend (CI time): what varies here is the package, not the database; uploads run
# on both backends in the other tests of this file.
@pytest.mark.one_backend
def test_every_good_package_is_accepted(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="good")
    files = sorted(testdata.glob("packages/*.conda")) + sorted(testdata.glob("packages/*.tar.bz2"))
    files += sorted(testdata.glob("channels/*/*/*.conda")) + sorted(
        testdata.glob("channels/*/*/*.tar.bz2")
    )
    seen: set[str] = set()
    unique = [f for f in files if not (f.name in seen or seen.add(f.name))]  # type: ignore[func-returns-value]
    for path in unique:
        response = live_server.upload(channel, path)
        assert response.status_code == 201, f"{path.name}: {response.text}"
        uploaded = response.json()["uploaded"][0]
        assert uploaded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert uploaded["size"] == path.stat().st_size
    assert len(_listing(live_server, channel)) == len(unique)


def test_a_bad_file_in_a_batch_stores_nothing(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="batch")
    good = testdata / "channels/test-recipes/noarch/dependency-1.0-0.conda"
    response = live_server.upload(channel, good, testdata / "bad" / "a.tar.bz2")
    assert response.status_code == 422
    assert _listing(live_server, channel) == []


def test_duplicate_is_409_unless_forced(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="dup")
    path = testdata / "channels/test-recipes/noarch/dependency-1.0-0.conda"
    assert live_server.upload(channel, path).status_code == 201
    again = live_server.upload(channel, path)
    assert again.status_code == 409
    assert again.json()["code"] == "artifact:exists"
    forced = live_server.admin.post(
        f"/api/v1/channels/{channel}/files",
        params={"force": "true"},
        files=[("files", (path.name, path.read_bytes(), "application/octet-stream"))],
    )
    assert forced.status_code == 201
    assert len(_listing(live_server, channel)) == 1


def test_streamed_put_checks_sha256(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="put")
    path = testdata / "channels/test-recipes/noarch/dependent-2.0-0.conda"
    data = path.read_bytes()
    url = f"/api/v1/channels/{channel}/files/{path.name}"
    wrong = live_server.admin.put(url, params={"sha256": "0" * 64}, content=data)
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "upload:sha256-mismatch"
    assert _listing(live_server, channel) == []
    right = live_server.admin.put(
        url, params={"sha256": hashlib.sha256(data).hexdigest()}, content=data
    )
    assert right.status_code == 201, right.text
    assert right.json()["filename"] == path.name


def test_filename_must_match_the_package(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="rename")
    data = (testdata / "packages/dummy-package-1.0-0.tar.bz2").read_bytes()
    response = live_server.admin.put(
        f"/api/v1/channels/{channel}/files/dummy-package-9.0-0.tar.bz2", content=data
    )
    assert response.status_code == 422
    assert response.json()["code"] == "package:filename-mismatch"


def test_upload_needs_credentials_and_write_access(live_server: LiveServer, testdata: Path) -> None:
    channel = live_server.new_channel(prefix="authz")
    path = testdata / "channels/test-recipes/noarch/dependent-2.0-0.conda"
    files = [("files", (path.name, path.read_bytes(), "application/octet-stream"))]
    anonymous = live_server.client().post(f"/api/v1/channels/{channel}/files", files=files)
    assert anonymous.status_code == 401
    assert (
        live_server.admin.post(
            "/api/v1/users", json={"username": "writer-less", "password": "password-123"}
        ).status_code
        == 201
    )
    token = (
        live_server.client(auth=("writer-less", "password-123"))
        .post("/api/v1/tokens", json={"name": "t"})
        .json()["token"]
    )
    other = live_server.client(token).post(f"/api/v1/channels/{channel}/files", files=files)
    assert other.status_code == 403
    assert _listing(live_server, channel) == []
