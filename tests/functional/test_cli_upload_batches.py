"""``stockade upload FILES...`` against a live server: batches over one client, a progress bar,
each file accepted or refused with its reason, exit 1 when any was refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import own_server
from tests.support.cli import run
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def _as_admin(monkeypatch: pytest.MonkeyPatch, live: LiveServer) -> None:
    monkeypatch.setenv("STOCKADE_URL", live.url)
    monkeypatch.setenv("STOCKADE_TOKEN", live.admin_token)


def _good(testdata: Path) -> list[Path]:
    return sorted((testdata / "channels/test-recipes/noarch").glob("dependen*.conda"))


def _served(live: LiveServer, channel: str, expected: set[str]) -> set[str]:
    """What ``noarch/repodata.json`` lists once it lists ``expected`` (each file is served once
    its scan verdict is in and published), or after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        response = live.client().get(f"/conda/{channel}/noarch/repodata.json")
        body = response.json() if response.status_code == 200 else {}
        served = set(body.get("packages.conda", {})) | set(body.get("packages", {}))
        if served >= expected or time.monotonic() > deadline:
            return served
        time.sleep(0.1)


def _upload_requests(live: LiveServer, channel: str) -> list[str]:
    """The request id of each ``artifact.upload`` event of ``channel`` (one per file)."""
    events = live.admin.get(
        "/api/v1/audit", params={"type": "artifact.upload", "target": channel, "limit": 1000}
    ).json()["events"]
    return [e["request_id"] for e in events]


def test_good_files_are_kept_bad_ones_named_and_the_exit_is_1(
    cli: CliRunner,
    live_server: LiveServer,
    testdata: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _as_admin(monkeypatch, live_server)
    channel = live_server.new_channel(prefix="cli-batch")
    good = _good(testdata)[:3]
    broken = tmp_path / "another-bad-1.0-0.conda"
    broken.write_bytes((testdata / "bad" / "another_bad_package.conda").read_bytes())
    junk = tmp_path / "junk-1.0-0.tar.bz2"
    junk.write_bytes(b"not a package")
    files = [good[0], good[1], broken, good[2], junk]  # batches of 2: [g g] [bad g] [junk]
    out = run(cli, "upload", "-c", channel, "--batch", "2", *map(str, files), code=1)
    for path in good:
        assert f"accepted noarch/{path.name}" in out, out
    assert f"refused  {broken.name}: " in out and f"refused  {junk.name}: " in out, out
    assert out.count("package:format") >= 2 and "HTTP 422" in out, out
    assert "uploaded 3 file(s)" in out and "refused 2 file(s)" in out, out
    assert "index published" in out  # the good ones are published before the exit status 1
    assert "5/5 answered, 2 refused" in out, out  # the progress line
    assert _served(live_server, channel, {p.name for p in good}) == {p.name for p in good}
    # Sent as batches: the 3 good files were recorded by 2 requests, not 1 or 3.
    requests = _upload_requests(live_server, channel)
    assert len(requests) == 3 and len(set(requests)) == 2, requests


def test_many_files_over_parallel_connections(
    cli: CliRunner, live_server: LiveServer, testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_admin(monkeypatch, live_server)
    channel = live_server.new_channel(prefix="cli-many")
    files = sorted((testdata / "channels/test-recipes/noarch").glob("*.conda"))
    assert len(files) >= 8
    out = run(cli, "upload", "-c", channel, "--batch", "3", "--jobs", "3", "-q", *map(str, files))
    assert f"uploaded {len(files)} file(s)" in out and "accepted" not in out, out
    assert _served(live_server, channel, {p.name for p in files}) == {p.name for p in files}
    assert len(set(_upload_requests(live_server, channel))) == -(-len(files) // 3)
    again = run(cli, "upload", "-c", channel, str(files[0]), code=1)
    assert "artifact:exists" in again and "HTTP 409" in again, again


@pytest.fixture
def small_limit_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with own_server(
        backend, tmp_path_factory, "upload-limit", upload={"max_archive_size": 4500}
    ) as live:
        yield live


def test_a_batch_refused_for_one_files_size_is_sent_again_file_by_file(
    cli: CliRunner,
    small_limit_server: LiveServer,
    testdata: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One file over the server's size limit makes the whole multipart request a 413: the CLI
    sends that batch again one file per request, so the others are kept."""
    _as_admin(monkeypatch, small_limit_server)
    channel = small_limit_server.new_channel(prefix="cli-split")
    noarch = testdata / "channels/test-recipes/noarch"
    big = noarch / "activate_deactivate_package-1.0-0.conda"
    assert big.stat().st_size > 4500
    good = _good(testdata)[:2]
    assert all(p.stat().st_size < 4500 for p in good)
    out = run(cli, "upload", "-c", channel, str(good[0]), str(big), str(good[1]), code=1)
    assert f"refused  {big.name}: " in out and "HTTP 413" in out, out
    assert "package:archive-size" in out, out
    assert "uploaded 2 file(s)" in out, out
    assert _served(small_limit_server, channel, {p.name for p in good}) == {p.name for p in good}
