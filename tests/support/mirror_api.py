"""Mirrors and policies driven over the REST API of a live server (functional tests).

mirror = make_mirror(live, source="file:///…/up", mode="passive", subdirs=["linux-64"])
run = run_mirror(live, mirror)                 # starts a run, waits for it to end
published(live, channel)                       # {subdir: {filename: record}}
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.support.server import ADMIN_PASSWORD, LiveServer

API = "/api/v1"
FINAL = ("completed", "failed", "stopped")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_ADMINS: dict[str, httpx.Client] = {}


def admin(live: LiveServer) -> httpx.Client:
    """A client signed in as the admin with basic auth (one per server)."""
    client = _ADMINS.get(live.url)
    if client is None or client.is_closed:
        client = _ADMINS[live.url] = live.client(auth=("admin", ADMIN_PASSWORD))
    return client


def make_mirror(
    live: LiveServer,
    *,
    source: str,
    mode: str = "passive",
    subdirs: list[str] | None = None,
    name: str | None = None,
    channel: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name or unique("m"),
        "source": source,
        "mode": mode,
        "subdirs": subdirs or ["linux-64", "noarch"],
        "schedule": "",
        **fields,
    }
    if channel is not None:
        body["channel"] = channel
    response = admin(live).post(f"{API}/mirrors", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def start_run(live: LiveServer, mirror: str) -> dict[str, Any]:
    response = admin(live).post(f"{API}/mirrors/{mirror}/runs")
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()
    return data


def wait_run(live: LiveServer, run_id: int, timeout: float = 120) -> dict[str, Any]:
    client = admin(live)
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = client.get(f"{API}/runs/{run_id}").json()
        if run["state"] in FINAL:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not end within {timeout}s: {run}")
        time.sleep(0.05)


def run_mirror(
    live: LiveServer, mirror: str, *, expect: str = "completed", channel: str | None = None
) -> dict[str, Any]:
    """Run ``mirror`` now and wait for the run (and the channel's publication) to end."""
    run = wait_run(live, start_run(live, mirror)["id"])
    assert run["state"] == expect, run
    if channel is not None and expect == "completed":
        live.wait_published(channel)
    return run


def run_logs(live: LiveServer, run_id: int) -> list[dict[str, Any]]:
    response = admin(live).get(f"{API}/runs/{run_id}/logs", params={"limit": 5000})
    assert response.status_code == 200, response.text
    lines: list[dict[str, Any]] = response.json()
    return lines


def published(live: LiveServer, channel: str, subdir: str) -> dict[str, dict[str, Any]]:
    """The records of ``channel``'s published ``subdir/repodata.json`` (filename -> record)."""
    response = admin(live).get(f"/conda/{channel}/{subdir}/repodata.json")
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    doc = response.json()
    return {**doc.get("packages", {}), **doc.get("packages.conda", {})}


def published_names(live: LiveServer, channel: str, subdirs: list[str]) -> dict[str, set[str]]:
    return {sd: set(published(live, channel, sd)) for sd in subdirs}


def settled(
    live: LiveServer, channel: str, subdirs: list[str], want: dict[str, set[str]]
) -> dict[str, set[str]]:
    """The published filenames, read again for a moment while they differ from ``want``: the
    index lookups of the conda endpoint are cached for ``ttl`` (2 s), and a read racing the
    publisher's switch can keep the previous index that long (see the report of these tests)."""
    deadline = time.monotonic() + 3
    while True:
        found = published_names(live, channel, subdirs)
        if found == want or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def make_policy(live: LiveServer, definition: dict[str, Any], name: str | None = None) -> str:
    name = name or unique("p")
    response = admin(live).post(f"{API}/policies", json={"name": name, "definition": definition})
    assert response.status_code == 201, response.text
    return name


def assign(
    live: LiveServer, policy: str, *, mirror: str | None = None, channel: str | None = None
) -> None:
    body = {"mirror": mirror} if mirror else {"channel": channel}
    response = admin(live).post(f"{API}/policies/{policy}/assignments", json=body)
    assert response.status_code == 201, response.text


def unassign(live: LiveServer, policy: str, *, mirror: str) -> None:
    response = admin(live).delete(f"{API}/policies/{policy}/assignments", params={"mirror": mirror})
    assert response.status_code == 204, response.text


def dry_run(live: LiveServer, policy: str, channel: str) -> dict[str, Any]:
    response = admin(live).post(f"{API}/policies/{policy}/dry-run", json={"channel": channel})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def explain(live: LiveServer, channel: str, spec: str, subdir: str) -> list[dict[str, Any]]:
    response = admin(live).get(
        f"{API}/policies/explain", params={"channel": channel, "spec": spec, "subdir": subdir}
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found
