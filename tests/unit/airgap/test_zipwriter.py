"""The streaming zip64 writer: read back by zipfile, unzip and zipinfo; takes back bad members;
refuses unsafe names; resumes after an abort, a torn journal and a SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade.airgap.zipwriter import (
    BundleWriter,
    WrittenEntry,
    ZipWriteError,
    _journal_record,
    _local_header,
)

MEMBERS = {
    "manifest.json": b'{"format": 1}',
    "linux-64/numpy-1.26.4-py311_0.conda": os.urandom(300_000),
    "noarch/empty.tar.bz2": b"",
    "noarch/caf\u00e9-1.0-0.conda": b"x" * 70_001,
}


def _chunks(data: bytes, size: int = 65_536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _write(path: Path, members: dict[str, bytes], **options: bool) -> Path:
    with BundleWriter.open(path, **options) as writer:
        for name, data in members.items():
            writer.add_stream(name, _chunks(data), size=len(data))
        return writer.finish()


def _check_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == list(members)
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert zlib.crc32(members[info.filename]) == info.CRC
            assert archive.read(info) == members[info.filename]


def _leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


def test_round_trip_read_by_zipfile(tmp_path: Path) -> None:
    final = _write(tmp_path / "bundle.zip", MEMBERS)
    _check_zip(final, MEMBERS)
    assert _leftovers(final) == []


def test_entries_carry_size_sha256_crc_and_offset(tmp_path: Path) -> None:
    with BundleWriter.open(tmp_path / "b.zip") as writer:
        first = writer.add_bytes("a", b"hello")
        second = writer.add_stream("b", iter([b"wor", b"", b"ld"]))
        assert writer.written() == {"a": first, "b": second}
        final = writer.finish()
    assert first == WrittenEntry(
        "a", 5, hashlib.sha256(b"hello").hexdigest(), zlib.crc32(b"hello"), 0
    )
    assert second.sha256 == hashlib.sha256(b"world").hexdigest()
    with zipfile.ZipFile(final) as archive:
        assert [i.header_offset for i in archive.infolist()] == [0, second.offset]


def test_output_is_deterministic(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.zip", MEMBERS)
    two = _write(tmp_path / "two.zip", MEMBERS)
    assert one.read_bytes() == two.read_bytes()


def test_zip64_extras_everywhere_are_read(tmp_path: Path) -> None:
    final = _write(tmp_path / "z64.zip", MEMBERS, zip64_always=True)
    _check_zip(final, MEMBERS)
    assert final.read_bytes() != _write(tmp_path / "plain.zip", MEMBERS).read_bytes()


def test_empty_archive(tmp_path: Path) -> None:
    final = BundleWriter.open(tmp_path / "empty.zip").finish()
    with zipfile.ZipFile(final) as archive:
        assert archive.namelist() == []


@pytest.mark.parametrize(
    ("size", "sha256"),
    [
        (None, "0" * 64),  # wrong sha256
        (299_999, None),  # more bytes than announced
        (300_001, None),  # fewer
    ],
)
def test_mismatch_takes_the_member_back(
    tmp_path: Path, size: int | None, sha256: str | None
) -> None:
    data = MEMBERS["linux-64/numpy-1.26.4-py311_0.conda"]
    with BundleWriter.open(tmp_path / "b.zip") as writer:
        writer.add_bytes("manifest.json", b"{}")
        before = (tmp_path / "b.zip.partial").stat().st_size
        with pytest.raises(ZipWriteError, match=r"bad\.conda") as caught:
            writer.add_stream("bad.conda", _chunks(data), size=size, sha256=sha256)
        assert caught.value.extra["member"] == "bad.conda"
        assert (tmp_path / "b.zip.partial").stat().st_size == before
        assert list(writer.written()) == ["manifest.json"]
        writer.add_bytes("bad.conda", data)  # the name is free again
        final = writer.finish()
    _check_zip(final, {"manifest.json": b"{}", "bad.conda": data})


def test_failing_source_takes_the_member_back(tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"x" * 1000
        raise OSError("connection reset")

    with BundleWriter.open(tmp_path / "b.zip") as writer:
        writer.add_bytes("a", b"a")
        with pytest.raises(OSError, match="connection reset"):
            writer.add_stream("b", broken())
        writer.add_bytes("c", b"c")
        final = writer.finish()
    _check_zip(final, {"a": b"a", "c": b"c"})


def test_matching_size_and_sha256_are_accepted(tmp_path: Path) -> None:
    data = b"payload"
    digest = hashlib.sha256(data).hexdigest().upper()
    with BundleWriter.open(tmp_path / "b.zip") as writer:
        writer.add_stream("p", [data], size=len(data), sha256=digest)
        _check_zip(writer.finish(), {"p": data})


def test_duplicate_name_refused(tmp_path: Path) -> None:
    with BundleWriter.open(tmp_path / "b.zip") as writer:
        writer.add_bytes("a/b", b"1")
        with pytest.raises(ZipWriteError, match="written twice"):
            writer.add_bytes("a/b", b"2")
        _check_zip(writer.finish(), {"a/b": b"1"})


@pytest.mark.parametrize(
    "name",
    ["", "/etc/passwd", "..", "../x", "a/../../x", "a\\..\\x", "a//b", "a/", "./a", "a/./b",
     "C:/x", "a:b", "a\x00b", "a\nb", "\udcff"],
)  # fmt: skip
def test_unsafe_names_refused(tmp_path: Path, name: str) -> None:
    with BundleWriter.open(tmp_path / "b.zip") as writer:
        with pytest.raises(ZipWriteError):
            writer.add_bytes(name, b"x")
        assert writer.written() == {}
        assert (tmp_path / "b.zip.partial").stat().st_size == 0


def test_finished_writer_is_closed(tmp_path: Path) -> None:
    writer = BundleWriter.open(tmp_path / "b.zip")
    writer.finish()
    with pytest.raises(ZipWriteError, match="closed"):
        writer.add_bytes("a", b"")
    writer.abort()  # harmless


def test_second_writer_of_the_same_bundle_refused(tmp_path: Path) -> None:
    with BundleWriter.open(tmp_path / "b.zip"):
        with pytest.raises(ZipWriteError, match="another process"):
            BundleWriter.open(tmp_path / "b.zip")


def test_resume_after_abort_torn_member_and_torn_journal(tmp_path: Path) -> None:
    names = list(MEMBERS)
    final = tmp_path / "b.zip"
    writer = BundleWriter.open(final, sync_members=1)
    for name in names[:3]:
        writer.add_bytes(name, MEMBERS[name])
    writer.abort()
    partial, journal = tmp_path / "b.zip.partial", tmp_path / "b.zip.partial.journal"
    assert not final.exists() and partial.exists()
    with partial.open("ab") as out:  # the 4th member, cut in the middle
        out.write(_local_header(names[3], 0, 0) + b"x" * 1000)
    with journal.open("ab") as out:  # a torn line
        out.write(b'{"crc32": 1, "name": "noarch/caf')
    resumed = BundleWriter.open(final, sync_members=1)
    assert list(resumed.written()) == names[:3]
    assert partial.stat().st_size == resumed.written()[names[2]].end
    resumed.add_bytes(names[3], MEMBERS[names[3]])
    resumed.abort()
    again = BundleWriter.open(final)  # the torn line was cut, so the 4th member's line is read
    assert list(again.written()) == names
    assert again.finish() == final
    _check_zip(final, MEMBERS)
    assert final.read_bytes() == _write(tmp_path / "straight.zip", MEMBERS).read_bytes()
    assert _leftovers(final) == []


@pytest.mark.parametrize("damage", ["cut", "header not patched"])
def test_resume_drops_members_whose_bytes_are_missing(tmp_path: Path, damage: str) -> None:
    final = tmp_path / "b.zip"
    with BundleWriter.open(final, sync_members=1) as writer:
        writer.add_bytes("a", b"a" * 100)
        b = writer.add_bytes("b", b"b" * 100)
    partial = tmp_path / "b.zip.partial"
    if damage == "cut":
        os.truncate(partial, b.end - 1)
    else:
        with partial.open("r+b") as out:
            out.seek(b.offset)
            out.write(_local_header("b", 0, 0))
    with BundleWriter.open(final) as resumed:
        assert list(resumed.written()) == ["a"]
        resumed.add_bytes("b", b"B")
        _check_zip(resumed.finish(), {"a": b"a" * 100, "b": b"B"})


def test_exception_in_block_keeps_partial_for_resume(tmp_path: Path) -> None:
    final = tmp_path / "b.zip"

    def interrupted() -> None:
        with BundleWriter.open(final) as writer:
            writer.add_bytes("a", b"1")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        interrupted()
    assert _leftovers(final) == ["b.zip.partial", "b.zip.partial.journal"]
    with BundleWriter.open(final) as resumed:
        assert list(resumed.written()) == ["a"]
        with pytest.raises(ZipWriteError, match="written twice"):
            resumed.add_bytes("a", b"1")
        _check_zip(resumed.finish(), {"a": b"1"})


def test_journal_of_something_else_refused(tmp_path: Path) -> None:
    (tmp_path / "b.zip.partial").write_bytes(b"data")
    (tmp_path / "b.zip.partial.journal").write_bytes(b'{"journal": "other", "version": 9}\n')
    with pytest.raises(ZipWriteError, match="not a journal"):
        BundleWriter.open(tmp_path / "b.zip")
    assert (tmp_path / "b.zip.partial").read_bytes() == b"data"


@pytest.mark.parametrize(
    "change",
    [{"name": "../evil"}, {"size": "100"}, {"offset": 7}, {"crc32": -1}, {"extra": 1}],
)
def test_resume_stops_at_a_journal_line_it_did_not_write(
    tmp_path: Path, change: dict[str, object]
) -> None:
    final = tmp_path / "b.zip"
    with BundleWriter.open(final, sync_members=1) as writer:
        writer.add_bytes("a", b"a")
        b = writer.add_bytes("b", b"b")
    journal = tmp_path / "b.zip.partial.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    assert lines[-1] == _journal_record(b)
    record = json.loads(lines[-1]) | change
    journal.write_bytes(b"".join(lines[:-1]) + json.dumps(record).encode() + b"\n")
    with BundleWriter.open(final) as resumed:
        assert list(resumed.written()) == ["a"]
        resumed.add_bytes("c", b"c")
        _check_zip(resumed.finish(), {"a": b"a", "c": b"c"})


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from stockade.airgap.zipwriter import BundleWriter

    def slow():
        yield b"y" * 5000
        print("MID-MEMBER", flush=True)
        time.sleep(60)
        yield b"never"

    writer = BundleWriter.open(Path(sys.argv[1]), sync_members=1)
    for i in range(3):
        writer.add_bytes(f"m{i}", bytes([i]) * 1000)
    writer.add_stream("m3", slow())
    """
)


