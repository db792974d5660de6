"""Search test data: real package names and real packages (tests/data/PROVENANCE.md).

- records of Anaconda's ``r`` channel (``repodata/r-linux-64``), admitted as a passive mirror's
  records are (listed, servable, no bytes), with their real names, versions and licences;
- real packages (``packages/``) with real summaries: flask ("A microframework…"), quetz's
  ``test-package`` and ``other-package`` ("Composable command line interface toolkit"),
  conda-forge's ``xtensor-io`` ("…the C++ tensor algebra library"), ``mock``.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.intake import ScanReason, admit_rows
from stockade.channels.models import Channel
from stockade.channels.scanstate import ArtifactSource
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.db.engine import transaction
from tests.conftest import TESTDATA
from tests.integration.conftest import add_package

R_NAMES = (
    "r-base",
    "r-ggplot2",
    "r-ggvis",
    "r-jsonlite",
    "r-rjson",
    "r-rjsonio",
    "r-httr",
    "r-dplyr",
    "r-data.table",
    "r-rcpp",
    "r-rcpparmadillo",
    "r-rcppeigen",
    "r-rcpproll",
    "r-rcurl",
    "r-xml2",
    "r-plotly",
    "r-shiny",
    "r-stringr",
    "r-stringi",
    "r-stringdist",
)
PACKAGES = (
    "flask-0.11.1-py_0.tar.bz2",
    "other-package-0.2-0.conda",
    "test-package-0.2-0.tar.bz2",
    "xtensor-io-0.10.3-hb585cf6_0.tar.bz2",
    "mock-2.0.0-py37_1000.conda",
)


@cache
def r_records() -> list[dict[str, Any]]:
    """Every record of ``R_NAMES`` in the real r channel (linux-64)."""
    data = orjson.loads((TESTDATA / "repodata" / "r-linux-64" / "repodata.json").read_bytes())
    return [
        {"filename": fn, **rec} for fn, rec in data["packages"].items() if rec["name"] in R_NAMES
    ]


def channel_id(container: Container, name: str) -> int:
    with container.read_factory() as session:
        found = session.scalar(select(Channel.id).where(Channel.name == name))
    assert found is not None
    return found


def admit_records(container: Container, channel: str, records: list[dict[str, Any]]) -> None:
    rows = [
        {
            "channel_id": channel_id(container, channel),
            "subdir": rec.get("subdir", "linux-64"),
            "filename": rec["filename"],
            "name": rec["name"],
            "version": rec["version"],
            "build": rec["build"],
            "build_number": rec.get("build_number", 0),
            "format": "tar.bz2",
            "sha256": rec.get("sha256") or hashlib.sha256(rec["filename"].encode()).hexdigest(),
            "md5": rec["md5"],
            "size": rec["size"],
            "license": rec.get("license"),
            "record_json": orjson.dumps(
                {k: v for k, v in rec.items() if k != "filename"}, option=orjson.OPT_SORT_KEYS
            ),
            "indexed_timestamp": 0,
            "source": ArtifactSource.MIRROR,
        }
        for rec in records
    ]
    with transaction(container.factory) as session:
        target = session.scalar(select(Channel).where(Channel.name == channel))
        assert target is not None
        admit_rows(session, target, rows, stored=False, reason=ScanReason.MIRROR)


def fill(
    container: Container,
    admin: Principal,
    channel: str,
    *,
    privacy: str = "public",
    records: bool = True,
) -> None:
    """A channel with the real packages (and the r names), published (so indexed)."""
    with transaction(container.factory) as session:
        ChannelService(session).create(admin, channel, privacy=privacy)
    if records:
        admit_records(container, channel, r_records())
    for name in PACKAGES:
        add_package(container, admin, channel, Path(TESTDATA / "packages" / name))
    publish(container)


def publish(container: Container) -> None:
    while container.publisher.run_pending():
        pass
