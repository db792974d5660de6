"""Mirrored packages have summaries (issue 12, item 13): an active run takes them from the
downloaded files' ``info/about.json``, a passive run from the upstream's ``channeldata.json``;
channel pages, the API and search read them from the artifact rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest
from rattler import Version
from sqlalchemy import delete, select, update

from stockade.auth.principal import Principal
from stockade.channels.browse import BrowseService
from stockade.channels.models import Artifact, PackageContent
from stockade.channels.service import ChannelService
from stockade.conda.archive import ValidationLimits, inspect_package
from stockade.conda.channeldata import build_channeldata_json, channel_record, summarize_packages
from stockade.container import Container
from stockade.core.clock import now_ms
from stockade.db.engine import transaction
from stockade.mirroring.models import RunState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.search.service import SearchService
from stockade.settings import OutboundSettings
from tests.support.upstream import Upstream

SUBDIRS = ["noarch", "linux-fake"]


def _abouts(channel: Path, subdirs: list[str]) -> dict[str, dict[str, object]]:
    """filename -> the real info/about.json of every file the channel's repodata lists."""
    found: dict[str, dict[str, object]] = {}
    for subdir in subdirs:
        repodata = json.loads((channel / subdir / "repodata.json").read_text())
        for key in ("packages", "packages.conda"):
            for filename in repodata.get(key, {}):
                info = inspect_package(
                    channel / subdir / filename,
                    filename,
                    limits=ValidationLimits(),
                    now_ms=now_ms(),
                )
                found[filename] = dict(info.about)
    return found


def _write_channeldata(channel: Path, subdirs: list[str]) -> dict[str, str | None]:
    """The channel's channeldata.json as conda-index writes it (Stockade's own writer, from the
    files' real about.json); returns name -> summary."""
    records = []
    for subdir in subdirs:
        repodata = json.loads((channel / subdir / "repodata.json").read_text())
        for key in ("packages", "packages.conda"):
            for filename, record in repodata.get(key, {}).items():
                info = inspect_package(
                    channel / subdir / filename,
                    filename,
                    limits=ValidationLimits(),
                    now_ms=now_ms(),
                )
                rec = channel_record(subdir, orjson.dumps(record), info.about, info.run_exports)
                assert rec is not None
                records.append(rec)
    packages = summarize_packages(records, version_key=Version)
    (channel / "channeldata.json").write_bytes(build_channeldata_json(packages, subdirs))
    return {p.name: p.summary.strip() if p.summary else None for p in packages}  # kept stripped


def _mirror_and_run(
    container: Container, admin: Principal, name: str, source: str, mode: str, subdirs: list[str]
) -> None:
    container.settings.outbound = OutboundSettings(allow_loopback=True)  # the test upstream
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets, container.settings.outbound.policy()).create(
            admin, name, MirrorSpec(source=source, mode=mode, subdirs=subdirs, schedule="")
        )
        run_id = RunService(session, container.secrets).request(admin, name).id
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None
    assert outcome.state == RunState.COMPLETED, outcome.summary


def _rows(container: Container, channel: str) -> dict[str, Artifact]:
    with container.factory() as session:
        ch = ChannelService(session).find(channel)
        assert ch is not None
        rows = session.scalars(select(Artifact).where(Artifact.channel_id == ch.id)).all()
        session.expunge_all()
    return {a.filename: a for a in rows}


def test_active_mirror_takes_summaries_from_about_json(
    container: Container, admin: Principal, testdata: Path
) -> None:
    channel = (testdata / "channels" / "test-recipes").resolve()
    abouts = _abouts(channel, SUBDIRS)
    _mirror_and_run(container, admin, "recipes", channel.as_uri(), "active", SUBDIRS)
    rows = _rows(container, "recipes")
    assert rows and set(rows) <= set(abouts)
    for filename, artifact in rows.items():
        about = abouts[filename]
        assert artifact.summary == (str(about["summary"]).strip() if about.get("summary") else None)
        if about.get("license") and not json.loads(artifact.record_json).get("license"):
            assert artifact.license == about["license"]
    summary = rows["dependent-2.0-0.conda"].summary
    assert summary == "Depends on co-built dependency output; generic pin/remove fixture"
    # the channel pages and search read them (once the files' scans let them be served)
    while container.scans.run_pending():
        pass
    while container.publisher.run_pending():  # search finds what the published index serves
        pass
    with container.factory() as session:
        browse = BrowseService(session)
        ch = ChannelService(session).find("recipes")
        assert ch is not None
        listed = {p.name: p.summary for p in browse.packages(ch).packages}
        assert listed["dependent"] == summary
        hits = SearchService(session).search(admin, "dependent").hits
        assert {h.name: h.summary for h in hits}["dependent"] == summary


