"""SBOMs of a report (SPEC §7): CycloneDX JSON 1.6 and SPDX JSON 2.3.

Every package of the environment is a component (CycloneDX) or package (SPDX) with a purl
``pkg:conda/<name>@<version>?build=…&channel=…&subdir=…`` (the channel left out for packages we
do not hold), its sha256 and md5 when known, and its license as stated by the package. The
dependency graph is the tree's edges (CycloneDX ``dependencies``; SPDX ``DEPENDS_ON``
relationships, with the roots ``DESCRIBES``-d by the document). CycloneDX also carries the
findings as ``vulnerabilities`` with a rating (score, severity, CVSS method) and the affected
component; the curation status of a finding is its ``analysis.state`` (``cleared`` ->
``not_affected``, ``mitigated`` -> ``resolved``, ``active`` -> ``exploitable``, otherwise
``in_triage``). The report's notes (such as a record left out because it is invalid) are
CycloneDX ``metadata.properties`` named ``stockade:note`` and the SPDX creator comment.
"""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import ImpactAnalysisState
from cyclonedx.model.license import DisjunctiveLicense
from cyclonedx.model.vulnerability import (
    BomTarget,
    Vulnerability,
    VulnerabilityAnalysis,
    VulnerabilityRating,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from spdx_tools.spdx.model.actor import Actor, ActorType
from spdx_tools.spdx.model.checksum import Checksum, ChecksumAlgorithm
from spdx_tools.spdx.model.document import CreationInfo, Document
from spdx_tools.spdx.model.package import ExternalPackageRef, ExternalPackageRefCategory, Package
from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion
from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

from stockade.vulns.reports import EnvironmentReport, Finding, PackageEntry

__all__ = ["cyclonedx_json", "purl_of", "spdx_json"]

TOOL = "stockade"
_METHOD = {
    "2.0": VulnerabilityScoreSource.CVSS_V2,
    "3.0": VulnerabilityScoreSource.CVSS_V3,
    "3.1": VulnerabilityScoreSource.CVSS_V3_1,
    "4.0": VulnerabilityScoreSource.CVSS_V4,
}
_STATE = {
    "cleared": ImpactAnalysisState.NOT_AFFECTED,
    "mitigated": ImpactAnalysisState.RESOLVED,
    "active": ImpactAnalysisState.EXPLOITABLE,
}
_SPDX_ID = re.compile(r"[^A-Za-z0-9.-]+")


def purl_of(package: PackageEntry) -> PackageURL:
    qualifiers = {
        k: v
        for k, v in (
            ("build", package.build),
            ("channel", package.channel),
            ("subdir", package.subdir),
        )
        if v
    }
    return PackageURL(
        type="conda", name=package.name, version=package.version or None, qualifiers=qualifiers
    )


def _ref(package: PackageEntry) -> str:
    return str(purl_of(package).to_string())


# ------------------------------------------------------------------------------- CycloneDX


def _component(package: PackageEntry) -> Component:
    hashes = []
    if package.sha256:
        hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=package.sha256))
    if package.md5:
        hashes.append(HashType(alg=HashAlgorithm.MD5, content=package.md5))
    properties = [Property(name="stockade:known", value="true" if package.known else "false")]
    if package.note:
        properties.append(Property(name="stockade:note", value=package.note))
    return Component(
        name=package.name,
        version=package.version or None,
        type=ComponentType.LIBRARY,
        bom_ref=_ref(package),
        purl=purl_of(package),
        hashes=hashes,
        licenses=[DisjunctiveLicense(name=package.license)] if package.license else [],
        properties=properties,
    )


