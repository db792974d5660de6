"""The name map: shipped table, lookups both ways, defaults, merges and imports."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from stockade.vulns.errors import NameMapError
from stockade.vulns.model import Affected
from stockade.vulns.names import (
    NameEntry,
    NameMap,
    entry_from_index,
    entry_from_python,
    load_shipped,
    normalise_cpe,
    normalise_purl,
    parse_csv_entries,
    parse_json_entries,
    purl_for,
    pypi_normalise,
)
from tests.unit.vulns.feeddata import cve5, nvd_page, osv

SEEDED = [
    "openssl", "zlib", "curl", "libcurl", "libxml2", "libxslt", "sqlite", "python", "numpy", "scipy",
    "pandas", "pillow", "requests", "urllib3", "jinja2", "pyyaml", "lxml", "cryptography", "pytorch",
    "tensorflow", "protobuf", "libprotobuf", "libpng", "libtiff", "libjpeg-turbo", "expat", "bzip2",
    "xz", "zstd", "ncurses", "readline", "openblas", "setuptools", "pip", "certifi", "idna",
    "aiohttp", "django", "flask", "werkzeug", "tornado",
]  # fmt: skip


def test_shipped_table_is_package_data_and_seeds_the_common_libraries() -> None:
    raw = json.loads(files("stockade.vulns").joinpath("name_map.json").read_bytes())
    assert raw["format"] == "stockade-name-map"
    shipped = load_shipped()
    names = {e.conda for e in shipped.entries()}
    assert set(SEEDED) <= names
    assert all(e.source == "shipped" for e in shipped.entries())
    assert any(not e.checked for e in shipped.entries())  # uncertain spellings are marked


def test_conda_to_identifiers() -> None:
    shipped = load_shipped()
    torch = shipped.identifiers("pytorch")
    assert torch.purls[:2] == ("pkg:conda/pytorch", "pkg:pypi/torch")
    assert "linuxfoundation:pytorch" in torch.cpes
    assert shipped.identifiers("openssl").cpes == ("openssl:openssl",)
    unknown = shipped.identifiers("some-package")
    assert unknown.purls == ("pkg:conda/some-package",) and unknown.source == "default"


def test_identifiers_to_conda() -> None:
    shipped = load_shipped()
    assert shipped.conda_names_for_purl("pkg:pypi/torch") == {
        "pytorch",
        "pytorch-cpu",
        "pytorch-gpu",
    }
    assert shipped.conda_names_for_purl("pkg:pypi/requests@2.31.0") == {"requests"}
    assert shipped.conda_names_for_purl("pkg:pypi/PyYAML") == {"pyyaml"}
    assert shipped.conda_names_for_purl("pkg:pypi/opencv") == set()  # conda opencv is opencv-python
    assert shipped.conda_names_for_purl("pkg:pypi/Some_New.Lib") == {
        "some-new-lib",
        "some_new_lib",
        "some.new.lib",
    }
    assert shipped.conda_names_for_purl("pkg:conda/conda-forge/numpy") == {"numpy"}
    assert shipped.conda_names_for_purl("pkg:npm/left-pad") == set()
    assert shipped.conda_names_for_cpe("python:requests") == {"requests"}
    assert shipped.conda_names_for_cpe("cpe:2.3:a:haxx:libcurl:7.0:*:*:*:*:*:*:*") == {
        "curl",
        "libcurl",
    }
    assert shipped.conda_names_for_cpe("cpe:/a:openssl:openssl:1.0.1") >= {"openssl"}


def test_feed_products_to_conda_names() -> None:
    shipped = load_shipped()
    assert shipped.conda_names_for(osv("osv-pypi/aiohttp/PYSEC-2021-76.yaml").affected[0]) == {
        "aiohttp"
    }
    assert shipped.conda_names_for(cve5("CVE-2022-3996").affected[0]) == {"openssl"}
    (bash, _) = nvd_page("cves-1999.json")["CVE-1999-1383"].affected
    assert shipped.conda_names_for(bash) == set()
    torch = Affected(ecosystem="PyPI", name="torch")
    assert "pytorch" in shipped.conda_names_for(torch)
    assert shipped.conda_names_for(Affected(ecosystem="crates.io", name="ckb")) == set()


def test_metadata_entries_add_and_admin_entries_replace() -> None:
    shipped = load_shipped()
    index = {"name": "mylib", "version": "1.0", "purls": ["pkg:pypi/my-lib@1.0", "not a purl", 3]}
    meta = entry_from_index(index)
    assert meta == NameEntry("mylib", ("pkg:pypi/my-lib",), source="metadata")
    assert entry_from_index({"name": "x"}) is None
    python_meta = entry_from_python("pytorch", "torch-nightly")
    assert python_meta is not None and entry_from_python("pyyaml", "PyYAML") is None
    merged = shipped.merged([meta, python_meta], replace_entries=False)
    assert merged.conda_names_for_purl("pkg:pypi/my_lib") == {"mylib"}
    assert "pkg:pypi/torch" in merged.identifiers("pytorch").purls  # kept
    assert merged.conda_names_for_purl("pkg:pypi/torch-nightly") == {"pytorch"}
    admin = parse_json_entries(
        {"entries": [{"conda": "pytorch", "purls": ["pkg:pypi/torch"], "cpes": []}]}
    )
    replaced = merged.merged(admin, replace_entries=True)
    assert replaced.identifiers("pytorch").cpes == ()
    assert replaced.identifiers("pytorch").source == "admin"
    assert len(shipped) == len(load_shipped())  # merges never change the original


def test_csv_import() -> None:
    text = (
        "conda,identifier,note\n"
        "pytorch,pkg:pypi/torch,\n"
        "pytorch,linuxfoundation:pytorch,NVD spelling\n"
        "openssl,cpe:2.3:a:openssl:openssl:*:*:*:*:*:*:*:*,\n"
    )
    entries = parse_csv_entries(text)
    assert entries == [
        NameEntry(
            "pytorch", ("pkg:pypi/torch",), ("linuxfoundation:pytorch",), "admin", "NVD spelling"
        ),
        NameEntry("openssl", (), ("openssl:openssl",), "admin"),
    ]
    with pytest.raises(NameMapError, match="header"):
        parse_csv_entries("name,purl\nx,y\n")
    with pytest.raises(NameMapError, match="not a CPE"):
        parse_csv_entries("conda,identifier\nx,justonething\n")
    with pytest.raises(NameMapError, match="line 2: no conda name"):
        parse_csv_entries("conda,identifier\n,pkg:pypi/x\n")


def test_json_import_errors_name_the_entry() -> None:
    with pytest.raises(NameMapError, match="not JSON"):
        parse_json_entries(b"{")
    with pytest.raises(NameMapError, match="list of entries"):
        parse_json_entries({"entries": {}})
    with pytest.raises(NameMapError, match="entry 1: needs a 'conda' name"):
        parse_json_entries([{"conda": "a"}, {"purls": []}])
    with pytest.raises(NameMapError, match=r"entry 0 \(a\): 'purls' must be a list"):
        parse_json_entries([{"conda": "a", "purls": "pkg:pypi/a"}])
    with pytest.raises(NameMapError, match=r"entry 0 \(a\): not a purl"):
        parse_json_entries([{"conda": "a", "purls": ["pkg:"]}])


def test_identifier_normalisation() -> None:
    assert pypi_normalise("Typing_Extensions") == "typing-extensions"
    assert normalise_purl("pkg:pypi/Django@4.2?x=y#sub") == "pkg:pypi/django"
    assert normalise_purl("pkg:npm/%40scope/pkg") == "pkg:npm/@scope/pkg"
    assert normalise_cpe("OpenSSL:OpenSSL") == "openssl:openssl"
    with pytest.raises(NameMapError):
        normalise_cpe("cpe:2.3:a:*:*")
    assert purl_for("PyPI", "Jinja2") == "pkg:pypi/jinja2"
    assert (
        purl_for("Maven", "org.elasticsearch:elasticsearch")
        == "pkg:maven/org.elasticsearch/elasticsearch"
    )
    assert purl_for("Debian:11", "openssl") is None
    assert NameMap().conda_names_for_purl("pkg:pypi/x") == {"x"}
