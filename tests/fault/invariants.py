"""What must hold in the cluster once it has converged after a kill (issue 16, SPEC §11-12).

Each check raises AssertionError naming what broke. The database is read directly (PostgreSQL):
the API could hide a duplicate row that the database holds.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from stockade.conda.shards import read_shard_index
from tests.support.mirror_runs import FINAL
from tests.support.published import (
    _query,
    _records,
    _shard_records,
    check_channel,
    check_downloads,
    stable_snapshot,
)


@dataclass
class Burst:
    """What one trial asked of the cluster and what it was told."""

    channel: str
    mirror: str
    sent: dict[str, str]  # filename -> sha256 of every upload sent
    acknowledged: dict[str, str] = field(default_factory=dict)  # answered 2xx
    refused: dict[str, str] = field(default_factory=dict)  # filename -> status or error
    run_ids: list[int] = field(default_factory=list)


def pending_work(db_url: str, channels: list[str]) -> list[str]:
    """Work the cluster still owes these channels: unpublished revisions, scans not done."""
    rows = _query(
        db_url,
        "SELECT c.name || '/' || s.subdir AS what FROM subdir_indexes s "
        "JOIN channels c ON c.id = s.channel_id "
        "WHERE c.name = ANY(:names) AND s.requested_rev > s.published_rev "
        "UNION ALL SELECT 'scan of ' || a.filename FROM scan_requests r "
        "JOIN artifacts a ON a.id = r.artifact_id JOIN channels c ON c.id = a.channel_id "
        "WHERE c.name = ANY(:names)",
        names=channels,
    )
    return [row["what"] for row in rows]


def mirror_runs(db_url: str, mirror: str) -> list[dict[str, Any]]:
    return _query(
        db_url,
        "SELECT r.id, r.state, r.attempt, r.counts, r.error FROM mirror_runs r "
        "JOIN mirrors m ON m.id = r.mirror_id WHERE m.name = :name ORDER BY r.id",
        name=mirror,
    )


def check_uploads(client: httpx.Client, db_url: str, burst: Burst) -> None:
    """Every acknowledged upload is a row with its sha256, in its index, and downloads whole."""
    rows = _query(
        db_url,
        "SELECT a.filename, a.sha256, a.subdir, a.scan_status FROM artifacts a "
        "JOIN channels c ON c.id = a.channel_id WHERE c.name = :name",
        name=burst.channel,
    )
    stored = {row["filename"]: row for row in rows}
    for filename, sha in burst.acknowledged.items():
        row = stored.get(filename)
        assert row is not None, f"acknowledged upload {filename} is not in the database"
        assert row["sha256"] == sha, f"{filename}: stored with another sha256"
        assert row["scan_status"] == "clean", f"{filename}: scan status {row['scan_status']}"
        found = stable_snapshot(client, burst.channel, row["subdir"])
        assert found is not None, f"{filename}: its subdir {row['subdir']} has no index"
        assert found.records.get(filename) == sha, f"acknowledged {filename} is not in the index"
        body = client.get(f"/conda/{burst.channel}/{row['subdir']}/{filename}")
        assert body.status_code == 200, f"{filename}: download {body.status_code}"
        assert hashlib.sha256(body.content).hexdigest() == sha, f"{filename}: other bytes"
    strays = set(stored) - set(burst.sent)
    assert not strays, f"rows nobody uploaded: {sorted(strays)}"
    for filename, row in stored.items():
        assert row["sha256"] == burst.sent[filename], f"{filename}: stored other bytes"


def check_channels(client: httpx.Client, channels: list[str]) -> None:
    """Each channel's indexes (repodata.json, .zst, shards) agree with its artifacts exactly and
    every record downloads with its sha256: no half-published index."""
    for channel in channels:
        artifacts = client.get(f"/api/v1/channels/{channel}/files", params={"limit": 1000})
        assert artifacts.status_code == 200, artifacts.text
        servable = [a for a in artifacts.json() if a["scan_status"] == "clean"]
        check_channel(client, channel, servable, exact=True)


def check_mirror(
    db_url: str, burst: Burst, upstream: dict[str, str], served: dict[str, str]
) -> None:
    """Runs ended (none left pending or running), the last one completed, the channel holds the
    upstream's records exactly once, and the completed run counted each admitted file once."""
    runs = mirror_runs(db_url, burst.mirror)
    assert runs, "no mirror run was recorded"
    stuck = [r for r in runs if r["state"] not in FINAL]
    assert not stuck, f"runs not finished after convergence: {stuck}"
    assert runs[-1]["state"] == "completed", f"the last run did not complete: {runs[-1]}"
    assert served == upstream, f"mirror channel serves {len(served)} of {len(upstream)} records"
    syncs = _query(
        db_url,
        "SELECT details FROM audit_events WHERE event_type = 'mirror.sync' AND target_name = :m",
        m=burst.mirror,
    )
    added = sum(int(row["details"]["added"]) for row in syncs)
    assert added == len(upstream), f"runs added {added} files of {len(upstream)}: {syncs}"


