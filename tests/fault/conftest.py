"""The fault suite's cluster: started once for the package (every module of ``tests/fault`` runs on
one xdist worker: the ``fault-cluster`` group) and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, cluster


@pytest.fixture(scope="package")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running
    summary = ", ".join(f"{kind} {n}" for kind, n in sorted(running.kills.items())) or "none"
    print(f"\nfault suite: processes killed: {summary}")
