"""Helpers of the mirror run tests: an upstream whose repodata can be switched between versions,
waiting for runs, and reading what a channel serves.

    pool = RecordPool.build(tmp_path / "up", count=70)   # 70 generated files from real repodata
    pool.publish(pool.names[:30])                         # upstream now lists these 30
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.support.mirror_data import R_LINUX_64, build_channel, write_repodata
from tests.support.published import check_channel, stable_snapshot
from tests.support.upstream import Upstream

if TYPE_CHECKING:
    from tests.support.process import ServerProcess

FINAL = ("completed", "failed", "stopped")
SUBDIR = "linux-64"


@dataclass
class RecordPool:
    """Generated package files for records of the real r linux-64 repodata, all written once
    (so a file keeps its bytes), and a ``repodata.json`` that lists a chosen part of them."""

    root: Path
    records: dict[str, dict[str, Any]]  # filename -> record with the generated file's hashes
    template: dict[str, Any]  # the upstream repodata without packages

    @classmethod
    def build(cls, root: Path, count: int, offset: int = 0) -> RecordPool:
        """``count`` records, from the ``offset``-th in name order. Generated files are the same
        bytes each time: tests sharing a blob store take different records."""
        source = json.loads(R_LINUX_64.read_bytes())
        wanted = set(_first_names(source, offset + count)[offset:])
        channel = build_channel(R_LINUX_64, root, select=wanted)
        repodata = json.loads((root / SUBDIR / "repodata.json").read_bytes())
        template = {k: v for k, v in repodata.items() if k not in ("packages", "packages.conda")}
        return cls(root, dict(channel.records), template)

    @property
    def names(self) -> list[str]:
        return sorted(self.records)

    def publish(self, filenames: Iterable[str]) -> dict[str, str]:
        """Make the upstream list exactly ``filenames``; returns filename -> sha256."""
        chosen = set(filenames)
        repodata: dict[str, Any] = {**self.template, "packages": {}, "packages.conda": {}}
        for filename in sorted(chosen):
            key = "packages.conda" if filename.endswith(".conda") else "packages"
            repodata[key][filename] = self.records[filename]
        write_repodata(self.root / SUBDIR, repodata)
        return {fn: str(self.records[fn]["sha256"]) for fn in chosen}

    def path(self, filename: str) -> str:
        """The path of a package file as the upstream logs it."""
        return f"{SUBDIR}/{filename}"


def _first_names(repodata: dict[str, Any], count: int) -> list[str]:
    names = sorted([*repodata.get("packages", {}), *repodata.get("packages.conda", {})])
    assert len(names) >= count, "the real repodata has fewer records than asked"
    return names[:count]


def package_downloads(upstream: Upstream, start: int = 0, end: int | None = None) -> list[str]:
    """Package files whose body was sent completely, in ``requests[start:end]``."""
    with upstream._lock:
        entries = list(upstream.requests[start:end])
    return [
        r.path.split("/", 1)[1]
        for r in entries
        if r.status == 200 and r.complete and r.method == "GET" and _is_package(r.path)
    ]


def package_requests(upstream: Upstream, start: int = 0) -> list[str]:
    """Package files asked for (any status, any completeness) from ``requests[start:]``."""
    with upstream._lock:
        entries = list(upstream.requests[start:])
    return [r.path.split("/", 1)[1] for r in entries if _is_package(r.path)]


def log_length(upstream: Upstream) -> int:
    with upstream._lock:
        return len(upstream.requests)


def _is_package(path: str) -> bool:
    return path.endswith((".conda", ".tar.bz2"))


def wait_for(
    predicate: Callable[[], Any],
    what: str,
    *,
    timeout: float = 60.0,
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def get_run(client: httpx.Client, run_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def wait_run(
    client: httpx.Client,
    run_id: int,
    *,
    states: tuple[str, ...] = FINAL,
    timeout: float = 90.0,
    alive: Callable[[], None] | None = None,
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = get_run(client, run_id)
        return run if run["state"] in states else None

    result: dict[str, Any] = wait_for(
        done, f"run {run_id} to be {'/'.join(states)}", timeout=timeout, alive=alive
    )
    return result


def step(run: dict[str, Any], name: str, *, saved: bool = True) -> dict[str, Any]:
    """A step of the run. With ``saved=False`` a run whose steps are not saved yet (they are, at
    its first heartbeat) gives a pending step instead of failing."""
    for entry in run["steps"]:
        if entry["name"] == name:
            return dict(entry)
    if not saved and not run["steps"]:
        return {"name": name, "state": "pending", "done": 0, "total": None}
    raise AssertionError(f"run {run['id']} has no step {name!r}: {run['steps']}")


def run_logs(client: httpx.Client, run_id: int, after: int = 0) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/runs/{run_id}/logs", params={"after": after})
    assert response.status_code == 200, response.text
    lines: list[dict[str, Any]] = response.json()
    return lines


def served_records(client: httpx.Client, channel: str, subdir: str = SUBDIR) -> dict[str, str]:
    """What the channel serves for ``subdir`` (its index files checked to agree); {} if none."""
    found = stable_snapshot(client, channel, subdir)
    return {} if found is None else dict(found.records)


def blob_shas(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "blobs").glob("??/??/*")}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create_mirror(client: httpx.Client, name: str, source: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "source": source,
        "mode": "active",
        "subdirs": [SUBDIR, "noarch"],
        "schedule": "",
        **fields,
    }
    response = client.post("/api/v1/mirrors", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def start_run(client: httpx.Client, mirror: str) -> int:
    response = client.post(f"/api/v1/mirrors/{mirror}/runs")
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def check_served_exactly(server: ServerProcess, mirror: str, expected: dict[str, str]) -> None:
    """The channel holds and serves exactly ``expected``; every file downloads whole."""
    server.wait_published(mirror)
    artifacts = server.artifacts(mirror)
    assert {a["filename"]: a["sha256"] for a in artifacts} == expected
    with server.client() as client:
        check_channel(client, mirror, artifacts, blob_dir=server.data_dir / "blobs", exact=True)
        assert served_records(client, mirror) == expected
