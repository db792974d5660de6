"""Issue 11 item 9: one bad patch (or any failing build) never wedges publication."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from stockade.audit.models import AuditEvent
from stockade.auth.principal import Principal
from stockade.channels.models import Channel, RepodataPatch, SubdirIndex
from stockade.channels.notices import NoticeService
from stockade.channels.patching import PatchService
from stockade.channels.publication import PublicationService
from stockade.channels.publication_state import backoff, failing_publications
from stockade.conda.patches import PatchInvalidError
from stockade.container import Container
from stockade.db.engine import transaction
from tests.factories.packages import PackageSpec, build
from tests.integration.conftest import add_package, index_row, make_channel

FILE = "pkg-1.0-0.conda"


def _record(container: Container, channel: str, subdir: str = "noarch") -> dict[str, Any]:
    row = index_row(container, channel, subdir)
    assert row.repodata_sha256 is not None
    data = orjson.loads(container.blobs.read_bytes(row.repodata_sha256))
    return dict(data["packages.conda"][FILE])


def _channel_with_package(container: Container, admin: Principal, tmp_path: Path) -> None:
    make_channel(container, admin, "team")
    add_package(container, admin, "team", build(tmp_path, PackageSpec(name="pkg")))
    container.publisher.run_pending()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timestamp": 10**40}, "timestamp"),
        ({"timestamp": -5}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"depends": "zlib"}, "depends"),
        ({"noarch": ["x"]}, "noarch"),
        ({"license": {}}, "license"),
        ({"x_custom": 2**64}, "x_custom"),
        ({"run_exports": {"weak": [1]}}, "run_exports"),
    ],
)
def test_bad_patch_values_are_refused_naming_the_field(
    container: Container, admin: Principal, tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    _channel_with_package(container, admin, tmp_path)
    with transaction(container.factory) as session, pytest.raises(PatchInvalidError) as error:
        PatchService(session).set(admin, "team", "noarch", FILE, changes=changes)
    assert error.value.extra["field"] == field
    assert field in error.value.detail
    with container.read_factory() as session:
        assert session.scalars(select(RepodataPatch)).all() == []


def test_a_stored_bad_patch_does_not_wedge_publication(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """Patches stored before values were checked: their changes are left out, said so."""
    _channel_with_package(container, admin, tmp_path)
    with transaction(container.factory) as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.name == "team"))
        session.add(
            RepodataPatch(
                channel_id=channel_id,
                subdir="noarch",
                filename=FILE,
                changes={"timestamp": 10**40, "depends": ["zlib"]},
                revoked=True,
            )
        )
        session.add(  # a filename no patch may name: left out entirely
            RepodataPatch(channel_id=channel_id, subdir="noarch", filename="x.zip", revoked=True)
        )
        PatchService(session).set(admin, "team", "noarch", "other-1.0-0.conda", changes={})
    assert container.publisher.run_pending() == 1
    row = index_row(container, "team", "noarch")
    assert row.published_rev == row.requested_rev and row.failure is None
    warnings = sorted(row.warnings)
    assert len(warnings) == 2
    assert "pkg-1.0-0.conda: its field changes were left out" in warnings[0]
    assert "timestamp" in warnings[0]
    assert "x.zip: it was left out" in warnings[1]
    record = _record(container, "team")
    assert record["revoked"] is True  # the revocation of the bad patch still applies
    assert record["timestamp"] != 10**40 and "zlib" not in record["depends"]


def test_a_failing_publication_is_recorded_backs_off_and_blocks_nothing(
    container: Container,
    admin: Principal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _channel_with_package(container, admin, tmp_path)
    make_channel(container, admin, "other")
    add_package(
        container, admin, "team", build(tmp_path, PackageSpec(name="lx", subdir="linux-64"))
    )
    add_package(container, admin, "team", build(tmp_path, PackageSpec(name="pkg", version="2")))
    add_package(container, admin, "other", build(tmp_path, PackageSpec(name="o")))
    real = PublicationService._build

    def broken(self: PublicationService, index_id: int, channel_id: int, subdir: str, rev: int):  # type: ignore[no-untyped-def]
        if subdir == "linux-64":
            raise OverflowError("int too big to convert")
        return real(self, index_id, channel_id, subdir, rev)

    monkeypatch.setattr(PublicationService, "_build", broken)
    with caplog.at_level(logging.WARNING, logger="stockade.publisher"):
        container.publisher.run_pending()
        container.publisher.run_pending()  # backing off: not tried again
    failing = index_row(container, "team", "linux-64")
    assert failing.failure == "OverflowError: int too big to convert"
    assert failing.failures == 1 and failing.retry_at is not None
    assert failing.published_rev < failing.requested_rev
    assert sum(1 for r in caplog.records if r.exc_info) == 1  # one traceback, not one per poll
    # the rest of the channel and other channels published
    for channel, subdir in (("team", "noarch"), ("other", "noarch")):
        row = index_row(container, channel, subdir)
        assert row.published_rev == row.requested_rev
    with container.read_factory() as session:
        listed = failing_publications(session)
    assert [(f.channel, f.subdir) for f in listed] == [("team", "linux-64")]
    # a new change is tried at once; it fails again: counted, still one traceback
    add_package(
        container, admin, "team", build(tmp_path, PackageSpec(name="ly", subdir="linux-64"))
    )
    with caplog.at_level(logging.WARNING, logger="stockade.publisher"):
        container.publisher.run_pending()
    assert index_row(container, "team", "linux-64").failures == 2
    assert sum(1 for r in caplog.records if r.exc_info) == 1
    # fixed: the next try publishes and clears the failure
    monkeypatch.setattr(PublicationService, "_build", real)
    with transaction(container.factory) as session:
        session.execute(update(SubdirIndex).values(retry_at=None))
    container.publisher.run_pending()
    fixed = index_row(container, "team", "linux-64")
    assert fixed.failure is None and fixed.failures == 0
    assert fixed.published_rev == fixed.requested_rev


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [4, 8, 16]
    assert backoff(50).total_seconds() == 900


def test_patches_and_notices_are_audited(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    _channel_with_package(container, admin, tmp_path)
    with transaction(container.factory) as session:
        patches = PatchService(session)
        patches.set(admin, "team", "noarch", FILE, changes={"depends": ["a"]})
        patches.set(admin, "team", "noarch", FILE, changes={"depends": ["b"]}, revoked=True)
        patches.clear(admin, "team", "noarch", FILE)
        notices = NoticeService(session, container.blobs)
        notice = notices.create(admin, "team", "maintenance tonight", level="warning")
        notices.delete(admin, "team", notice.id)
    with container.read_factory() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.event_type.in_(
                    [
                        "patch.create",
                        "patch.update",
                        "patch.delete",
                        "notice.create",
                        "notice.delete",
                    ]
                )
            )
            .order_by(AuditEvent.seq)
        ).all()
    got = [(e.event_type, e.target_name, e.before, e.after) for e in events]
    target = f"team/noarch/{FILE}"
    first = {"changes": {"depends": ["a"]}, "revoked": False, "removed": False}
    second = {"changes": {"depends": ["b"]}, "revoked": True, "removed": False}
    assert got[:3] == [
        ("patch.create", target, None, first),
        ("patch.update", target, first, second),
        ("patch.delete", target, second, None),
    ]
    notice_state = {"message": "maintenance tonight", "level": "warning", "expires_at": None}
    assert got[3:] == [
        ("notice.create", f"team#{notice.id}", None, notice_state),
        ("notice.delete", f"team#{notice.id}", notice_state, None),
    ]
