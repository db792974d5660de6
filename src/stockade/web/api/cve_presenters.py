"""The vulnerability domain's read models (``vulns.advisory_views``) as REST schemas.

The queries live in the domain (``vulns.advisory_queries``), shared with the web pages; this module
only turns their dataclasses into the API's Pydantic schemas, which validate the literals
(severity, status) on the way out.
"""

from __future__ import annotations

from dataclasses import asdict

from stockade.vulns.advisory_views import (
    AdvisoryDetail,
    AdvisorySummary,
    CurationRecord,
)
from stockade.web.api.cve_schemas import (
    CurationPublic,
    VulnerabilityPublic,
    VulnerabilitySummary,
)

__all__ = ["curation_public", "summary_public", "vulnerability_public"]


def summary_public(row: AdvisorySummary) -> VulnerabilitySummary:
    return VulnerabilitySummary.model_validate(asdict(row))


def vulnerability_public(row: AdvisoryDetail) -> VulnerabilityPublic:
    return VulnerabilityPublic.model_validate(asdict(row))


def curation_public(row: CurationRecord) -> CurationPublic:
    return CurationPublic.model_validate(asdict(row))
