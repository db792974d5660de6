"""Feed parsers: NVD API 2.0 pages, CVE JSON 5 records, OSV JSON/YAML records.

Each ``parse_*(data)`` takes bytes, text or an already decoded document and returns
:class:`~stockade.vulns.model.Vulnerability` values; see ``feeds.fields`` for the error and warning
policy shared by all three.
"""

from stockade.vulns.feeds.cve5 import parse_cve5
from stockade.vulns.feeds.fields import FeedWarning
from stockade.vulns.feeds.nvd import parse_nvd
from stockade.vulns.feeds.osv import parse_osv

__all__ = ["FeedWarning", "parse_cve5", "parse_nvd", "parse_osv"]
