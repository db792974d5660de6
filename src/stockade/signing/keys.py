"""ed25519 private keys in files (PEM PKCS#8, mode 0600, optionally passphrase-encrypted).

Private keys never enter the database: the CLI writes them to a folder, the server reads the one
it signs with from ``signing.keys_dir``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from stockade.signing.errors import KeyFileError

KEY_SUFFIX = ".key"


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_key(path: Path, key: Ed25519PrivateKey, passphrase: bytes | None) -> None:
    """Write ``key`` to a new file readable by its owner only; never overwrites."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists: refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())


def read_key(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    """The ed25519 key in ``path``; KeyFileError says why it cannot be read (never its bytes)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        what = "is encrypted and no passphrase was given" if not passphrase else "is not encrypted"
        raise KeyFileError(f"key file {path} {what}") from None
    except ValueError:
        raise KeyFileError(
            f"key file {path} is not a PEM private key, or the passphrase is wrong"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} does not hold an ed25519 key")
    return key


@dataclass
class KeyFolder:
    """The key files of a folder, by public key; files that cannot be read are listed with why."""

    keys: dict[str, Ed25519PrivateKey]
    problems: dict[str, str]
    paths: dict[str, Path]

    @classmethod
    def read(cls, folder: Path, passphrase: bytes | None) -> KeyFolder:
        keys: dict[str, Ed25519PrivateKey] = {}
        problems: dict[str, str] = {}
        paths: dict[str, Path] = {}
        with contextlib.suppress(OSError):
            for path in sorted(folder.glob(f"*{KEY_SUFFIX}")):
                try:
                    key = read_key(path, passphrase)
                except KeyFileError as exc:
                    problems[path.name] = exc.detail
                    continue
                hex_key = public_hex(key)
                keys[hex_key] = key
                paths[hex_key] = path
        return cls(keys, problems, paths)


def passphrase_from_env(variable: str) -> bytes | None:
    value = os.environ.get(variable)
    return value.encode() if value else None