def test_resume_after_sigkill_mid_member(tmp_path: Path) -> None:
    final = tmp_path / "b.zip"
    with subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(final)], stdout=subprocess.PIPE
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"MID-MEMBER\n"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=20) == -signal.SIGKILL
    members = {f"m{i}": bytes([i]) * 1000 for i in range(5)}
    three_members = 3 * (len(_local_header("m0", 0, 0)) + 1000)
    assert (tmp_path / "b.zip.partial").stat().st_size > three_members + 5000  # m3 was half written
    with BundleWriter.open(final) as resumed:
        assert list(resumed.written()) == ["m0", "m1", "m2"]
        for name in ("m3", "m4"):
            resumed.add_bytes(name, members[name])
        resumed.finish()
    _check_zip(final, members)


def test_more_than_65535_members(tmp_path: Path) -> None:
    count = 70_000
    with BundleWriter.open(tmp_path / "many.zip", sync_members=count) as writer:
        for i in range(count):
            writer.add_bytes(f"d/{i}", b"")
        writer.add_bytes("last", b"last")
        final = writer.finish()
    with zipfile.ZipFile(final) as archive:
        infos = archive.infolist()
        assert len(infos) == count + 1
        assert archive.read("last") == b"last"


def test_member_and_offsets_over_4_gib(tmp_path: Path) -> None:
    """A 4 GiB + 1 MiB member as a sparse file, taken over by a resume; the writer then adds a
    member beyond 4 GiB and writes the zip64 central directory. (The big member's CRC is not
    computed, to stay fast: its bytes are not read back.)"""
    big = (4 << 30) + (1 << 20)
    final = tmp_path / "big.zip"
    entry = WrittenEntry("big.bin", big, "0" * 64, 0, 0)
    with (tmp_path / "big.zip.partial").open("wb") as out:
        out.write(_local_header(entry.name, 0, big))
        out.truncate(entry.end)
    header = json.dumps({"journal": "stockade-zipwriter", "version": 1}).encode() + b"\n"
    (tmp_path / "big.zip.partial.journal").write_bytes(header + _journal_record(entry))
    with BundleWriter.open(final) as writer:
        assert writer.written() == {"big.bin": entry}
        after = writer.add_bytes("after.txt", b"hello")
        writer.finish()
    assert after.offset > 0xFFFFFFFF
    with zipfile.ZipFile(final) as archive:
        infos = archive.infolist()
        assert [(i.filename, i.file_size, i.header_offset) for i in infos] == [
            ("big.bin", big, 0),
            ("after.txt", 5, after.offset),
        ]
        assert archive.read("after.txt") == b"hello"
    if shutil.which("zipinfo"):
        listing = subprocess.run(["zipinfo", str(final)], capture_output=True, check=True)
        assert b"4296015872" in listing.stdout and b"after.txt" in listing.stdout


@pytest.mark.skipif(shutil.which("unzip") is None, reason="unzip is not installed")
@pytest.mark.parametrize("zip64_always", [False, True])
def test_unzip_and_zipinfo_accept_it(tmp_path: Path, zip64_always: bool) -> None:
    final = _write(tmp_path / "b.zip", MEMBERS, zip64_always=zip64_always)
    tested = subprocess.run(["unzip", "-t", str(final)], capture_output=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert b"No errors detected" in tested.stdout
    listing = subprocess.run(["zipinfo", str(final)], capture_output=True, check=True)
    assert b"4 files" in listing.stdout and listing.stderr == b""
