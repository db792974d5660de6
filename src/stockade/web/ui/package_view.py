"""What the package page shows: the selected build (record, about, files, link scripts) and, on
its vulnerability tab, the advisories matching each version and build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from stockade.audit.downloads_reports import file_totals, package_totals
from stockade.channels.browse import PackageNotFoundError
from stockade.channels.models import Artifact, Channel, PackageContent
from stockade.channels.signature_state import SignatureInfo, signature_info
from stockade.conda.repodata import decode_record
from stockade.core.errors import InvalidInputError
from stockade.vulns.advisory_views import worst_of
from stockade.vulns.package_vulns import ArtifactVuln
from stockade.web.ui.render import safe_url

MAX_PATHS = 500
LINKS = (("home", "Home page"), ("dev_url", "Development"), ("doc_url", "Documentation"))


@dataclass(frozen=True)
class PackageDownloads:
    """A package's downloads in a channel, from the daily counts (written every few seconds)."""

    total: int
    recent: int  # the last 30 days
    by_file: dict[tuple[str, str], int]  # (subdir, filename) -> downloads


def package_downloads(session: Session, channel_id: int, name: str) -> PackageDownloads:
    total, recent = package_totals(session, channel_id, name)
    return PackageDownloads(total, recent, file_totals(session, channel_id, name))


@dataclass(frozen=True)
class FileEntry:
    path: str
    kind: str
    size: int | None


@dataclass(frozen=True)
class BuildDetails:
    artifact: Artifact
    depends: list[str]
    constrains: list[str]
    record: dict[str, Any]
    license: str | None
    summary: str | None
    description: str | None
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, http(s) url)
    files: list[FileEntry] = field(default_factory=list)
    file_count: int = 0
    unpacked_size: int | None = None
    link_scripts: list[str] = field(default_factory=list)


def select_build(builds: list[Artifact], wanted: str | None) -> Artifact:
    """The build named ``subdir/filename``, or the newest one."""
    if not wanted:
        return builds[0]
    for artifact in builds:
        if f"{artifact.subdir}/{artifact.filename}" == wanted:
            return artifact
    raise PackageNotFoundError(f"build {wanted!r} not found")


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v) for v in value]


def _files(paths: list[Any]) -> list[FileEntry]:
    entries = []
    for entry in paths[:MAX_PATHS]:
        if not isinstance(entry, dict):
            continue
        size = entry.get("size")
        entries.append(
            FileEntry(
                path=str(entry.get("path", "")),
                kind=str(entry.get("type") or "file"),
                size=size if isinstance(size, int) else None,
            )
        )
    return entries


def _record(artifact: Artifact) -> dict[str, Any]:
    try:
        return decode_record(artifact.record_json)
    except (InvalidInputError, ValueError):
        return {}


def build_details(artifact: Artifact, content: PackageContent | None) -> BuildDetails:
    record = _record(artifact)
    about: dict[str, Any] = content.about_json if content and content.about_json else {}
    links = [(label, url) for key, label in LINKS if (url := safe_url(about.get(key)))]
    paths = content.paths_json if content and isinstance(content.paths_json, list) else []
    return BuildDetails(
        artifact=artifact,
        depends=_strings(record.get("depends")),
        constrains=_strings(record.get("constrains")),
        record=record,
        license=artifact.license or _text(about.get("license")) or _text(record.get("license")),
        summary=_text(about.get("summary")) or artifact.summary,
        description=_text(about.get("description")),
        links=links,
        files=_files(paths),
        file_count=len(paths),
        unpacked_size=content.unpacked_size if content else None,
        link_scripts=list(content.link_scripts) if content and content.link_scripts else [],
    )


def build_signatures(channel: Channel, builds: list[Artifact]) -> dict[int, SignatureInfo]:
    """Each build's signature state (its Signature column and line), by artifact id."""
    return {b.id: signature_info(b, channel.sign) for b in builds}


# ------------------------------------------------------------------------- the vulnerability tab


@dataclass(frozen=True)
class BuildStatus:
    """An advisory's status on one build, and where it came from (auto, curation, security-json)."""

    artifact: Artifact
    status: str
    origin: str


@dataclass(frozen=True)
class AdvisoryOnVersion:
    """An advisory matching builds of one version; ``worst``: the most severe of their statuses."""

    vuln: ArtifactVuln
    builds: list[BuildStatus]
    worst: str


@dataclass(frozen=True)
class VersionVulns:
    version: str
    advisories: list[AdvisoryOnVersion]


def vulns_by_version(builds: list[Artifact], found: list[ArtifactVuln]) -> list[VersionVulns]:
    """Matches grouped by version (in the order of ``builds``: newest first), then advisory (in
    the order found: highest score first), each listing its builds."""
    by_id = {a.id: a for a in builds}
    grouped: dict[str, dict[str, tuple[ArtifactVuln, list[BuildStatus]]]] = {}
    for match in found:
        artifact = by_id.get(match.artifact_id)
        if artifact is None:
            continue
        per_version = grouped.setdefault(artifact.version, {})
        _, statuses = per_version.setdefault(match.vuln_id, (match, []))
        statuses.append(BuildStatus(artifact, match.status, match.status_origin))
    versions = list(dict.fromkeys(a.version for a in builds))
    return [
        VersionVulns(
            version,
            [
                AdvisoryOnVersion(vuln, statuses, worst_of(s.status for s in statuses) or "")
                for vuln, statuses in grouped[version].values()
            ],
        )
        for version in versions
        if version in grouped
    ]
