"""Environment inputs: the four file kinds, detection, and bad files that must be refused."""

from __future__ import annotations

import pytest

from stockade.vulns.envfiles import (
    EnvironmentFileError,
    dependency_name,
    detect_kind,
    packages_for,
    parse_environment_file,
    parse_specs,
)
from stockade.vulns.reports import csv_cell
from stockade.vulns.trees import channel_name_of

URL = "https://repo.example/conda/team/internal/linux-64/openssl-3.0.1-h0_0.conda"
SHA = "a" * 64
MD5 = "b" * 32


def test_environment_yml() -> None:
    text = b"""name: demo
channels: [internal, "https://x/conda/t/stk_secret/team/internal", nodefaults]
dependencies:
  - python >=3.11
  - conda-forge::numpy
  - pip:
    - requests
"""
    env = parse_environment_file(text, "environment.yml")
    assert env.kind == "environment" and not env.pinned
    assert env.specs == ("python >=3.11", "numpy") and env.name == "demo"
    assert env.channels[0] == "internal" and len(env.channels) == 2
    assert any("pip" in n for n in env.notes) and any("conda-forge" in n for n in env.notes)
    assert channel_name_of(env.channels[1]) == "team/internal"


def test_explicit_urls_with_and_without_hashes() -> None:
    text = f"# platform: linux-64\n@EXPLICIT\n{URL}#{MD5}\n{URL.replace('openssl', 'zlib')}\n"
    env = parse_environment_file(text.encode(), "env.txt")
    assert env.kind == "explicit" and env.pinned and env.platforms == ("linux-64",)
    first, second = env.packages
    assert (first.name, first.version, first.build) == ("openssl", "3.0.1", "h0_0")
    assert (first.channel, first.subdir, first.md5) == ("team/internal", "linux-64", MD5)
    assert second.md5 is None
    sha = parse_environment_file(f"@EXPLICIT\n{URL}#sha256:{SHA}\n".encode())
    assert sha.packages[0].sha256 == SHA


def test_plain_spec_list_is_solved() -> None:
    env = parse_environment_file(b"# comment\nnumpy=1.26=py311_0\nscipy >=1\n", "specs.txt")
    assert env.kind == "explicit" and not env.pinned and len(env.specs) == 2


def test_conda_lock_v1() -> None:
    text = f"""version: 1
metadata:
  channels: [{{url: internal, used_env_vars: []}}]
  platforms: [linux-64, osx-arm64]
package:
- name: openssl
  version: 3.0.1
  manager: conda
  platform: linux-64
  dependencies: {{ca-certificates: ''}}
  url: {URL}
  hash: {{md5: {MD5}, sha256: {SHA}}}
- name: requests
  version: '2.0'
  manager: pip
  platform: linux-64
  url: https://files.pythonhosted.org/r.whl
  hash: {{sha256: {SHA}}}
"""
    env = parse_environment_file(text.encode(), "conda-lock.yml")
    assert env.kind == "conda-lock" and env.platforms == ("linux-64", "osx-arm64")
    assert [p.name for p in packages_for(env, "linux-64")] == ["openssl"]
    assert packages_for(env, "osx-arm64") == []
    assert env.packages[0].sha256 == SHA and env.packages[0].depends == ("ca-certificates",)
    assert any("pip" in n for n in env.notes)


@pytest.mark.parametrize("version", [4, 5, 6])
def test_pixi_lock(version: int) -> None:
    wheel = "https://files.pythonhosted.org/click.whl"
    described = (
        f"- kind: conda\n  name: openssl\n  version: 3.0.1\n  build: h0_0\n  subdir: linux-64\n"
        f"  url: {URL}\n  sha256: {SHA}\n  depends: [ca-certificates]\n"
        f"- kind: pypi\n  name: click\n  version: 8.1.7\n  url: {wheel}\n  sha256: {SHA}\n"
        if version in (4, 5)
        else f"- conda: {URL}\n  sha256: {SHA}\n  depends: [ca-certificates]\n"
        f"- pypi: {wheel}\n  name: click\n  version: 8.1.7\n  sha256: {SHA}\n"
    )
    text = f"""version: {version}
environments:
  default:
    channels: [{{url: 'https://repo.example/conda/team/internal/'}}]
    packages:
      linux-64:
      - conda: {URL}
      - pypi: {wheel}
packages:
{described}"""
    env = parse_environment_file(text.encode(), "pixi.lock")
    assert env.kind == "pixi" and env.platforms == ("linux-64",)
    (pkg,) = env.packages
    assert (pkg.name, pkg.version, pkg.sha256, pkg.depends) == (
        "openssl",
        "3.0.1",
        SHA,
        ("ca-certificates",),
    )
    assert env.channels == ("https://repo.example/conda/team/internal/",)
    assert any("1 pypi package" in note for note in env.notes)


def test_detection_by_content() -> None:
    assert detect_kind(None, "version: 6\nenvironments: {}\n") == "pixi"
    assert detect_kind("x.yml", "version: 1\nmetadata: {}\npackage: []\n") == "conda-lock"
    assert detect_kind(None, "@EXPLICIT\n") == "explicit"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"", "environment.yml"),
        (b"\xff\xfe\x00junk", "environment.yml"),
        (b"name: x\n", "environment.yml"),
        (b"dependencies: [app >>= 1]\n", "environment.yml"),
        (b"[[[", "environment.yml"),
        (b"@EXPLICIT\nnot a url\n", "env.txt"),
        (b"@EXPLICIT\nhttps://x/c/noarch/a-1-0.conda#zz\n", "env.txt"),
        (b"version: 7\nenvironments: {default: {}}\n", "pixi.lock"),
        (b"version: 1\npackage: []\nmetadata: {}\n", "conda-lock.yml"),
        (b"hello: world\n", "something.yaml"),
        (b"%%% ??? !!!\n", "unknown.bin"),
    ],
)
def test_bad_files_are_refused(data: bytes, name: str) -> None:
    with pytest.raises(EnvironmentFileError):
        parse_environment_file(data, name)


def test_specs_and_small_helpers() -> None:
    assert parse_specs(["numpy >=1.26"], platform="osx-arm64").platforms == ("osx-arm64",)
    with pytest.raises(EnvironmentFileError):
        parse_specs([])
    assert dependency_name("openssl >=3,<4") == "openssl"
    assert dependency_name("conda-forge::numpy[version='>=1']") == "numpy"
    assert channel_name_of("https://h/conda/t/stk_x/a/b/") == "a/b"
    assert channel_name_of("https://conda.anaconda.org/conda-forge") is None
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and csv_cell(["a", "b"]) == "a; b"


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        # the "billion laughs": nine levels of nine aliases each
        (
            b"a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
            + b"".join(
                f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n".encode() for i in range(1, 9)
            )
            + b"name: *a8\ndependencies: [numpy]\n",
            "environment.yml",
            "aliases",
        ),
        (
            b"dependencies: " + b"[" * 5000 + b"]" * 5000 + b"\n",
            "environment.yml",
            "nested|neither",
        ),
        (b"@EXPLICIT\nhttps://h:99999/conda/c/linux-64/a-1-0.conda\n", "env.txt", "(?i)port"),
        (b"@EXPLICIT\nhttps://[::1/conda/c/linux-64/a-1-0.conda\n", "env.txt", "IPv6"),
    ],
    ids=["aliases", "deep", "port", "ipv6"],
)
def test_hostile_files_are_refused_with_a_reason(data: bytes, name: str, expected: str) -> None:
    with pytest.raises(EnvironmentFileError, match=expected):
        parse_environment_file(data, name)
