"""``info/security.json`` of a stored package: the vulnerabilities its build mitigates (SPEC §7).

Package reading keeps ``vulns_mitigated`` in ``package_contents`` (:func:`stored_mitigations` reads
it in bulk). Contents recorded before that column existed have ``NULL`` there: for those,
:class:`BlobSecurityReader` reads the file from the package archive in the blob store, once per
sha256 (the answer is cached for the reader's life). The file's shape::

    {"vulns_mitigated": ["CVE-2024-1234", "GHSA-xxxx-xxxx-xxxx"]}

A missing blob (a passive mirror's record not fetched yet), a missing or unreadable file, or a
malformed field all mean "nothing mitigated".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from conda_package_streaming.package_streaming import stream_conda_info
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.channels.models import PackageContent
from stockade.conda.metadata import mitigated_ids as _listed
from stockade.storage.interfaces import BlobStore

__all__ = ["BlobSecurityReader", "SecurityReader", "mitigated_ids", "stored_mitigations"]

_CHUNK = 500

_MEMBER = "info/security.json"
_MAX_BYTES = 1 << 20


class SecurityReader(Protocol):
    def __call__(self, sha256: str, filename: str) -> frozenset[str]: ...


def mitigated_ids(document: bytes) -> frozenset[str]:
    """The ids in ``vulns_mitigated`` of a ``security.json`` document (upper-cased)."""
    return frozenset(_listed(document))


def stored_mitigations(session: Session, sha256s: Iterable[str]) -> dict[str, frozenset[str]]:
    """What package reading kept, by sha256; absent: unknown (no content row, or read before)."""
    wanted = sorted(set(sha256s))
    found: dict[str, frozenset[str]] = {}
    for start in range(0, len(wanted), _CHUNK):
        query = select(PackageContent.sha256, PackageContent.vulns_mitigated).where(
            PackageContent.sha256.in_(wanted[start : start + _CHUNK]),
            PackageContent.vulns_mitigated.is_not(None),
        )
        for sha, listed in session.execute(query):
            found[sha] = frozenset(listed or ())
    return found


class BlobSecurityReader:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._cache: dict[str, frozenset[str]] = {}

    def __call__(self, sha256: str, filename: str) -> frozenset[str]:
        known = self._cache.get(sha256)
        if known is None:
            known = self._cache[sha256] = self._read(sha256, filename)
        return known

    def _read(self, sha256: str, filename: str) -> frozenset[str]:
        if not self.blobs.exists(sha256):
            return frozenset()
        try:
            with self.blobs.open(sha256) as fh:
                for tar, member in stream_conda_info(filename, fh):
                    if member.name != _MEMBER or not member.isfile():
                        continue
                    if member.size > _MAX_BYTES:
                        return frozenset()
                    extracted = tar.extractfile(member)
                    return mitigated_ids(extracted.read()) if extracted else frozenset()
        except Exception:  # noqa: BLE001 - a broken archive mitigates nothing; it was validated on upload
            return frozenset()
        return frozenset()
