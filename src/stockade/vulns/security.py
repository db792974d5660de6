"""``info/security.json`` of a stored package: the vulnerabilities its build mitigates (SPEC §7).

``PackageContent`` does not keep ``security.json``, so :class:`BlobSecurityReader` reads it from the
package archive in the blob store, once per sha256 (the answer is cached for the reader's life). The
file's shape::

    {"vulns_mitigated": ["CVE-2024-1234", "GHSA-xxxx-xxxx-xxxx"]}

A missing blob (a passive mirror's record not fetched yet), a missing or unreadable file, or a
malformed field all mean "nothing mitigated".
"""

from __future__ import annotations

from typing import Protocol

import orjson
from conda_package_streaming.package_streaming import stream_conda_info

from stockade.storage.interfaces import BlobStore

__all__ = ["BlobSecurityReader", "SecurityReader", "mitigated_ids"]

_MEMBER = "info/security.json"
_MAX_BYTES = 1 << 20


class SecurityReader(Protocol):
    def __call__(self, sha256: str, filename: str) -> frozenset[str]: ...


def mitigated_ids(document: bytes) -> frozenset[str]:
    """The ids in ``vulns_mitigated`` of a ``security.json`` document (upper-cased)."""
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError:
        return frozenset()
    listed = doc.get("vulns_mitigated") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        return frozenset()
    return frozenset(v.strip().upper() for v in listed if isinstance(v, str) and v.strip())


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
