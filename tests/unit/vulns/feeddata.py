"""The real feed data in ``tests/data/vulns/`` (rows ``vulns/`` of its PROVENANCE.md)."""

from __future__ import annotations

from functools import cache

from stockade.vulns.feeds import parse_cve5, parse_nvd, parse_osv
from stockade.vulns.model import Vulnerability
from tests.conftest import TESTDATA

VULNS = TESTDATA / "vulns"
OSV_PYPI = sorted((VULNS / "osv-pypi").glob("*/*.yaml"))
OSV_GITHUB = sorted((VULNS / "osv-github").glob("*.json"))
NVD_PAGES = [
    VULNS / "nvd-api-2.0" / n for n in ("cves-1999.json", "cves-2023.json", "vunnel-full-page.json")
]
CVE5 = sorted((VULNS / "cve-json-5").glob("*.json"))


@cache
def osv(path: str) -> Vulnerability:
    """One OSV advisory by its path under ``vulns/`` (``osv-pypi/django/PYSEC-2023-61.yaml``)."""
    (found,) = parse_osv((VULNS / path).read_bytes())
    return found


@cache
def nvd_page(name: str) -> dict[str, Vulnerability]:
    return {v.id: v for v in parse_nvd((VULNS / "nvd-api-2.0" / name).read_bytes())}


@cache
def cve5(cve_id: str) -> Vulnerability:
    (found,) = parse_cve5((VULNS / "cve-json-5" / f"{cve_id}.json").read_bytes())
    return found
