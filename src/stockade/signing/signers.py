"""Who signs package records: a key file, or an external signer command (an HSM, a cloud KMS).

``open_signer`` picks the one whose public key the current key_mgr delegates pkg_mgr to. An
external signer is started once per signing pass and speaks lines on stdin/stdout: it first prints
its public key (64 hex), then answers each line of hex-encoded bytes with a line holding the hex
ed25519 signature of those bytes (docs/formats/signing.md has an example).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import subprocess
import time
from pathlib import Path
from typing import IO, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from stockade.settings import SigningSettings
from stockade.signing.errors import SignerUnavailableError
from stockade.signing.format import HEX_KEY, HEX_SIGNATURE
from stockade.signing.keys import KeyFolder, passphrase_from_env

log = logging.getLogger("stockade.signing")


class Signer(Protocol):
    public_key: str

    def sign_many(self, items: list[bytes]) -> list[str]:
        """Hex ed25519 signatures of ``items``, in order."""
        ...

    def close(self) -> None: ...


class KeySigner:
    def __init__(self, key: Ed25519PrivateKey, public_key: str) -> None:
        self._key = key
        self.public_key = public_key

    def sign_many(self, items: list[bytes]) -> list[str]:
        sign = self._key.sign
        return [sign(item).hex() for item in items]

    def close(self) -> None:
        return None


class CommandSigner:
    """An external signer process; every signature it returns is checked before it is used."""

    def __init__(self, command: list[str], timeout_s: float) -> None:
        self.timeout_s = timeout_s
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - the administrator's configured program
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        except OSError as exc:
            raise SignerUnavailableError(
                f"the signer command {command[0]!r} cannot be started: {exc.strerror}"
            ) from None
        first = self._line()
        if not HEX_KEY.fullmatch(first):
            self.close()
            raise SignerUnavailableError("the signer command did not print its public key first")
        self.public_key = first
        self._verify = Ed25519PublicKey.from_public_bytes(bytes.fromhex(first)).verify

    def _line(self) -> str:
        out = self._proc.stdout
        assert out is not None
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            deadline = time.monotonic() + self.timeout_s
            if not sel.select(max(0.0, deadline - time.monotonic())):
                self.close()
                raise SignerUnavailableError(
                    f"the signer command gave no answer in {self.timeout_s} s"
                )
        return out.readline().strip()

    def sign_many(self, items: list[bytes]) -> list[str]:
        stdin: IO[str] | None = self._proc.stdin
        assert stdin is not None
        signatures: list[str] = []
        for item in items:
            try:
                stdin.write(item.hex() + "\n")
                stdin.flush()
            except OSError:
                raise SignerUnavailableError("the signer command stopped") from None
            sig = self._line()
            if not HEX_SIGNATURE.fullmatch(sig):
                raise SignerUnavailableError(
                    "the signer command answered something not a signature"
                )
            try:
                self._verify(bytes.fromhex(sig), item)
            except InvalidSignature:
                raise SignerUnavailableError(
                    "the signer command's signature does not verify with its public key"
                ) from None
            signatures.append(sig)
        return signatures

    def close(self) -> None:
        if self._proc.poll() is None:
            if self._proc.stdin is not None:
                self._close_pipe(self._proc.stdin)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):  # no file handle left to the GC
            if pipe is not None:
                self._close_pipe(pipe)

    @staticmethod
    def _close_pipe(pipe: IO[str]) -> None:
        with contextlib.suppress(OSError):  # the signer may be gone: nothing to flush to
            pipe.close()


def keys_dir(settings: SigningSettings, data_dir: Path) -> Path:
    return settings.keys_dir or data_dir / "keys"


def open_signer(settings: SigningSettings, data_dir: Path, wanted: list[str]) -> Signer:
    """A signer for one of the ``wanted`` public keys; SignerUnavailableError says why not."""
    if settings.signer_command:
        signer = CommandSigner(settings.signer_command, settings.signer_timeout_s)
        if signer.public_key not in wanted:
            signer.close()
            raise SignerUnavailableError(
                f"the signer command's key {signer.public_key[:16]}… is not the pkg_mgr key the "
                "current key_mgr.json delegates to"
            )
        return signer
    folder = keys_dir(settings, data_dir)
    found = KeyFolder.read(folder, passphrase_from_env(settings.passphrase_env))
    for key in wanted:
        if key in found.keys:
            return KeySigner(found.keys[key], key)
    why = "; ".join(f"{name}: {problem}" for name, problem in found.problems.items())
    raise SignerUnavailableError(
        f"no key file in {folder} holds the pkg_mgr key {', '.join(k[:16] + '…' for k in wanted)}"
        + (f" ({why})" if why else "")
    )
