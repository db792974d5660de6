"""An air-gap bundle as a mirror's upstream (``airgap:NAME``): its repodata and its files.

The run picks the bundle (``airgap.imports.select_bundle``) and puts it, open and verified, in
``SourceConfig.bundle``; this source reads from it. Each file's bytes are checked twice while they
stream: against the manifest's sha256 (the bundle) and the record's (the sink).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from stockade.airgap.bundle import OpenBundle
from stockade.airgap.errors import BundleRefusedError
from stockade.airgap.manifest import package_path, repodata_path
from stockade.core.faults import crash_point
from stockade.core.urls import URLParseError, parse_url
from stockade.mirroring.source_config import SourceConfig
from stockade.mirroring.sources import RepodataFetch, Validators
from stockade.mirroring.transfer import TransferStoppedError, VerifyingSink, check_subdir

ZST = "repodata.json.zst"


def is_airgap(url: str) -> bool:
    try:
        return parse_url(url).scheme == "airgap"
    except URLParseError:
        return False


def channel_of(url: str) -> str:
    return parse_url(url).path


class AirgapSource:
    def __init__(self, config: SourceConfig) -> None:
        self._config = config

    @property
    def bundle(self) -> OpenBundle:
        if self._config.bundle is None:
            raise BundleRefusedError(
                "no air-gap bundle is being applied (a run picks one from the folder)",
                code="airgap:no-bundle",
            )
        return self._config.bundle

    def describe(self) -> str:
        bundle = self._config.bundle
        if bundle is None:
            return self._config.url
        return f"air-gap bundle {bundle.manifest.bundle_id} ({bundle.path.name})"

    def close(self) -> None:
        return None  # the run owns the bundle

    def file_url(self, subdir: str, filename: str, base_url: str | None = None) -> str:
        return f"{self._config.url}/{subdir}/{filename}"

    def fetch_repodata(self, subdir: str, previous: Validators | None) -> RepodataFetch:
        check_subdir(subdir)
        manifest = self.bundle.manifest
        if subdir not in manifest.subdirs:
            raise BundleRefusedError(
                f"bundle {manifest.bundle_id} carries no {subdir!r} (it has "
                f"{', '.join(sorted(manifest.subdirs))}): the mirror's subdirs must be among them",
                code="airgap:no-subdir",
            )
        raw = self.bundle.read(repodata_path(subdir))
        digest = hashlib.sha256(raw).hexdigest()
        validators = Validators(manifest.bundle_id, None, ZST, digest)
        same = previous is not None and previous.sha256 == digest
        return RepodataFetch(same, None if same else raw, ZST, validators)

    def fetch_file(
        self,
        subdir: str,
        filename: str,
        dest_dir: Path,
        *,
        sha256: str,
        size: int | None,
        url: str | None = None,
    ) -> Path:
        return copy_member(self.bundle, subdir, filename, dest_dir, sha256, size, None)


def copy_member(
    bundle: OpenBundle,
    subdir: str,
    filename: str,
    dest_dir: Path,
    sha256: str,
    size: int | None,
    stop: threading.Event | None,
) -> Path:
    """The package file out of the bundle into ``dest_dir``, verified; the path of the copy."""
    member = package_path(subdir, filename)
    if not bundle.has(member):
        raise BundleRefusedError(
            f"{subdir}/{filename} is in the bundle's repodata but not in the bundle, and this "
            "mirror does not have it from an earlier bundle: export a full bundle",
            code="airgap:missing-file",
        )
    # The sink checks the record's sha256; when the manifest lists the same one, that one
    # pass checks both (a file is hashed once, not twice).
    same = bundle.manifest.files[member][0] == sha256.lower()
    sink = VerifyingSink(dest_dir, sha256, size, f"{bundle.path.name}:{member}")
    try:
        for block in bundle.stream(member, checked_by_caller=same):
            if stop is not None and stop.is_set():
                raise TransferStoppedError()
            sink.write(block)
        copied = sink.finish()
    except BaseException:
        sink.abort()
        raise
    crash_point("airgap:after-file")  # a crash test: some files out of the bundle, not all
    return copied
