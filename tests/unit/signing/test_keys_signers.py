"""Key files (0600, never overwritten, optional passphrase) and the two signers: a key file and an
external signer command whose every answer is checked before it is used."""

from __future__ import annotations

import stat
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.settings import SigningSettings
from stockade.signing.errors import KeyFileError, SignerUnavailableError
from stockade.signing.keys import KeyFolder, public_hex, read_key, write_key
from stockade.signing.signers import CommandSigner, KeySigner, open_signer

PASSPHRASE = b"correct horse battery staple"

SIGNER = textwrap.dedent(
    """
    import sys
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
    mode = sys.argv[2] if len(sys.argv) > 2 else "good"
    raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ).hex()
    print("nonsense" if mode == "no-key" else raw, flush=True)
    for line in sys.stdin:
        data = bytes.fromhex(line.strip())
        if mode == "wrong":
            data += b"x"
        if mode == "garbage":
            print("not a signature", flush=True)
        elif mode == "silent":
            sys.stdin.read()
        else:
            print(key.sign(data).hex(), flush=True)
    """
)


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "signer.py"
    path.write_text(SIGNER)
    return path


def _key_file(folder: Path, name: str = "pkg_mgr.key") -> tuple[Ed25519PrivateKey, Path]:
    key = Ed25519PrivateKey.generate()
    path = folder / name
    write_key(path, key, None)
    return key, path


def test_a_key_file_is_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    key, path = _key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_hex(read_key(path, None)) == public_hex(key)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_key(path, Ed25519PrivateKey.generate(), None)
    assert path.read_bytes() == before


def test_a_passphrase_protects_the_key_and_errors_never_show_its_bytes(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "secret.key"
    write_key(path, key, PASSPHRASE)
    pem = path.read_bytes()
    assert b"ENCRYPTED" in pem
    assert public_hex(read_key(path, PASSPHRASE)) == public_hex(key)
    with pytest.raises(KeyFileError, match="no passphrase was given") as missing:
        read_key(path, None)
    with pytest.raises(KeyFileError, match="passphrase is wrong") as wrong:
        read_key(path, b"nope")
    body = pem.decode().splitlines()[1]
    for err in (missing.value, wrong.value):
        assert body not in err.detail and PASSPHRASE.decode() not in err.detail


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"hello", "not a PEM private key"), (None, "cannot read key file")],
)
def test_unreadable_key_files_say_why(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "x.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KeyFileError, match=message):
        read_key(path, None)


def test_a_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.key"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError, match="ed25519"):
        read_key(path, None)


def test_the_key_folder_lists_keys_and_problems(tmp_path: Path) -> None:
    key, _ = _key_file(tmp_path, "a.key")
    (tmp_path / "b.key").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("ignored")
    found = KeyFolder.read(tmp_path, None)
    assert list(found.keys) == [public_hex(key)]
    assert set(found.problems) == {"b.key"}
    assert KeyFolder.read(tmp_path / "missing", None).keys == {}


def test_open_signer_picks_the_delegated_key_file(tmp_path: Path) -> None:
    _other, _ = _key_file(tmp_path, "other.key")
    key, _ = _key_file(tmp_path, "pkg.key")
    settings = SigningSettings(keys_dir=tmp_path)
    signer = open_signer(settings, tmp_path, [public_hex(key)])
    assert isinstance(signer, KeySigner) and signer.public_key == public_hex(key)
    (sig,) = signer.sign_many([b"data"])
    key.public_key().verify(bytes.fromhex(sig), b"data")
    with pytest.raises(SignerUnavailableError, match="no key file") as missing:
        open_signer(settings, tmp_path, ["ab" * 32])
    assert "-----BEGIN" not in missing.value.detail


def test_open_signer_with_an_encrypted_key_needs_the_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Ed25519PrivateKey.generate()
    write_key(tmp_path / "pkg.key", key, PASSPHRASE)
    settings = SigningSettings(keys_dir=tmp_path, passphrase_env="TEST_SIGNING_PASS")
    monkeypatch.delenv("TEST_SIGNING_PASS", raising=False)
    with pytest.raises(SignerUnavailableError, match="no passphrase was given"):
        open_signer(settings, tmp_path, [public_hex(key)])
    monkeypatch.setenv("TEST_SIGNING_PASS", PASSPHRASE.decode())
    assert open_signer(settings, tmp_path, [public_hex(key)]).public_key == public_hex(key)


def test_an_external_signer_signs_and_is_checked(tmp_path: Path) -> None:
    key, path = _key_file(tmp_path)
    signer = CommandSigner([sys.executable, str(_script(tmp_path)), str(path)], timeout_s=20)
    try:
        assert signer.public_key == public_hex(key)
        items = [b"one", b"two" * 100, b""]
        for item, sig in zip(items, signer.sign_many(items), strict=True):
            key.public_key().verify(bytes.fromhex(sig), item)
    finally:
        signer.close()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("wrong", "does not verify with its public key"),
        ("garbage", "not a signature"),
        ("silent", "no answer in"),
    ],
)
def test_a_bad_external_signer_is_refused(tmp_path: Path, mode: str, message: str) -> None:
    _, path = _key_file(tmp_path)
    command = [sys.executable, str(_script(tmp_path)), str(path), mode]
    signer = CommandSigner(command, timeout_s=1)
    try:
        with pytest.raises(SignerUnavailableError, match=message):
            signer.sign_many([b"data"])
    finally:
        signer.close()


def test_an_external_signer_must_print_its_key_first(tmp_path: Path) -> None:
    _, path = _key_file(tmp_path)
    with pytest.raises(SignerUnavailableError, match="public key first"):
        CommandSigner([sys.executable, str(_script(tmp_path)), str(path), "no-key"], timeout_s=20)


def test_a_missing_signer_command_is_named(tmp_path: Path) -> None:
    with pytest.raises(SignerUnavailableError, match="cannot be started"):
        CommandSigner([str(tmp_path / "no-such-signer")], timeout_s=5)


def test_open_signer_refuses_a_command_with_another_key(tmp_path: Path) -> None:
    _, path = _key_file(tmp_path)
    settings = SigningSettings(
        signer_command=[sys.executable, str(_script(tmp_path)), str(path)], signer_timeout_s=20
    )
    with pytest.raises(SignerUnavailableError, match="is not the pkg_mgr key"):
        open_signer(settings, tmp_path, ["ab" * 32])
