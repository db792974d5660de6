"""Prometheus ``/metrics`` (SPEC §11) on a live server: requests counted under their route
template (a private channel's name and a URL token never appear), the job queues read from the
database at scrape time (on both backends), and who may read it (``[metrics] public``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import TESTDATA, own_server
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional

SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


def samples(body: str, name: str) -> dict[str, float]:
    """``labels text -> value`` of one metric's samples."""
    found = {}
    for line in body.splitlines():
        m = SAMPLE.match(line)
        if m and m["name"] == name:
            found[m["labels"] or ""] = float(m["value"])
    return found


def scrape(live: LiveServer) -> str:
    response = live.admin.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def count(body: str, route: str, status: int, method: str = "GET") -> float:
    key = f'method="{method}",route="{route}",status="{status}"'
    return samples(body, "stockade_http_requests_total").get(key, 0.0)


def test_requests_are_counted_under_their_route_template(live_server: LiveServer) -> None:
    name = f"metrics-secret-{uuid.uuid4().hex[:10]}"
    created = live_server.admin.post("/api/v1/channels", json={"name": name, "privacy": "private"})
    assert created.status_code == 201, created.text
    before = scrape(live_server)
    anonymous = live_server.client()
    for _ in range(3):
        assert anonymous.get(f"/api/v1/channels/{name}").status_code in (401, 404)
        assert live_server.admin.get(f"/api/v1/channels/{name}").status_code == 200
        # the conda fast path (no routing) and a token in the URL
        token_url = f"/t/{live_server.admin_token}/conda/{name}/noarch/repodata.json"
        assert anonymous.get(token_url).status_code == 200
        assert anonymous.get(f"/conda/{name}/noarch/repodata.json").status_code in (401, 404)
        assert anonymous.get(f"/nowhere/{name}").status_code == 404
        assert anonymous.request("PROPFIND", "/api/v1/channels").status_code == 405
    after = scrape(live_server)

    template = "/api/v1/channels/{channel:path}"
    assert count(after, template, 200) - count(before, template, 200) >= 3
    conda = "/conda/{path:path}"
    assert count(after, conda, 200) - count(before, conda, 200) >= 3
    assert count(after, "unmatched", 404) - count(before, "unmatched", 404) >= 3
    assert name not in after  # not in any label, of any metric
    assert "PROPFIND" not in after  # a method of the client's own is "other"
    assert (
        count(after, "/api/v1/channels", 405, "other")
        - count(before, "/api/v1/channels", 405, "other")
        >= 3
    )
    assert live_server.admin_token not in after
    sent = samples(after, "stockade_http_response_bytes_total")
    assert sent.get(f'route="{conda}"', 0) > 0
    durations = samples(after, "stockade_http_request_duration_seconds_count")
    assert durations.get(f'method="GET",route="{template}"', 0) >= 3


def test_job_queues_are_read_from_the_database(live_server: LiveServer) -> None:
    """Depth and oldest age per queue, whatever the backend (the queries run on both)."""
    body = scrape(live_server)
    assert samples(body, "stockade_database_up") == {"": 1.0}
    depth = samples(body, "stockade_job_queue_depth")
    queues = (
        "publications",
        "channeldata",
        "scans",
        "mirror_runs",
        "mirror_schedules",
        "webhook_deliveries",
    )
    assert set(depth) == {f'queue="{q}"' for q in queues}
    ages = samples(body, "stockade_job_queue_oldest_age_seconds")
    assert set(ages) == {f'queue="{q}"' for q in queues}
    assert all(v >= 0 for v in [*depth.values(), *ages.values()])


def test_a_publication_and_its_scan_are_counted(live_server: LiveServer) -> None:
    channel = live_server.new_channel(prefix="metrics-pub")
    before = scrape(live_server)
    package = TESTDATA / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"
    assert live_server.upload(channel, package).status_code == 201
    live_server.wait_published(channel)
    after = scrape(live_server)

    def total(body: str, name: str) -> float:
        return sum(samples(body, name).values())

    latency = "stockade_publication_latency_seconds_count"
    assert total(after, latency) > total(before, latency)
    verdicts = "stockade_scan_verdicts_total"
    assert total(after, verdicts) > total(before, verdicts)


def test_metrics_need_system_read_unless_public(live_server: LiveServer) -> None:
    anonymous = live_server.client().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert "stockade_http_requests_total" not in anonymous.text
    user = f"metrics-user-{uuid.uuid4().hex[:8]}"
    password = "metrics-password-1"
    made = live_server.admin.post("/api/v1/users", json={"username": user, "password": password})
    assert made.status_code == 201, made.text
    token = httpx.post(
        f"{live_server.url}/api/v1/tokens",
        json={"name": "scraper", "expires_in_days": 1},
        auth=(user, password),
    ).json()["token"]
    denied = live_server.client(token).get("/metrics")
    assert denied.status_code == 403
    assert denied.json()["status"] == 403
    wrong = live_server.client("stk-" + "x" * 40).get("/metrics")
    assert wrong.status_code == 401


@pytest.fixture(scope="module")  # SQLite only: a setting read by the endpoint
def public_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with own_server("sqlite", tmp_path_factory, "metrics-public", metrics={"public": True}) as live:
        yield live


def test_public_metrics_are_open_to_anyone(public_metrics: LiveServer) -> None:
    response = public_metrics.client().get("/metrics")
    assert response.status_code == 200
    assert "stockade_http_requests_total" in response.text
