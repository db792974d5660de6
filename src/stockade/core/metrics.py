"""Prometheus metrics (prometheus-client): what this process counts, and one scrape of them all.

Counters and histograms are made on first use (nothing happens at import time) and counted where
the thing happens: HTTP requests in ``web/middleware.py``, publications in
``channels/publication.py``, mirror runs in ``mirroring/sync.py``, scan verdicts in
``scanning/recording.py`` (after the verdict's commit), feed syncs in ``vulns/feed_state.py``.
Gauges read from the database (job queues) are not kept here: a collector asks the database at
scrape time (``web/metrics.py``), so several processes never count them twice.

Several worker processes (``stockade serve --workers N``): ``PROMETHEUS_MULTIPROC_DIR`` names a
private folder (``DATA_DIR/metrics``, emptied at each start by :func:`prepare_multiprocess_dir`)
where each process keeps its values; a scrape of any one worker adds up every process's files,
those of workers that died included (their counts happened). The variable must be set before
``prometheus_client`` is first imported in a process: the supervisor sets it before it starts
the workers.

Labels never carry what a request names: routes are templates (``/api/v1/channels/{name}``),
methods are a fixed set, so a private channel's name or a URL token never reaches a label.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram
    from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
#: Seconds: from a cached index answer (~1 ms) to a large upload or a slow page.
DURATION_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Seconds from a publication asked for to its index switched.
PUBLICATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class Metrics:
    http_requests: Counter
    http_duration: Histogram
    http_bytes: Counter
    publication_latency: Histogram
    mirror_runs: Counter
    scan_verdicts: Counter
    feed_syncs: Counter

    def collectors(self) -> tuple[Collector, ...]:
        return (
            self.http_requests,
            self.http_duration,
            self.http_bytes,
            self.publication_latency,
            self.mirror_runs,
            self.scan_verdicts,
            self.feed_syncs,
        )


@cache
def metrics() -> Metrics:
    """This process's metrics (registered nowhere: :func:`scrape` builds a registry per scrape)."""
    from prometheus_client import Counter, Histogram

    return Metrics(
        http_requests=Counter(
            "stockade_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ("method", "route", "status"),
            registry=None,
        ),
        http_duration=Histogram(
            "stockade_http_request_duration_seconds",
            "Time from a request's start to its answer's last byte, by method and route template",
            ("method", "route"),
            buckets=DURATION_BUCKETS,
            registry=None,
        ),
        http_bytes=Counter(
            "stockade_http_response_bytes",
            "Response body bytes sent, by route template (package files: /conda/{path:path})",
            ("route",),
            registry=None,
        ),
        publication_latency=Histogram(
            "stockade_publication_latency_seconds",
            "From the first request of a subdir's publication (the change's transaction, "
            "subdir_indexes.requested_at) to its new index switched in",
            buckets=PUBLICATION_BUCKETS,
            registry=None,
        ),
        mirror_runs=Counter(
            "stockade_mirror_runs", "Mirror runs ended, by outcome", ("outcome",), registry=None
        ),
        scan_verdicts=Counter(
            "stockade_scan_verdicts",
            "Scan verdicts recorded, by verdict (clean, suspicious, malicious, error)",
            ("verdict",),
            registry=None,
        ),
        feed_syncs=Counter(
            "stockade_feed_syncs",
            "Vulnerability feed syncs ended, by outcome (ok, partial, failed, unreachable)",
            ("outcome",),
            registry=None,
        ),
    )


def method_label(method: str) -> str:
    """A request's method as a label: any other word a client sends is ``other``."""
    return method if method in METHODS else "other"


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(path: Path) -> Path:
    """Empty (or make) the folder several worker processes keep their values in (``0700``)."""
    if path.is_dir():
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True)
    return path


def mark_process_dead(pid: int | None = None) -> None:
    """A worker process ends: its live gauges go (its counters stay, they happened)."""
    if not multiprocess():
        return
    from prometheus_client import multiprocess as mp

    # prometheus_client's multiprocess module has no annotations
    mp.mark_process_dead(os.getpid() if pid is None else pid)  # type: ignore[no-untyped-call]


def serve_process_metrics(host: str, port: int) -> None:
    """This process's metrics at ``http://host:port/metrics``, from a thread of prometheus-client
    (``stockade worker``: the jobs it runs are counted in it, not in any web replica)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    for collector in metrics().collectors():
        registry.register(collector)
    start_http_server(port, addr=host, registry=registry)


def scrape(extra: tuple[Collector, ...] = (), accept: str | None = None) -> tuple[bytes, str]:
    """Every metric of this process (or, in multiprocess mode, of every worker process) and
    ``extra`` collectors, encoded for the ``Accept`` header given; returns (body, content type)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        from prometheus_client.multiprocess import MultiProcessCollector

        metrics()  # this process's files exist even before its first request
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated
    else:
        for collector in metrics().collectors():
            registry.register(collector)
    for collector in extra:
        registry.register(collector)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
