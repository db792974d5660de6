"""Content trust in functional tests: keys made with Stockade's builders (as the CLI makes them),
served metadata read as a client reads it, and a search for private key material anywhere."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import zstandard
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from stockade.conda.shards import read_shard, read_shard_index
from stockade.signing import builders
from stockade.signing.keys import public_hex, write_key

PASSWORD = "a-long-password-for-tests"


@dataclass
class Trust:
    """The private keys of a chain and the metadata made with them (newest last)."""

    root: Ed25519PrivateKey
    key_mgr: Ed25519PrivateKey
    pkg_mgr: Ed25519PrivateKey
    roots: list[dict[str, Any]]
    key_mgr_env: dict[str, Any]
    every_key: list[Ed25519PrivateKey] = field(default_factory=list)

    @classmethod
    def new(cls, now: datetime | None = None) -> Trust:
        keys = [Ed25519PrivateKey.generate() for _ in range(3)]
        root_env, key_mgr_env = builders.new_chain(
            keys[0], keys[1], public_hex(keys[2]), now or datetime.now(UTC)
        )
        return cls(*keys, roots=[root_env], key_mgr_env=key_mgr_env, every_key=list(keys))

    def fresh_key(self) -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        self.every_key.append(key)
        return key


def put_key(folder: Path, key: Ed25519PrivateKey, passphrase: bytes | None = None) -> Path:
    """A key file the server can sign with (its signing.keys_dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pkg_mgr-{public_hex(key)[:12]}.key"
    write_key(path, key, passphrase)
    return path


def post_metadata(
    client: httpx.Client, roots: list[dict[str, Any]], key_mgr: dict[str, Any] | None
) -> httpx.Response:
    return client.post("/api/v1/signing/metadata", json={"roots": roots, "key_mgr": key_mgr})


def get_json(client: httpx.Client, path: str) -> Any:
    response = client.get(path)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return orjson.loads(response.content)


def repodata(client: httpx.Client, channel: str, subdir: str) -> dict[str, Any]:
    return dict(get_json(client, f"/conda/{channel}/{subdir}/repodata.json"))


def repodata_zst(client: httpx.Client, channel: str, subdir: str) -> dict[str, Any]:
    response = client.get(f"/conda/{channel}/{subdir}/repodata.json.zst")
    assert response.status_code == 200, response.text
    return dict(orjson.loads(zstandard.ZstdDecompressor().decompress(response.content)))


def shards(client: httpx.Client, channel: str, subdir: str) -> list[dict[str, Any]]:
    base = f"/conda/{channel}/{subdir}"
    index = client.get(f"{base}/repodata_shards.msgpack.zst")
    assert index.status_code == 200, index.text
    found = []
    for digest in read_shard_index(index.content)["shards"].values():
        data = client.get(f"{base}/shards/{bytes(digest).hex()}.msgpack.zst")
        assert data.status_code == 200, data.text
        found.append(dict(read_shard(data.content)))
    return found


def subdir_state(client: httpx.Client, channel: str, subdir: str) -> dict[str, Any]:
    rows = get_json(client, f"/api/v1/channels/{channel}/subdirs")
    (row,) = [r for r in rows if r["subdir"] == subdir]
    return dict(row)


def wait_failure(client: httpx.Client, channel: str, subdir: str, timeout: float = 60) -> str:
    """Until the subdir's last publication failed; its reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = subdir_state(client, channel, subdir)
        if row["failure"]:
            return str(row["failure"])
        time.sleep(0.05)
    raise AssertionError(f"{channel}/{subdir} did not fail: {row}")


def new_user_token(admin: httpx.Client) -> str:
    """A signed-in user with no role (no security permission)."""
    name = f"u-{uuid.uuid4().hex[:10]}"
    made = admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert made.status_code == 201, made.text
    issued = admin.post("/api/v1/tokens", json={"name": name, "expires_in_days": 7, "user": name})
    assert issued.status_code == 201, issued.text
    return str(issued.json()["token"])


class Logs(logging.Handler):
    """Every log record, formatted with its traceback (to search them for secrets)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


def problem_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with this status (and stable code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert {"type", "title", "status", "detail"} <= set(body)
    if code is not None:
        assert body["code"] == code, body
    return body


# -- private key material -----------------------------------------------------------------------


def secrets_of(
    keys: list[Ed25519PrivateKey], files: list[Path], passphrase: bytes | None = None
) -> list[str]:
    """Strings that would betray a private key: its raw bytes (hex), its PEM body lines, and the
    body lines of the key ``files`` (encrypted ones differ)."""
    found = []
    for path in files:
        found += [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("-----")]
    for key in keys:
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        found.append(raw.hex())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        found += [line for line in pem.splitlines() if not line.startswith("-----")]
    if passphrase:
        found.append(passphrase.decode())
    return found


def leaks_in_database(engine: Engine, secrets: list[str]) -> list[str]:
    """``table.column`` of every value holding one of ``secrets`` (text, bytes or their hex)."""
    leaks = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            result = conn.execute(text(f'SELECT * FROM "{table}"'))
            columns = list(result.keys())
            for row in result:
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    if isinstance(value, (bytes, memoryview)):
                        data = bytes(value)
                        shown = data.decode("latin-1") + data.hex()
                    else:
                        shown = str(value)
                    if any(secret in shown for secret in secrets):
                        leaks.append(f"{table}.{column}")
    return leaks
