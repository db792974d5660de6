"""Upstream sources and the downloader against a real HTTP server on loopback (tests/support/upstream.py)
and real channel folders (file://). No database, no internet."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stockade.mirroring.downloader import Downloader, DownloadResult
from stockade.mirroring.sources import (
    ChecksumMismatchError,
    SourceConfig,
    UpstreamError,
    open_source,
)
from stockade.storage.filesystem import FilesystemBlobStore
from tests.support.mirror_data import (
    R_LINUX_64,
    UpstreamChannel,
    build_channel,
    copy_test_recipes,
    download_items,
)
from tests.support.upstream import Upstream, local_config, self_signed_cert, server_tls_context

TOKEN = "stk_upstream_secret_0123456789"


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> UpstreamChannel:
    """60 real R records (both formats are .tar.bz2 here) with tiny generated files."""
    return build_channel(R_LINUX_64, tmp_path_factory.mktemp("upstream"), limit=60)


@pytest.fixture
def blobs(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


# ------------------------------------------------------------------------------- repodata


def test_conditional_get_is_answered_304(channel: UpstreamChannel) -> None:
    with Upstream(channel.root) as up:
        source = open_source(local_config(up.url))
        first = source.fetch_repodata("linux-64", None)
        again = source.fetch_repodata("linux-64", first.validators)
        source.close()
    assert first.variant == "repodata.json.zst"
    data = json.loads(first.json_bytes())
    assert set(data["packages"]) == set(channel.records)
    assert again.not_modified and again.raw is None
    assert [(r.path, r.status) for r in up.requests] == [
        ("linux-64/repodata.json.zst", 200),
        ("linux-64/repodata.json.zst", 304),
    ]
    assert up.requests[1].headers["if-none-match"] == first.validators.etag


def test_real_records_are_kept_with_new_hashes(channel: UpstreamChannel) -> None:
    upstream = json.loads(R_LINUX_64.read_bytes())["packages"]
    for filename, record in channel.records.items():
        original = upstream[filename]
        assert {k: v for k, v in record.items() if k not in ("sha256", "md5", "size")} == {
            k: v for k, v in original.items() if k not in ("sha256", "md5", "size")
        }
        assert record["size"] == channel.path(filename).stat().st_size


def test_fallback_to_json_and_missing_subdir(tmp_path: Path) -> None:
    plain = build_channel(R_LINUX_64, tmp_path / "up", limit=3, zst=False)
    with Upstream(plain.root) as up:
        source = open_source(local_config(up.url + "/"))
        fetch = source.fetch_repodata("linux-64", None)
        noarch = source.fetch_repodata("noarch", None)
        with pytest.raises(UpstreamError) as info:
            source.fetch_repodata("osx-64", None)
        source.close()
    assert fetch.variant == noarch.variant == "repodata.json"
    assert len(json.loads(fetch.json_bytes())["packages"]) == 3
    assert info.value.code == "mirror:no-subdir"
    assert [r.status for r in up.requests] == [404, 200, 404, 200, 404, 404]


def test_token_is_required_and_never_shown(channel: UpstreamChannel, tmp_path: Path) -> None:
    with Upstream(channel.root, require_token=TOKEN) as up:
        anonymous = open_source(local_config(up.url))
        with pytest.raises(UpstreamError) as info:
            anonymous.fetch_repodata("linux-64", None)
        wrong = open_source(local_config(up.url, token="stk_wrong_token_abcdefgh"))
        with pytest.raises(UpstreamError) as wrong_info:
            wrong.fetch_repodata("linux-64", None)
        source = open_source(local_config(up.url, token=TOKEN))
        assert source.fetch_repodata("linux-64", None).raw
        name, record = next(iter(channel.records.items()))
        path = source.fetch_file(
            "linux-64", name, tmp_path, sha256=record["sha256"], size=record["size"]
        )
        for s in (anonymous, wrong, source):
            s.close()
    assert path.read_bytes() == channel.path(name).read_bytes()
    assert info.value.code == wrong_info.value.code == "mirror:upstream-auth"
    assert "stk_wrong_token_abcdefgh" not in str(wrong_info.value)
    assert TOKEN not in source.describe()
    assert [r.status for r in up.requests] == [401, 401, 200, 200]


def test_passive_fetch_rejects_a_corrupted_file(channel: UpstreamChannel, tmp_path: Path) -> None:
    name, record = next(iter(channel.records.items()))
    with Upstream(channel.root, corrupt={f"linux-64/{name}"}) as up:
        source = open_source(local_config(up.url))
        with pytest.raises(ChecksumMismatchError) as info:
            source.fetch_file(
                "linux-64", name, tmp_path, sha256=record["sha256"], size=record["size"]
            )
        source.close()
    assert info.value.code == "mirror:sha256-mismatch"
    assert record["sha256"] in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_proxy_is_used(channel: UpstreamChannel, blobs: FilesystemBlobStore) -> None:
    with Upstream(channel.root) as proxy:
        config = local_config("http://mirror.invalid/", proxy=proxy.url)
        source = open_source(config)
        assert source.fetch_repodata("linux-64", None).raw
        source.close()
        items = download_items(channel.root, "linux-64", "http://mirror.invalid")[:5]
        summary = Downloader(config, blobs).download_all(items)
    assert summary.done == 5
    assert len(proxy.requests) == 6
    assert all(r.proxied and r.headers["host"] == "mirror.invalid" for r in proxy.requests)


def test_https_with_a_ca_bundle(
    channel: UpstreamChannel, tmp_path: Path, blobs: FilesystemBlobStore
) -> None:
    cert, key = self_signed_cert(tmp_path)
    with Upstream(channel.root, ssl_context=server_tls_context(cert, key)) as up:
        untrusted = open_source(local_config(up.url))
        with pytest.raises(UpstreamError) as info:
            untrusted.fetch_repodata("linux-64", None)
        config = local_config(up.url, ca_bundle=cert)
        trusted = open_source(config)
        assert trusted.fetch_repodata("linux-64", None).raw
        for s in (untrusted, trusted):
            s.close()
        items = download_items(channel.root, "linux-64", up.url)[:4]
        assert Downloader(config, blobs).download_all(items).done == 4
        refused = Downloader(local_config(up.url), FilesystemBlobStore(tmp_path / "b2"))
        failed = refused.download_all(items[:1]).failed
    assert info.value.code == "mirror:upstream-tls"
    assert [r.code for r in failed] == ["mirror:upstream-tls"]


# ------------------------------------------------------------------------------- downloads


def test_download_all_then_resume_downloads_nothing_twice(
    channel: UpstreamChannel, blobs: FilesystemBlobStore
) -> None:
    with Upstream(channel.root) as up:
        items = download_items(channel.root, "linux-64", up.url)
        results: list[DownloadResult] = []
        summary = Downloader(local_config(up.url), blobs, concurrency=4).download_all(
            items[:40], on_result=results.append
        )
        resumed = Downloader(local_config(up.url), blobs, concurrency=4).download_all(items)
    assert (summary.done, summary.skipped, summary.failed) == (40, 0, [])
    assert len(results) == 40
    assert (resumed.done, resumed.skipped) == (len(items) - 40, 40)
    assert sorted(up.downloaded_paths()) == sorted(f"linux-64/{i.filename}" for i in items)
    for item in items:
        assert blobs.read_bytes(item.sha256) == channel.path(item.filename).read_bytes()
    assert list(blobs.staging_dir().iterdir()) == []


def test_corrupted_file_is_rejected_and_retries_after_500s(
    channel: UpstreamChannel, blobs: FilesystemBlobStore
) -> None:
    names = list(channel.records)
    bad, flaky, hopeless = (f"linux-64/{n}" for n in names[:3])
    with Upstream(channel.root, corrupt={bad}, fail_times={flaky: 2, hopeless: 9}) as up:
        items = download_items(channel.root, "linux-64", up.url)[:10]
        summary = Downloader(local_config(up.url), blobs, retries=3, backoff_s=0.01).download_all(
            items
        )
    assert summary.done == 8
    assert {r.item.filename: r.code for r in summary.failed} == {
        names[0]: "mirror:sha256-mismatch",
        names[2]: "mirror:upstream-status",
    }
    assert not blobs.exists(channel.records[names[0]]["sha256"])
    assert blobs.exists(channel.records[names[1]]["sha256"])
    assert [r.status for r in up.requests_for(flaky)] == [500, 500, 200]
    assert len(up.requests_for(hopeless)) == 4  # the first try and 3 retries
    assert list(blobs.staging_dir().iterdir()) == []


def test_should_stop_ends_the_run_quickly(
    channel: UpstreamChannel, blobs: FilesystemBlobStore
) -> None:
    results: list[DownloadResult] = []
    with Upstream(channel.root, throttle_bps=2_000) as up:  # ~0.2 s per file
        items = download_items(channel.root, "linux-64", up.url)
        started = time.monotonic()
        summary = Downloader(local_config(up.url), blobs, concurrency=2).download_all(
            items, on_result=results.append, should_stop=lambda: len(results) >= 2
        )
        elapsed = time.monotonic() - started
    assert summary.stopped
    assert 2 <= summary.done < 6
    assert elapsed < 5
    assert len(results) == summary.done
    assert list(blobs.staging_dir().iterdir()) == []


def test_file_source_real_channel(tmp_path: Path, blobs: FilesystemBlobStore) -> None:
    root = copy_test_recipes(tmp_path / "test-recipes")
    config = SourceConfig(root.as_uri())
    source = open_source(config)
    fetch = source.fetch_repodata("noarch", None)
    assert fetch.variant == "repodata.json"
    assert source.fetch_repodata("noarch", fetch.validators).not_modified
    items = download_items(root, "noarch", root.as_uri())
    (root / "noarch" / items[0].filename).write_bytes(b"tampered")
    summary = Downloader(config, blobs, concurrency=3).download_all(items)
    assert summary.done == len(items) - 1
    assert [r.code for r in summary.failed] == ["mirror:size-mismatch"]
    again = Downloader(config, blobs).download_all(items)
    assert (again.done, again.skipped) == (0, len(items) - 1)
    stopped = Downloader(config, FilesystemBlobStore(tmp_path / "b2")).download_all(
        items, should_stop=lambda: True
    )
    assert stopped.stopped and stopped.done == 0


def test_real_channel_over_http(tmp_path: Path, blobs: FilesystemBlobStore) -> None:
    root = copy_test_recipes(tmp_path / "test-recipes")
    with Upstream(root) as up:
        for subdir in ("noarch", "linux-fake"):
            items = download_items(root, subdir, up.url)
            summary = Downloader(local_config(up.url), blobs).download_all(items)
            assert (summary.done, summary.failed) == (len(items), [])


def test_the_outbound_guard_refuses_loopback_by_default(
    channel: UpstreamChannel, blobs: FilesystemBlobStore
) -> None:
    """Sources, downloads and redirects connect only where the policy allows (docs/adr/0010):
    the default refuses loopback in every spelling, and says so without telling why."""
    with Upstream(channel.root) as up:
        port = up.url.rsplit(":", 1)[1]
        for host in ("127.0.0.1", "127.1", "localhost", "[::ffff:127.0.0.1]"):
            source = open_source(SourceConfig(f"http://{host}:{port}"))
            with pytest.raises(UpstreamError) as caught:
                source.fetch_repodata("linux-64", None)
            source.close()
            assert caught.value.code == "mirror:refused-destination"
            assert "loopback" not in caught.value.detail
        items = download_items(channel.root, "linux-64", up.url)[:2]
        summary = Downloader(SourceConfig(up.url), blobs).download_all(items)
        assert summary.done == 0
        assert {f.code for f in summary.failed} == {"mirror:refused-destination"}
        assert up.requests == []
