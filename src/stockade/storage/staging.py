"""Stream incoming bytes to a staging file while hashing them (sha256, md5, size)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from stockade.core.errors import TooLargeError


@dataclass(frozen=True)
class StagedFile:
    path: Path
    filename: str
    sha256: str
    md5: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class StagingWriter:
    """Write chunks to a temporary file in ``directory``; refuse more than ``max_size`` bytes."""

    def __init__(self, directory: Path, filename: str, *, max_size: int) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
        self._fh: BinaryIO = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.filename = filename
        self.max_size = max_size
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_size:
            self.abort()
            raise TooLargeError(
                f"{self.filename}: larger than the {self.max_size}-byte upload limit",
                code="package:archive-size",
                rule="archive-size",
            )
        self._sha256.update(chunk)
        self._md5.update(chunk)
        self._fh.write(chunk)

    def finish(self) -> StagedFile:
        self._fh.close()
        return StagedFile(
            path=self.path,
            filename=self.filename,
            sha256=self._sha256.hexdigest(),
            md5=self._md5.hexdigest(),
            size=self.size,
        )

    def abort(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)


def stage_stream(
    source: BinaryIO, directory: Path, filename: str, *, max_size: int, chunk: int = 1 << 20
) -> StagedFile:
    writer = StagingWriter(directory, filename, max_size=max_size)
    try:
        while block := source.read(chunk):
            writer.write(block)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()
