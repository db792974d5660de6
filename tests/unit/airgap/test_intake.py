"""airgap/intake.py: what a bundle sent to the server is, its name in the folder, and its placing
(one rename or link, never over another file, a copy when staging is on another file system)."""

from __future__ import annotations

import errno
import io
import os
import time
import zipfile
from pathlib import Path

import pytest

from stockade.airgap import intake
from stockade.airgap.errors import BundleRefusedError
from stockade.airgap.models import BundleKind
from stockade.core.errors import InvalidInputError, UnavailableError
from stockade.core.safezip import ZipLimits

LIMITS = ZipLimits(1000, 1 << 30, 1 << 30)
CVE = b'{"format": "stockade-cve-bundle", "version": 1}'


def zip_file(path: Path, members: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(
    ("members", "code"),
    [
        ({"hello.txt": b"hi"}, "airgap:not-a-bundle"),
        ({"manifest.json": b'{"format": "other"}'}, "airgap:not-a-bundle"),
        ({"manifest.json": b"[1, 2]"}, "airgap:not-a-bundle"),
        ({"manifest.json": b"{}", "/etc/x": b""}, "airgap:zip-name"),
        ({"manifest.json": b'{"format": "stockade-airgap-bundle"}'}, "airgap:bad-manifest"),
    ],
)
def test_what_is_not_a_bundle_is_refused_naming_why(
    tmp_path: Path, members: dict[str, bytes], code: str
) -> None:
    with pytest.raises(BundleRefusedError) as refused:
        intake.check_bundle(zip_file(tmp_path / "x.zip", members), LIMITS)
    assert refused.value.code == code, refused.value.detail


def test_a_file_that_is_no_zip_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(BundleRefusedError) as refused:
        intake.check_bundle(junk, LIMITS)
    assert refused.value.code == "airgap:zip-not-zip"


def test_a_cve_zip_is_recognized_by_its_manifest(tmp_path: Path) -> None:
    checked = intake.check_bundle(zip_file(tmp_path / "any.zip", {"manifest.json": CVE}), LIMITS)
    assert checked.kind == BundleKind.CVE and checked.manifest is None
    assert intake.target_name(None, checked) == "cve.zip"
    assert intake.target_name("conda_main_airgap.zip", checked) == "conda_main_airgap.zip"


@pytest.mark.parametrize(
    "name", ["../x.zip", "a/b.zip", ".x.zip", "x.ZIP.part", "x", "x y.zip", "x\\y.zip", "é.zip"]
)
def test_a_given_name_must_be_a_plain_zip_file_name(name: str) -> None:
    with pytest.raises(InvalidInputError) as bad:
        intake.target_name(name, intake.Checked(BundleKind.CVE))
    assert bad.value.code == "airgap:bad-name"


def test_placing_never_replaces_a_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "airgap"
    checked = intake.Checked(BundleKind.CVE)
    names = []
    for n in range(3):
        staged = tmp_path / f"staged-{n}"
        staged.write_bytes(f"bundle {n}".encode())
        placed = intake.place(staged, folder, "cve.zip", checked, settle_s=30)
        names.append(placed.path.name)
        assert not staged.exists()
        assert placed.size == len(f"bundle {n}")
        # complete when it lands: dated before the settle time, so a run asked for now takes it
        assert placed.path.stat().st_mtime < time.time() - 30
    assert names == ["cve.zip", "cve.1.zip", "cve.2.zip"]
    assert (folder / "cve.zip").read_bytes() == b"bundle 0"
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_staging_on_another_file_system_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def cross_device(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).name == "staged":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(intake.os, "replace", cross_device)
    staged = tmp_path / "staged"
    staged.write_bytes(b"across")
    placed = intake.place(
        staged, tmp_path / "airgap", "b.zip", intake.Checked(BundleKind.CVE), settle_s=0
    )
    assert placed.path.read_bytes() == b"across"
    assert [p.name for p in (tmp_path / "airgap").iterdir()] == ["b.zip"]


def test_a_folder_that_cannot_be_written_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    staged = tmp_path / "staged"
    staged.write_bytes(b"x")
    with pytest.raises(UnavailableError) as failed:
        intake.place(staged, blocker / "airgap", "b.zip", intake.Checked(BundleKind.CVE), 0)
    assert failed.value.code == "airgap:folder-unwritable"
    assert staged.exists()
