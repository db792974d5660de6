"""An advisory found by the id a person types: its own id, else an alias (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.vulns.ids import find_all, find_vulnerability
from tests.integration.vulns.support import VULNS, add_feed, osv_folder, sync

# ``PYSEC-2021-76`` (aiohttp) lists ``CVE-2021-21330`` and ``GHSA-v6wp-4m6f-gcjg`` as aliases.
PYSEC = "PYSEC-2021-76"
CVE = "CVE-2021-21330"


def test_by_id_then_by_alias_and_the_cve_record_first(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    osv = osv_folder(tmp_path, "aiohttp")
    sync(container, add_feed(container, admin, "osv", osv.as_uri(), "osv"))
    with container.factory() as session:
        own = find_vulnerability(session, PYSEC.lower())
        assert own is not None
        assert own.vuln_id == PYSEC
        assert CVE in own.aliases
        by_alias = find_vulnerability(session, f"  {CVE.lower()} ")
        assert by_alias is not None
        assert by_alias.vuln_id == PYSEC
        assert find_vulnerability(session, "CVE-1999-0000") is None
        assert find_vulnerability(session, "  ") is None
    # a CVE JSON 5 record is found by its own id, before anything aliasing it
    cve_file = sorted((VULNS / "cve-json-5").glob("CVE-*.json"))[0]
    sync(container, add_feed(container, admin, "cve5", cve_file.as_uri(), "cve5"))
    with container.factory() as session:
        assert [row.vuln_id for row in find_all(session, cve_file.stem)] == [cve_file.stem]
        assert [row.vuln_id for row in find_all(session, CVE)] == [PYSEC]
