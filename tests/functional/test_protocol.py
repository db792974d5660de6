"""The conda channel protocol over HTTP: index files, caching headers, ranges, agreement."""

from __future__ import annotations

import bz2
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from stockade.conda.shards import read_shard, read_shard_index
from tests.support.eventually import CHANNEL_FILES_BOUND_S, eventually
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional
# We add CEP 47's indexed_timestamp, and keep index.json's arch/platform (conda-index does; the
# indexer that wrote test-recipes' repodata.json dropped them).
ADDED_FIELDS = {"indexed_timestamp", "arch", "platform"}


@pytest.fixture(scope="module")
def recipes(live_server: LiveServer, testdata: Path) -> str:
    name = live_server.new_channel(prefix="proto")
    files = sorted((testdata / "channels" / "test-recipes").glob("*/*.conda"))
    assert live_server.upload(name, *files).status_code == 201
    live_server.wait_published(name)
    return name


@pytest.mark.parametrize("subdir", ["noarch", "linux-fake", "osx-fake", "win-fake"])
def test_repodata_matches_the_original(
    live_server: LiveServer, recipes: str, testdata: Path, subdir: str
) -> None:
    original = json.loads(
        (testdata / "channels" / "test-recipes" / subdir / "repodata.json").read_text()
    )
    ours = live_server.client().get(f"/conda/{recipes}/{subdir}/repodata.json").json()
    assert ours["info"]["subdir"] == subdir
    assert ours["repodata_version"] == 1
    for key in ("packages", "packages.conda"):
        assert set(ours[key]) == set(original.get(key, {})), key
        for filename, record in original.get(key, {}).items():
            mine = ours[key][filename]
            assert {k: v for k, v in mine.items() if k not in ADDED_FIELDS} == record, filename
            assert set(mine) - set(record) <= ADDED_FIELDS
            assert ours[key][filename]["indexed_timestamp"] > 1_600_000_000_000  # CEP 47: ms


def test_index_files_agree(live_server: LiveServer, recipes: str) -> None:
    http = live_server.client()
    base = f"/conda/{recipes}/noarch"
    plain = http.get(f"{base}/repodata.json").content
    assert (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress(http.get(f"{base}/repodata.json.zst").content)
        == plain
    )
    assert bz2.decompress(http.get(f"{base}/repodata.json.bz2").content) == plain
    repodata = orjson.loads(plain)
    index = read_shard_index(http.get(f"{base}/repodata_shards.msgpack.zst").content)
    assert index["info"]["subdir"] == "noarch"
    from_shards: dict[str, bytes] = {}
    for name, digest in index["shards"].items():
        data = http.get(f"{base}/shards/{digest.hex()}.msgpack.zst")
        assert data.status_code == 200
        assert hashlib.sha256(data.content).digest() == digest
        assert "immutable" in data.headers["cache-control"]
        shard = read_shard(data.content)
        for filename, record in shard["packages.conda"].items():
            assert record["name"] == name
            from_shards[filename] = record["sha256"]
    assert {
        fn: bytes.fromhex(r["sha256"]) for fn, r in repodata["packages.conda"].items()
    } == from_shards
    run_exports = http.get(f"{base}/run_exports.json").json()
    assert set(run_exports["packages.conda"]) == set(repodata["packages.conda"])


def test_caching_headers_and_304(live_server: LiveServer, recipes: str) -> None:
    http = live_server.client()
    url = f"/conda/{recipes}/noarch/repodata.json"
    first = http.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["content-type"].startswith("application/json")
    assert "max-age" in first.headers["cache-control"]
    assert "last-modified" in first.headers
    assert http.get(url, headers={"if-none-match": etag}).status_code == 304
    assert (
        http.get(url, headers={"if-modified-since": first.headers["last-modified"]}).status_code
        == 304
    )
    assert http.get(url, headers={"if-none-match": '"other"'}).status_code == 200
    head = http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(first.content))


def test_package_download_range_head(live_server: LiveServer, recipes: str, testdata: Path) -> None:
    http = live_server.client()
    original = (testdata / "channels/test-recipes/noarch/dependent-1.0-0.conda").read_bytes()
    url = f"/conda/{recipes}/noarch/dependent-1.0-0.conda"
    full = http.get(url)
    assert full.content == original
    assert full.headers["etag"] == f'"{hashlib.sha256(original).hexdigest()}"'
    assert "immutable" in full.headers["cache-control"]
    part = http.get(url, headers={"range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == original[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(original)}"
    tail = http.get(url, headers={"range": "bytes=-16"})
    assert tail.content == original[-16:]
    assert http.get(url, headers={"range": f"bytes={len(original)}-"}).status_code == 416
    assert http.get(url, headers={"if-none-match": full.headers["etag"]}).status_code == 304
    assert http.head(url).headers["content-length"] == str(len(original))


def test_empty_channel_has_noarch_and_root_files(live_server: LiveServer) -> None:
    name = live_server.new_channel(prefix="empty")
    http = live_server.client()
    noarch = http.get(f"/conda/{name}/noarch/repodata.json")
    assert noarch.status_code == 200
    assert noarch.json()["packages"] == {} and noarch.json()["info"]["subdir"] == "noarch"
    assert http.get(f"/conda/{name}/linux-64/repodata.json").status_code == 404
    assert http.get(f"/conda/{name}/notices.json").json() == {"notices": []}
    assert http.get(f"/conda/{name}/channeldata.json").status_code == 200
    missing = http.get("/conda/no-such-channel/noarch/repodata.json")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_channeldata_and_notices(live_server: LiveServer, recipes: str) -> None:
    http = live_server.client()
    channeldata = http.get(f"/conda/{recipes}/channeldata.json").json()
    assert channeldata["packages"]["dependent"]["version"] == "2.0"
    assert {"noarch", "linux-fake"} <= set(channeldata["subdirs"])
    created = live_server.admin.post(
        f"/api/v1/channels/{recipes}/notices",
        json={"message": "maintenance tonight", "level": "warning"},
    )
    assert created.status_code == 201

    def shown() -> list[dict[str, Any]]:  # at once here, within 2 s on other replicas
        notices: list[dict[str, Any]] = http.get(f"/conda/{recipes}/notices.json").json()["notices"]
        assert [n["message"] for n in notices] == ["maintenance tonight"]
        return notices

    notices = eventually(shown, within=CHANNEL_FILES_BOUND_S)
    assert notices[0]["level"] == "warning"
