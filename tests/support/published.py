"""Read a channel subdir's published index the way a client does, and check it is whole.

A subdir is served as ``repodata.json``, ``repodata.json.zst`` and the CEP 16 sharded index
(``repodata_shards.msgpack.zst`` plus ``shards/<sha256>.msgpack.zst``). They are published
together, so at any moment they must describe the same records; every record must name a package
file that downloads with the recorded sha256.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import zstandard
from sqlalchemy import create_engine, text

from stockade.conda.shards import read_shard, read_shard_index


class IndexMoved(Exception):
    """The index was switched while it was being read; read it again."""


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of a subdir's index: filename -> sha256 (hex)."""

    subdir: str
    etag: str
    repodata_sha256: str  # of the repodata.json bytes served
    records: dict[str, str]
    removed: frozenset[str]


def _get(client: httpx.Client, path: str) -> httpx.Response:
    response = client.get(path)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
    return response


def _records(document: dict[str, Any]) -> dict[str, str]:
    records: dict[str, str] = {}
    for key in ("packages", "packages.conda"):
        for filename, record in document.get(key, {}).items():
            assert filename not in records, f"{filename} is listed twice"
            records[filename] = record["sha256"]
    return records


def _shard_records(
    client: httpx.Client, base: str, subdir: str, index: dict[str, Any]
) -> tuple[dict[str, str], set[str]]:
    assert index["version"] == 1
    assert index["info"]["subdir"] == subdir
    records: dict[str, str] = {}
    removed: set[str] = set()
    for name, digest in index["shards"].items():
        assert isinstance(digest, bytes), f"shard digest of {name} is not binary"
        assert len(digest) == 32, f"shard digest of {name} is not 32 bytes"
        data = _get(client, f"{base}/shards/{digest.hex()}.msgpack.zst").content
        assert hashlib.sha256(data).digest() == digest, f"shard of {name} does not hash to its name"
        shard = read_shard(data)
        removed.update(shard.get("removed", []))
        for key in ("packages", "packages.conda"):
            for filename, record in shard.get(key, {}).items():
                sha = record["sha256"]
                assert isinstance(sha, bytes), f"{filename}: sha256 is not binary"
                assert len(sha) == 32, f"{filename}: sha256 is not 32 bytes"
                assert record["name"].lower() == name, f"{filename} is in the shard of {name}"
                assert filename not in records, f"{filename} is in two shards"
                records[filename] = sha.hex()
    return records, removed


def snapshot(client: httpx.Client, channel: str, subdir: str) -> Snapshot | None:
    """Read every index file of one subdir and check they agree; None if it is not published.

    ``repodata.json`` is read before and after the others: if it changed in between, the index was
    switched mid-read (allowed: files are separate requests) and :class:`IndexMoved` is raised.
    """
    base = f"/conda/{channel}/{subdir}"
    first = client.get(f"{base}/repodata.json")
    if first.status_code == 404:
        return None
    assert first.status_code == 200, first.text
    zst = _get(client, f"{base}/repodata.json.zst").content
    shard_index = _get(client, f"{base}/repodata_shards.msgpack.zst").content
    last = _get(client, f"{base}/repodata.json")
    if last.content != first.content:
        raise IndexMoved(subdir)
    document = orjson.loads(first.content)
    assert document["info"]["subdir"] == subdir
    from_zst = orjson.loads(zstandard.ZstdDecompressor().decompress(zst))
    assert from_zst == document, f"{subdir}: repodata.json.zst differs from repodata.json"
    records = _records(document)
    sharded, removed = _shard_records(client, base, subdir, read_shard_index(shard_index))
    assert sharded == records, f"{subdir}: shards disagree with repodata.json: " + _diff(
        records, sharded
    )
    assert removed == set(document.get("removed", [])), f"{subdir}: removed lists differ"
    return Snapshot(
        subdir=subdir,
        etag=first.headers.get("etag", ""),
        repodata_sha256=hashlib.sha256(first.content).hexdigest(),
        records=records,
        removed=frozenset(removed),
    )


def stable_snapshot(
    client: httpx.Client, channel: str, subdir: str, attempts: int = 20
) -> Snapshot | None:
    for _ in range(attempts):
        try:
            return snapshot(client, channel, subdir)
        except IndexMoved:
            time.sleep(0.01)
    raise AssertionError(f"{subdir}: the index never held still")


