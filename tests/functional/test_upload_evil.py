"""Evil packages built in the test, uploaded through the API: each refused by its rule, nothing stored."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.factories.packages import (
    PackageSpec,
    build,
    build_conda,
    conda_bomb,
    file,
    hardlink,
    symlink,
    tar_bz2_bomb,
)
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional
FAR_FUTURE = 4_102_444_800_000  # 2100-01-01 in ms

Maker = Callable[[Path], Path]
BASE = PackageSpec(name="evil", version="1.0", build="0")

CASES: dict[str, tuple[Maker, str]] = {
    "path traversal": (
        lambda d: build(d, replace(BASE, payload=(file("../escape.txt", b"x"),))),
        "package:path-traversal",
    ),
    "absolute path": (
        lambda d: build(d, replace(BASE, payload=(file("/etc/evil", b"x"),))),
        "package:",
    ),
    "backslash": (
        lambda d: build(d, replace(BASE, payload=(file("lib\\evil.dll", b"x"),))),
        "package:unsafe-path",
    ),
    "symlink escape": (
        lambda d: build(d, replace(BASE, payload=(symlink("lib/x", "../../../etc/passwd"),))),
        "package:link-escape",
    ),
    "absolute symlink": (
        lambda d: build(d, replace(BASE, payload=(symlink("lib/x", "/etc/passwd"),))),
        "package:link-escape",
    ),
    "hardlink outside": (
        lambda d: build(d, replace(BASE, payload=(hardlink("lib/x", "../outside"),))),
        "package:",
    ),
    "zstd bomb": (lambda d: conda_bomb(d, 1024**3, BASE), "package:decompression-ratio"),
    "bz2 bomb": (lambda d: tar_bz2_bomb(d, 1024**3, BASE), "package:decompression-ratio"),
    "filename mismatch": (lambda d: build_conda(d, BASE, filename="evil-2.0-0.conda"), "package:"),
    "future timestamp": (
        lambda d: build(d, replace(BASE, timestamp=FAR_FUTURE)),
        "package:future-timestamp",
    ),
    "invalid utf-8": (
        lambda d: build(d, replace(BASE, index_raw=b'{"name": "evil\xff"}')),
        "package:encoding",
    ),
    "bad name": (lambda d: build(d, replace(BASE, name="Evil!")), "package:"),
    "paths.json lies": (
        lambda d: build(
            d, replace(BASE, paths=json.dumps({"paths": [], "paths_version": 1}).encode())
        ),
        "package:paths-mismatch",
    ),
    "oversized info": (
        lambda d: build(
            d, replace(BASE, extra_info=(file("info/huge.txt", b"\0" * (65 * 1024**2)),))
        ),
        "package:info-size",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_evil_package_is_refused_and_nothing_stored(
    live_server: LiveServer, tmp_path: Path, case: str
) -> None:
    make, rule = CASES[case]
    path = make(tmp_path)
    channel = live_server.new_channel(prefix="evil")
    response = live_server.upload(channel, path)
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["code"].startswith(rule), body
    assert live_server.admin.get(f"/api/v1/channels/{channel}/files").json() == []
    assert not live_server.container.blobs.exists(hashlib.sha256(path.read_bytes()).hexdigest())


def test_wrong_subdir_for_the_target(live_server: LiveServer, tmp_path: Path) -> None:
    path = build(tmp_path, replace(BASE, subdir="linux-64"))
    channel = live_server.new_channel(prefix="subdir")
    data = path.read_bytes()
    response = live_server.admin.put(
        f"/api/v1/channels/{channel}/files/{path.name}",
        params={"subdir": "osx-arm64"},
        content=data,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "package:subdir-mismatch"
    ok = live_server.admin.put(
        f"/api/v1/channels/{channel}/files/{path.name}", params={"subdir": "linux-64"}, content=data
    )
    assert ok.status_code == 201
