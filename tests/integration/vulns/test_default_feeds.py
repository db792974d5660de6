"""Default feeds (issue 12, item 7): created on the first start, once, hourly; never brought back or
overwritten after an admin changed them; off with ``[vulns] default_feeds = false``; their URLs
replaced here by local files (no test fetches the internet)."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.db.migrate import upgrade
from stockade.db.schedules import ScheduledJob
from stockade.settings import VulnSettings, load_settings
from stockade.vulns.default_feeds import DEFAULT_FEEDS, SEEDED_MARK, seed_default_feeds
from stockade.vulns.feedsync import FeedService
from stockade.vulns.models import VulnEnrichment, VulnFeed
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.tasks import seed_feeds, sync_feed
from tests.conftest import PG_URL, backends
from tests.integration.vulns.support import VULNS
from tests.support.server import fresh_database

CVE = "CVE-2018-1000656"  # flask: NVD record in cves-pypi-aliases.json, alias of PYSEC-2018-66


def local_urls(tmp_path: Path) -> dict[str, str]:
    """Every default feed on a local file: the real NVD and OSV records of the test data."""
    osv_zip = tmp_path / "all.zip"  # as osv.dev ships an ecosystem: one zip of JSON/YAML records
    with zipfile.ZipFile(osv_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for record in sorted((VULNS / "osv-pypi" / "flask").iterdir()):
            archive.write(record, record.name)
    kev = tmp_path / "kev.json"
    entry = {"cveID": CVE, "dateAdded": "2024-01-01", "dueDate": "2024-01-22"}
    kev.write_text(json.dumps({"catalogVersion": "1", "count": 1, "vulnerabilities": [entry]}))
    epss = tmp_path / "epss.csv.gz"
    epss.write_bytes(
        gzip.compress(f"#model_version:v1\ncve,epss,percentile\n{CVE},0.5,0.9\n".encode())
    )
    return {
        "nvd": (VULNS / "nvd-api-2.0" / "cves-pypi-aliases.json").as_uri(),
        "osv-pypi": osv_zip.as_uri(),
        "cisa-kev": kev.as_uri(),
        "epss": epss.as_uri(),
    }


def on(tmp_path: Path) -> VulnSettings:
    return VulnSettings(default_feeds=True, default_feed_urls=local_urls(tmp_path))


def feeds(container: Container) -> dict[str, VulnFeed]:
    with container.factory() as session:
        return {f.name: f for f in session.scalars(select(VulnFeed))}


def test_default_feeds_are_created_once_hourly(container: Container, tmp_path: Path) -> None:
    settings = on(tmp_path)
    assert seed_default_feeds(container.factory, settings) == [f.name for f in DEFAULT_FEEDS]
    made = feeds(container)
    assert {n: f.format for n, f in made.items()} == {
        "nvd": "nvd",
        "osv-pypi": "osv",
        "cisa-kev": "kev",
        "epss": "epss",
    }
    for feed in made.values():
        minute, *rest = feed.schedule.split()
        assert rest == ["*", "*", "*", "*"] and minute.isdigit(), feed.schedule  # hourly
        assert feed.enabled and feed.url == settings.default_feed_urls[feed.name]
        assert feed.next_run_at is not None
        assert utcnow() < feed.next_run_at <= utcnow() + timedelta(hours=1)
    assert seed_default_feeds(container.factory, settings) == []  # the next start
    assert len(feeds(container)) == 4
    with container.factory() as session:
        mark = session.get(ScheduledJob, SEEDED_MARK)
        assert mark is not None and "nvd" in (mark.last_message or "")


def test_a_deleted_or_edited_default_feed_stays_so(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    settings = on(tmp_path)
    seed_default_feeds(container.factory, settings)
    with transaction(container.factory) as session:
        service = FeedService(session)
        service.delete(admin, "epss")
        service.update(admin, "nvd", url=(tmp_path / "kev.json").as_uri(), schedule="0 3 * * *")
    assert seed_default_feeds(container.factory, settings) == []
    after = feeds(container)
    assert "epss" not in after
    assert after["nvd"].url == (tmp_path / "kev.json").as_uri()
    assert after["nvd"].schedule == "0 3 * * *"


def test_default_feeds_off_adds_none_until_turned_on(container: Container, tmp_path: Path) -> None:
    off = VulnSettings(default_feeds=False, default_feed_urls=local_urls(tmp_path))
    assert seed_default_feeds(container.factory, off) == []
    assert feeds(container) == {}
    with container.factory() as session:
        assert session.get(ScheduledJob, SEEDED_MARK) is None  # not seeded: turning on adds them
    assert len(seed_default_feeds(container.factory, on(tmp_path))) == 4


def test_default_feeds_leave_an_existing_feed_of_the_name_or_url(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    settings = on(tmp_path)
    mine = (VULNS / "nvd-api-2.0" / "cves-1999.json").as_uri()
    with transaction(container.factory) as session:
        FeedService(session).create(admin, "nvd", mine, "nvd", schedule="0 2 * * *")
        FeedService(session).create(admin, "kev", settings.default_feed_urls["cisa-kev"], "kev")
    assert seed_default_feeds(container.factory, settings) == ["osv-pypi", "epss"]
    after = feeds(container)
    assert after["nvd"].url == mine and after["nvd"].schedule == "0 2 * * *"
    assert "cisa-kev" not in after


def test_a_seeding_mark_taken_by_another_process_adds_nothing(
    container: Container, tmp_path: Path
) -> None:
    with transaction(container.factory) as session:
        session.add(ScheduledJob(name=SEEDED_MARK, schedule="once", next_run_at=utcnow()))
    assert seed_default_feeds(container.factory, on(tmp_path)) == []
    assert feeds(container) == {}


@pytest.fixture(params=backends())
def started(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Container]:
    """A container whose settings turn the default feeds on, at local URLs."""
    with fresh_database(str(request.param), tmp_path, PG_URL) as url:
        upgrade(url)
        urls = local_urls(tmp_path)
        settings = load_settings(
            data_dir=tmp_path,
            database_url=url,
            vulns={"default_feeds": True, "default_feed_urls": urls},
        )
        built = Container.build(settings)
        built.bootstrap()
        yield built
        built.close()


def test_the_first_start_adds_them_and_they_sync_from_local_urls(started: Container) -> None:
    seed_feeds(started)  # what the feed loop of every runtime does when it starts
    made = feeds(started)
    assert sorted(made) == sorted(f.name for f in DEFAULT_FEEDS)
    for name in ("nvd", "osv-pypi", "cisa-kev", "epss"):
        assert sync_feed(started, made[name].id) is not None, feeds(started)[name].last_error
        assert feeds(started)[name].last_status == "ok", feeds(started)[name].last_error
    with started.factory() as session:
        osv = session.scalar(select(func.count()).where(VulnRow.feed_id == made["osv-pypi"].id))
        assert osv == len(list((VULNS / "osv-pypi" / "flask").iterdir()))  # the zip's records
        enrichment = session.get(VulnEnrichment, CVE)
        assert enrichment is not None and enrichment.kev and enrichment.epss == 0.5


def test_test_settings_turn_the_default_feeds_off(container: Container) -> None:
    """The suite's own guard: servers and containers built from Settings() in tests add none."""
    assert container.settings.vulns.default_feeds is False
    seed_feeds(container)
    assert feeds(container) == {}