def _diff(expected: dict[str, str], actual: dict[str, str]) -> str:
    missing = sorted(set(expected) - set(actual))[:5]
    extra = sorted(set(actual) - set(expected))[:5]
    changed = sorted(f for f in set(expected) & set(actual) if expected[f] != actual[f])[:5]
    return f"missing {missing}, unexpected {extra}, other sha256 {changed}"


def assert_same_records(expected: dict[str, str], actual: dict[str, str], what: str) -> None:
    assert actual == expected, f"{what}: " + _diff(expected, actual)


def check_downloads(
    client: httpx.Client, channel: str, subdir: str, records: dict[str, str]
) -> None:
    """Every record names a package file that downloads with the recorded sha256."""
    for filename, sha in records.items():
        response = _get(client, f"/conda/{channel}/{subdir}/{filename}")
        assert hashlib.sha256(response.content).hexdigest() == sha, f"{subdir}/{filename} bytes"


# -- the database, read directly (the server may be dead) -----------------------------------------


def _engine_url(db_url: str) -> str:
    if db_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + db_url.removeprefix("postgresql://")
    return db_url


def _query(db_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(_engine_url(db_url))
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(text(sql), params).mappings()]
    finally:
        engine.dispose()


def subdir_rows(db_url: str, channel: str) -> list[dict[str, Any]]:
    """The ``subdir_indexes`` rows of ``channel``: revisions and the current repodata.json."""
    return _query(
        db_url,
        "SELECT s.subdir, s.requested_rev, s.published_rev, s.repodata_sha256 "
        "FROM subdir_indexes s JOIN channels c ON c.id = s.channel_id "
        "WHERE c.name = :name ORDER BY s.subdir",
        name=channel,
    )


def artifact_rows(db_url: str, channel: str) -> dict[str, str]:
    """``filename -> sha256`` of the artifacts of ``channel``, straight from the database; rows a
    mirror run staged and has not switched in yet (``mirroring.staging``) are not the channel's."""
    rows = _query(
        db_url,
        "SELECT a.filename, a.sha256 FROM artifacts a JOIN channels c ON c.id = a.channel_id "
        "WHERE c.name = :name AND a.scan_status <> 'staged'",
        name=channel,
    )
    return {row["filename"]: row["sha256"] for row in rows}


def staged_rows(db_url: str, channel: str) -> dict[str, int]:
    """``filename -> id`` of the rows a mirror run staged in ``channel`` (not switched in yet)."""
    rows = _query(
        db_url,
        "SELECT a.filename, a.id FROM artifacts a JOIN channels c ON c.id = a.channel_id "
        "WHERE c.name = :name AND a.scan_status = 'staged'",
        name=channel,
    )
    return {row["filename"]: row["id"] for row in rows}


def check_channel(
    client: httpx.Client,
    channel: str,
    artifacts: list[dict[str, Any]],
    *,
    blob_dir: Path | None = None,
    exact: bool = True,
    download: bool = True,
) -> dict[str, Snapshot]:
    """Check a channel end to end against ``artifacts`` (its API listing).

    Every artifact has its blob, whole (read from ``blob_dir`` when given), and downloads with its
    sha256 (unless ``download`` is off: already checked). Every subdir's index is internally
    consistent and its records are artifacts, with their sha256, so each record downloads. With
    ``exact``, each index lists exactly the artifacts of its subdir (it has converged to the
    database); without, a subset (it may lag behind).
    """
    by_subdir: dict[str, dict[str, str]] = {}
    for artifact in artifacts:
        files = by_subdir.setdefault(artifact["subdir"], {})
        assert artifact["filename"] not in files, f"{artifact['filename']} listed twice"
        files[artifact["filename"]] = artifact["sha256"]
        if blob_dir is not None:
            sha = artifact["sha256"]
            blob = blob_dir / sha[:2] / sha[2:4] / sha
            assert blob.is_file(), f"blob of {artifact['filename']} is missing"
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha, f"blob {sha} corrupt"
    snapshots: dict[str, Snapshot] = {}
    for subdir, files in sorted(by_subdir.items()):
        if download:
            check_downloads(client, channel, subdir, files)
        found = stable_snapshot(client, channel, subdir)
        if found is None:
            assert not exact, f"{subdir} has artifacts but no index"
            continue
        snapshots[subdir] = found
        if exact:
            assert_same_records(files, found.records, f"{subdir} index vs database")
        else:
            strays = sorted(fn for fn, sha in found.records.items() if files.get(fn) != sha)
            assert not strays, f"{subdir}: index records that are no artifact: {strays[:5]}"
    return snapshots