# One backend (CI time): which summaries a mirrored record gets is decided in Python, the same on
# both databases; the rows they are stored in are written on both backends by the sync smoke tests.
@pytest.mark.one_backend
def test_passive_mirror_takes_summaries_from_channeldata(
    container: Container, admin: Principal, testdata: Path, tmp_path: Path
) -> None:
    root = tmp_path / "recipes"
    shutil.copytree(testdata / "channels" / "test-recipes", root)
    summaries = _write_channeldata(root, SUBDIRS)
    assert (
        summaries["arch-package"] == "Architecture-specific package for fake-subdir search/install"
    )
    with Upstream(root) as up:
        _mirror_and_run(container, admin, "web", up.url, "passive", SUBDIRS)
        assert any(r.path == "channeldata.json" for r in up.requests)
    _mirror_and_run(container, admin, "disk", root.as_uri(), "passive", SUBDIRS)
    for channel in ("web", "disk"):
        rows = _rows(container, channel)
        assert rows
        for artifact in rows.values():
            assert artifact.summary == summaries[artifact.name], artifact.filename
    while container.publisher.run_pending():
        pass
    with container.factory() as session:
        hits = SearchService(session).search(admin, "arch-package").hits
    assert {h.channel: h.summary for h in hits if h.name == "arch-package"} == {
        "web": summaries["arch-package"],
        "disk": summaries["arch-package"],
    }


# One backend (CI time): which summaries a mirrored record gets is decided in Python, the same on
# both databases; the rows they are stored in are written on both backends by the sync smoke tests.
@pytest.mark.one_backend
def test_passive_mirror_without_summaries_upstream(
    container: Container, admin: Principal, testdata: Path
) -> None:
    """conda-index's real channeldata.json with null summaries, and a channel with none at all:
    the runs complete, the records have no summary."""
    hotfix = (testdata / "channels" / "index-hotfix").resolve()
    _mirror_and_run(container, admin, "hotfix", hotfix.as_uri(), "passive", ["osx-64"])
    recipes = (testdata / "channels" / "test-recipes").resolve()
    assert not (recipes / "channeldata.json").exists()
    _mirror_and_run(container, admin, "plain", recipes.as_uri(), "passive", ["noarch"])
    for channel in ("hotfix", "plain"):
        rows = _rows(container, channel)
        assert rows
        assert {a.summary for a in rows.values()} == {None}


# One backend (CI time): which summaries a mirrored record gets is decided in Python, the same on
# both databases; the rows they are stored in are written on both backends by the sync smoke tests.
@pytest.mark.one_backend
def test_records_mirrored_without_summaries_get_them_at_the_next_change(
    container: Container, admin: Principal, testdata: Path, tmp_path: Path
) -> None:
    """Records mirrored before summaries were kept (summary NULL, files never read) get theirs
    at the next run that changes anything, in both modes."""
    root = tmp_path / "recipes"
    shutil.copytree(testdata / "channels" / "test-recipes", root)
    summaries = _write_channeldata(root, ["noarch"])
    abouts = _abouts(root, ["noarch"])
    _mirror_and_run(container, admin, "act", root.as_uri(), "active", ["noarch"])
    _mirror_and_run(container, admin, "pas", root.as_uri(), "passive", ["noarch"])
    with transaction(container.factory) as session:  # as an older version left them
        session.execute(update(Artifact).values(summary=None))
        session.execute(delete(PackageContent))
    repodata_path = root / "noarch" / "repodata.json"
    repodata = json.loads(repodata_path.read_text())
    del repodata["packages.conda"]["unsatisfiable-1.0-0.conda"]  # the upstream changes
    repodata_path.write_text(json.dumps(repodata))
    for name in ("act", "pas"):
        with transaction(container.factory) as session:
            run_id = RunService(session, container.secrets).request(admin, name).id
        outcome = container.mirror_sync().execute(run_id)
        assert outcome is not None
        assert outcome.state == RunState.COMPLETED and outcome.summary != "unchanged"
        rows = _rows(container, name)
        assert "unsatisfiable-1.0-0.conda" not in rows
        for artifact in rows.values():
            # active: the file's own about.json; passive: channeldata (the newest version's)
            if name == "act":
                expected = str(abouts[artifact.filename].get("summary") or "").strip() or None
            else:
                expected = summaries[artifact.name]
            assert artifact.summary == expected, (name, artifact.filename)
