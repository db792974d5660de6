"""The download buffer: batching, its bound, and what a failed write keeps (no database)."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from stockade.audit.downloads import Download, DownloadRecorder, daily_totals, name_version

DAY = 1_780_000_000.0  # 2026-05-28 UTC


def download(n: int = 0, *, status: int = 200, sent: int = 10, at: float = DAY) -> Download:
    return Download(
        at,
        "alice",
        1,
        None,
        "10.0.0.1",
        "rattler/0.1",
        7,
        "main",
        "noarch",
        f"pkg{n % 2}-1.0-0.conda",
        f"pkg{n % 2}",
        "1.0",
        "a" * 64,
        sent,
        status,
        f"req{n}",
    )


def test_flush_writes_batches_in_order() -> None:
    recorder = DownloadRecorder(buffer_size=100, batch_size=3)
    for n in range(7):
        recorder.record(download(n))
    batches: list[list[str | None]] = []
    assert recorder.flush(lambda b: batches.append([d.request_id for d in b])) == 3
    assert recorder.flush(lambda b: batches.append([d.request_id for d in b]), drain=True) == 4
    assert batches == [["req0", "req1", "req2"], ["req3", "req4", "req5"], ["req6"]]
    assert recorder.pending() == 0
    assert recorder.flush(lambda b: batches.append([])) == 0  # nothing to write: no call
    assert len(batches) == 3


def test_full_buffer_drops_oldest_and_logs_the_count(caplog: pytest.LogCaptureFixture) -> None:
    recorder = DownloadRecorder(buffer_size=5, batch_size=100)
    for n in range(8):
        recorder.record(download(n))
    assert recorder.pending() == 5
    assert recorder.dropped == 3
    written: list[str | None] = []
    with caplog.at_level(logging.WARNING, logger="stockade.downloads"):
        recorder.flush(lambda b: written.extend(d.request_id for d in b))
    assert written == ["req3", "req4", "req5", "req6", "req7"]  # the newest kept
    assert "3 download records dropped" in caplog.text
    caplog.clear()
    recorder.flush(lambda b: None)
    assert "dropped" not in caplog.text  # logged once per new drop


def test_failed_write_keeps_its_batch_for_the_next_try() -> None:
    recorder = DownloadRecorder(buffer_size=4, batch_size=2)
    for n in range(3):
        recorder.record(download(n))

    def broken(_batch: list[Download]) -> None:
        raise OSError("database is down")

    with pytest.raises(OSError):
        recorder.flush(broken, drain=True)
    assert recorder.failures == 1
    assert recorder.pending() == 3
    # while the database is down, new rows wait in the bounded buffer (oldest dropped)
    for n in range(3, 9):
        recorder.record(download(n))
    assert recorder.pending() == 2 + 4  # the kept batch + a full buffer: bounded
    written: list[str | None] = []
    recorder.flush(lambda b: written.extend(d.request_id for d in b), drain=True)
    assert written[:2] == ["req0", "req1"]  # the failed batch first, unchanged
    assert written[2:] == ["req5", "req6", "req7", "req8"]
    assert recorder.dropped == 3


def test_daily_totals_count_full_downloads_and_sum_bytes() -> None:
    batch = [
        download(0, status=200, sent=100),
        download(2, status=200, sent=100),
        download(4, status=206, sent=30),  # a range: bytes, not a download
        download(6, status=304, sent=0),  # not modified: neither
        download(1, status=200, sent=5),
        download(0, status=200, sent=100, at=DAY + 86_400),  # the next day
    ]
    rows = daily_totals(batch)
    assert [(r["day"], r["name"], r["count"], r["bytes"]) for r in rows] == [
        (date(2026, 5, 28), "pkg0", 2, 230),
        (date(2026, 5, 28), "pkg1", 1, 5),
        (date(2026, 5, 29), "pkg0", 1, 100),
    ]


def test_row_truncates_long_client_fields() -> None:
    row = Download(
        DAY, "x" * 300, None, None, "1" * 80, "a" * 600, 1, "c", "noarch",
        "f-1-0.conda", "f", "1", None, 0, 200, None,
    ).row()  # fmt: skip
    assert len(str(row["principal_name"])) == 256
    assert len(str(row["ip"])) == 64
    assert len(str(row["user_agent"])) == 512


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("numpy-1.26.4-py311h64a7726_0.conda", ("numpy", "1.26.4")),
        ("ca-certificates-2024.2.2-hbcca054_0.tar.bz2", ("ca-certificates", "2024.2.2")),
        ("odd.conda", ("odd.conda", "")),
    ],
)
def test_name_version_from_a_conda_file_name(filename: str, expected: tuple[str, str]) -> None:
    assert name_version(filename) == expected


def test_disabled_recorder_is_a_flag_the_endpoint_reads() -> None:
    assert DownloadRecorder(enabled=False).enabled is False
