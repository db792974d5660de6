"""Shared fixtures: the database backends (SQLite always, PostgreSQL when CI provides it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _pytest.nodeid import coerce_node_id

from tests.support.server import LiveServer, fresh_database, run_server
from tests.support.shared_ssl import share_default_ssl_context

pytest_plugins = ["tests.support.s3"]  # the session's S3 server (moto), for the S3 blob store

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "tests" / "data"  # the one path to the test data (tests/data/PROVENANCE.md)
PG_URL = os.environ.get("STOCKADE_TEST_PG_URL")
# No test fetches the internet's default vulnerability feeds: servers and containers built from
# Settings() start without them; a test that wants them passes vulns={"default_feeds": True}.
os.environ.setdefault("STOCKADE_VULNS__DEFAULT_FEEDS", "false")
# Password hashes at argon2id's floor (OWASP's minimum: 19 MiB, 2 passes, 1 lane): ~0.03 s of CPU
# each instead of ~0.2 s, over the suite's thousands of sign-ins and new accounts (CI time).
# tests/unit/auth/test_password_hashing.py checks the production defaults.
os.environ.setdefault("STOCKADE_AUTH__PASSWORD_HASH__TIME_COST", "2")
os.environ.setdefault("STOCKADE_AUTH__PASSWORD_HASH__MEMORY_KIB", "19456")
os.environ.setdefault("STOCKADE_AUTH__PASSWORD_HASH__PARALLELISM", "1")
# Mirror runs execute in the worker's own process: starting one for a run of its own costs about a
# second of CPU, over the suite's hundreds of runs (CI time). The default (``auto``: a mirror's
# first run and big ones apart) is tested by tests/functional/test_mirror_apart.py.
os.environ.setdefault("STOCKADE_MIRROR__RUN_APART", "never")
# httpx clients made with the default verification share one SSL context (CI time: building one
# costs ~20 ms of CPU, and the tests make tens of thousands of clients).
share_default_ssl_context()


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"test data not found at {TESTDATA}")
    return TESTDATA


@pytest.fixture(scope="session", params=backends())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def own_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, label: str, **overrides: Any
) -> Iterator[LiveServer]:
    """A live server on a fresh ``backend`` database and data folder ``<label>-<backend>``,
    with settings ``overrides`` (as :func:`run_server` takes them)."""
    data_dir = tmp_path_factory.mktemp(f"{label}-{backend}")
    with (
        fresh_database(backend, data_dir, PG_URL, migrated=True) as db_url,
        run_server(data_dir, db_url, **overrides) as live,
    ):
        yield live


@pytest.fixture(scope="session")
def live_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with own_server(backend, tmp_path_factory, "server") as live:
        yield live


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Some tests run against SQLite only (CI keeps to its time budget):

    - browser tests: what a page reads and writes runs on both backends in the HTTP page tests,
      while Chromium checks rendering, scripts and assets, which do not depend on the database;
    - command-line tests (``test_cli*.py``): the API calls they make run on both backends in the
      API tests, while these check what the CLI prints and how it fails;
    - tests marked ``one_backend`` (a reason in the module).

    And some run on PostgreSQL only when it is there: tests marked ``one_config``, whose subject
    does not depend on the deployment (policy evaluation, input validation, URL guards...). With
    ``STOCKADE_TEST_CLUSTER=1`` (``make test``) the PostgreSQL leg of the functional suite is the
    cluster configuration (:mod:`tests.support.cluster_mode`), so these run once, there.
    """
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        # the backend fixture, or a fixture of a module's own parametrized by backends()
        on_pg = callspec is not None and "postgresql" in callspec.params.values()
        on_sqlite = callspec is not None and "sqlite" in callspec.params.values()
        module = getattr(getattr(item, "module", None), "__name__", "")
        sqlite_only = (
            item.get_closest_marker("browser") is not None
            or item.get_closest_marker("one_backend") is not None
            or module.rsplit(".", 1)[-1].startswith("test_cli")
        )
        once = PG_URL and item.get_closest_marker("one_config") is not None and not sqlite_only
        (dropped if (on_pg and sqlite_only) or (on_sqlite and once) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    _keep_xdist_groups(items)


def _keep_xdist_groups(items: list[pytest.Item]) -> None:
    """``--dist loadgroup``: pytest-xdist 3.8 tags a grouped test by setting ``item._nodeid`` to
    ``nodeid@group``, which pytest 9.2 no longer reads (its node id is ``item._id``): the groups
    were lost, and each worker started its own copy of a module's live servers. Put the tag where
    pytest reads it (runs after xdist's hook: trylast)."""
    for item in items:
        tagged = item.__dict__.get("_nodeid")
        if isinstance(tagged, str) and "@" in tagged and item.nodeid != tagged:
            item._id = coerce_node_id(tagged)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the cluster configuration's S3 server and redis-server of this test process (an
    xdist worker ends without running ``atexit`` handlers: they were left running)."""
    from tests.support import cluster_mode

    cluster_mode.SERVICES.stop()