def _vulnerability(finding: Finding, ref: str) -> Vulnerability:
    ratings = []
    if finding.score is not None:
        severity = (
            VulnerabilitySeverity(finding.severity)
            if finding.severity
            else VulnerabilitySeverity.UNKNOWN
        )
        ratings.append(
            VulnerabilityRating(
                score=Decimal(str(finding.score)),
                severity=severity,
                method=_METHOD.get(finding.cvss_version or "", VulnerabilityScoreSource.OTHER),
            )
        )
    state = _STATE.get(finding.status, ImpactAnalysisState.IN_TRIAGE)
    properties = [
        Property(name="stockade:status", value=finding.status),
        Property(name="stockade:path", value=" -> ".join(finding.path)),
    ]
    if finding.kev:
        properties.append(Property(name="stockade:kev", value="true"))
    return Vulnerability(
        bom_ref=f"{finding.vuln_id}@{ref}",
        id=finding.vuln_id,
        description=finding.summary or None,
        ratings=ratings,
        affects=[BomTarget(ref=ref)],
        analysis=VulnerabilityAnalysis(state=state),
        properties=properties,
    )


def cyclonedx_json(report: EnvironmentReport, *, name: str = "environment") -> bytes:
    bom = Bom()
    bom.metadata.component = Component(
        name=report.name or name, type=ComponentType.APPLICATION, bom_ref="root"
    )
    for note in report.notes:  # e.g. a record left out because it is invalid
        bom.metadata.properties.add(Property(name="stockade:note", value=note))
    components = {p.name: _component(p) for p in report.packages}
    for component in components.values():
        bom.components.add(component)
    bom.register_dependency(
        bom.metadata.component, [components[r] for r in report.roots if r in components]
    )
    for package in report.packages:
        depends = [components[d] for d in package.depends if d in components]
        bom.register_dependency(components[package.name], depends)
    refs = {p.name: _ref(p) for p in report.packages}
    for finding in report.findings:
        bom.vulnerabilities.add(_vulnerability(finding, refs[finding.package]))
    return JsonV1Dot6(bom).output_as_string(indent=2).encode()


# ------------------------------------------------------------------------------------ SPDX


def _spdx_id(index: int, package: PackageEntry) -> str:
    return f"SPDXRef-Package-{index}-" + _SPDX_ID.sub("-", package.name).strip("-")


def _spdx_package(spdx_id: str, package: PackageEntry) -> Package:
    checksums = []
    if package.sha256:
        checksums.append(Checksum(ChecksumAlgorithm.SHA256, package.sha256))
    if package.md5:
        checksums.append(Checksum(ChecksumAlgorithm.MD5, package.md5))
    purl = ExternalPackageRef(
        ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", str(purl_of(package).to_string())
    )
    return Package(
        spdx_id=spdx_id,
        name=package.name,
        download_location=SpdxNoAssertion(),
        version=package.version or None,
        file_name=package.filename,
        files_analyzed=False,
        checksums=checksums,
        license_concluded=SpdxNoAssertion(),
        license_declared=SpdxNoAssertion(),
        license_comment=f"as stated by the package: {package.license}" if package.license else None,
        copyright_text=SpdxNoAssertion(),
        external_references=[purl],
        comment=None if package.known else (package.note or "not in the chosen channels"),
    )


def spdx_document(report: EnvironmentReport, *, name: str = "environment") -> Document:
    ids = {p.name: _spdx_id(i, p) for i, p in enumerate(report.packages, 1)}
    created = datetime.now(UTC).replace(microsecond=0)
    info = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name=report.name or name,
        document_namespace=f"https://stockade.invalid/spdx/{uuid.uuid4()}",
        creators=[Actor(ActorType.TOOL, TOOL)],
        created=created,
        creator_comment="\n".join(report.notes) or None,  # e.g. a record left out as invalid
    )
    relationships = [
        Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, ids[r])
        for r in report.roots
        if r in ids
    ]
    relationships += [
        Relationship(ids[p.name], RelationshipType.DEPENDS_ON, ids[d])
        for p in report.packages
        for d in p.depends
        if d in ids
    ]
    packages = [_spdx_package(ids[p.name], p) for p in report.packages]
    return Document(creation_info=info, packages=packages, relationships=relationships)


def spdx_json(report: EnvironmentReport, *, name: str = "environment") -> bytes:
    out = io.StringIO()
    write_document_to_stream(spdx_document(report, name=name), out, validate=True)
    return out.getvalue().encode()