def check_no_duplicates(db_url: str) -> None:
    """Across the whole cluster: no artifact twice, no upload audited twice, no run twice."""
    twice = _query(
        db_url,
        "SELECT channel_id, subdir, filename, count(*) AS n FROM artifacts "
        "GROUP BY channel_id, subdir, filename HAVING count(*) > 1",
    )
    assert not twice, f"duplicate artifact rows: {twice[:5]}"
    audited = _query(
        db_url,
        "SELECT event_type, target_id, details->>'file' AS file, details->>'run' AS run, "
        "count(*) AS n FROM audit_events "
        "WHERE event_type IN ('artifact.upload', 'mirror.sync', 'artifact.quarantine') "
        "GROUP BY event_type, target_id, details->>'file', details->>'run' HAVING count(*) > 1",
    )
    assert not audited, f"one effect audited twice: {audited[:5]}"
    active = _query(
        db_url,
        "SELECT mirror_id, count(*) AS n FROM mirror_runs WHERE state IN ('pending', 'running') "
        "GROUP BY mirror_id HAVING count(*) > 1",
    )
    assert not active, f"a mirror with two active runs: {active}"


def read_while_running(
    client: httpx.Client, places: list[tuple[str, str]], until: threading.Event
) -> tuple[int, list[str]]:
    """Read the indexes of ``places`` (channel, subdir) over and over as clients do during the
    burst, until ``until`` is set. Each document is read as a client reads it (requests go to
    either replica, so no two documents are compared): ``repodata.json`` parses and every record
    downloads with its sha256; every shard the shard index names is served, hashes to its name,
    and its records download too. Returns the documents read and what was found broken; a
    connection cut by the kill is no finding (a client retries)."""
    read, broken = 0, []
    while not until.is_set():
        for channel, subdir in places:
            try:
                read += read_as_client(client, channel, subdir)
            except httpx.TransportError:
                continue
            except AssertionError as error:
                broken.append(f"{channel}/{subdir}: {error}")
        time.sleep(0.05)
    return read, broken


def read_as_client(client: httpx.Client, channel: str, subdir: str) -> int:
    """Read the subdir's ``repodata.json`` and its sharded index (if served) and download what
    each lists; the number of documents read (0: not published yet)."""
    base = f"/conda/{channel}/{subdir}"
    found = 0
    answer = client.get(f"{base}/repodata.json")
    if answer.status_code != 404:
        assert answer.status_code == 200, f"repodata.json: {answer.status_code}"
        document = orjson.loads(answer.content)
        check_downloads(client, channel, subdir, _records(document))
        found += 1
    answer = client.get(f"{base}/repodata_shards.msgpack.zst")
    if answer.status_code != 404:
        assert answer.status_code == 200, f"shard index: {answer.status_code}"
        records, _ = _shard_records(client, base, subdir, read_shard_index(answer.content))
        check_downloads(client, channel, subdir, records)
        found += 1
    return found
