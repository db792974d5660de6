"""signing init|status|rotate: content-trust keys (conda-content-trust format, SPEC §8).

Private keys are made and kept here, in a folder of key files (0600; encrypted when
STOCKADE_SIGNING_PASSPHRASE is set); only signed public metadata goes to the server. The server
signs records with the pkg_mgr key file in its ``signing.keys_dir`` (or an external signer).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.cli.client import client, fail
from stockade.cli.output import AsJson, key_values, out, print_json, table, when
from stockade.core.clock import utcnow
from stockade.signing import builders
from stockade.signing.errors import KeyFileError
from stockade.signing.format import HEX_KEY, delegation, serialize
from stockade.signing.keys import KeyFolder, generate, passphrase_from_env, public_hex, write_key

signing_app = typer.Typer(
    help="Content trust: the root → key_mgr → pkg_mgr keys that sign what channels serve, in "
    "the format conda's content-trust plugin verifies. Needs security:manage (status: "
    "security:read).",
    no_args_is_help=True,
)
PASSPHRASE_ENV = "STOCKADE_SIGNING_PASSPHRASE"  # noqa: S105 - a variable name, not a secret


class Role(StrEnum):
    PKG_MGR = "pkg_mgr"
    KEY_MGR = "key_mgr"
    ROOT = "root"


def _passphrase() -> bytes | None:
    return passphrase_from_env(PASSPHRASE_ENV)


def _new_key(folder: Path, role: Role) -> tuple[Ed25519PrivateKey, Path]:
    key = generate()
    path = folder / f"{role.value}-{public_hex(key)[:12]}.key"
    try:
        write_key(path, key, _passphrase())
    except KeyFileError as exc:
        fail(exc.detail)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
    return key, path


def _find_key(folder: Path, wanted: list[str], role: str) -> Ed25519PrivateKey:
    found = KeyFolder.read(folder, _passphrase())
    for key in wanted:
        if key in found.keys:
            return found.keys[key]
    problems = "; ".join(f"{n}: {p}" for n, p in found.problems.items())
    fail(
        f"no key file in {folder} holds the current {role} key ({wanted[0][:16]}…)"
        + (f"; unreadable: {problems}" if problems else "")
    )


def _write_copy(folder: Path, name: str, envelope: dict[str, Any]) -> None:
    (folder / name).write_bytes(serialize(envelope))


def _upload(roots: list[dict[str, Any]], key_mgr: dict[str, Any] | None) -> dict[str, Any]:
    result: dict[str, Any] = client().post(
        "/signing/metadata", json={"roots": roots, "key_mgr": key_mgr}
    )
    return result


HSM_HELP = (
    "delegate pkg_mgr to this ed25519 public key (64 hex) held elsewhere (an HSM or a cloud KMS "
    "behind signing.signer_command) instead of making a pkg_mgr key file"
)


def _external(public_key: str | None) -> str | None:
    if public_key is not None and not HEX_KEY.fullmatch(public_key.strip().lower()):
        fail("--pkg-mgr-public-key must be an ed25519 public key as 64 hex characters")
    return public_key.strip().lower() if public_key else None


@signing_app.command("init")
def init(
    out_dir: Path = typer.Option(..., "--out", help="folder for the new key files (created)"),
    pkg_mgr_public_key: str | None = typer.Option(None, "--pkg-mgr-public-key", help=HSM_HELP),
) -> None:
    """Create the root, key_mgr and pkg_mgr keys and send 1.root.json and key_mgr.json."""
    external = _external(pkg_mgr_public_key)
    api = client()
    if api.get("/signing").get("set_up"):
        fail("signing is set up already on this server: use `stockade signing rotate`")
    try:
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        fail(f"cannot create {out_dir}: {exc.strerror}")
    now = utcnow()
    root, root_path = _new_key(out_dir, Role.ROOT)
    key_mgr, key_mgr_path = _new_key(out_dir, Role.KEY_MGR)
    pkg_public = external
    if pkg_public is None:
        pkg_mgr, pkg_path = _new_key(out_dir, Role.PKG_MGR)
        pkg_public = public_hex(pkg_mgr)
    root_env, key_mgr_env = builders.new_chain(root, key_mgr, pkg_public, now)
    _write_copy(out_dir, "1.root.json", root_env)
    _write_copy(out_dir, "key_mgr.json", key_mgr_env)
    status = _upload([root_env], key_mgr_env)
    out.print(f"root {public_hex(root)[:16]}… ({root_path.name}): keep this file OFFLINE")
    out.print(f"key_mgr {public_hex(key_mgr)[:16]}… ({key_mgr_path.name}): for rotations")
    if external is not None:
        out.print(
            f"pkg_mgr {external[:16]}… is held by your signer: set signing.signer_command on the "
            f"server; clients trust {out_dir / '1.root.json'}"
        )
    else:
        out.print(f"pkg_mgr {pkg_public[:16]}… ({pkg_path.name}): the server signs with it")
        out.print(
            f"put {pkg_path.name} in the server's signing.keys_dir (default DATA_DIR/keys) unless "
            f"{out_dir} is that folder; clients trust {out_dir / '1.root.json'}"
        )
    _print_warnings(status)


@signing_app.command("status")
def status(as_json: AsJson = False) -> None:
    """The chain, its expiries, what signs records on the server, and the signed channels."""
    data = client().get("/signing")
    if as_json:
        print_json(data)
        return
    if not data["set_up"]:
        out.print("signing is not set up: run `stockade signing init --out FOLDER`")
        return
    key_values(
        "signing",
        [
            ("root", f"version {data['root_version']}, expires {when(data['root_expires'])}"),
            (
                "key_mgr",
                f"version {data['key_mgr_version']}, expires {when(data['key_mgr_expires'])}",
            ),
            ("root keys", ", ".join(k[:16] + "…" for k in data["root_keys"])),
            ("key_mgr keys", ", ".join(k[:16] + "…" for k in data["key_mgr_keys"])),
            ("pkg_mgr keys", ", ".join(k[:16] + "…" for k in data["pkg_mgr_keys"])),
            ("signer", data["signer"]),
            ("metadata URL", data["metadata_url"]),
        ],
    )
    grid = table("signed channel", "records", "signed", "state")
    for c in data["channels"]:
        grid.add_row(
            c["name"], str(c["records"]), str(c["signed"]), "signing" if c["signing"] else "done"
        )
    out.print(grid)
    _print_warnings(data)


def _print_warnings(data: dict[str, Any]) -> None:
    for warning in data.get("warnings") or []:
        out.print(f"[yellow]warning:[/yellow] {warning}")


@signing_app.command("rotate")
def rotate(
    role: Role = typer.Argument(..., help="pkg_mgr, key_mgr or root"),
    keys: Path = typer.Option(
        ..., "--keys", help="the folder of key files (`signing init --out`); the new key goes there"
    ),
    pkg_mgr_public_key: str | None = typer.Option(
        None, "--pkg-mgr-public-key", help="with pkg_mgr: " + HSM_HELP
    ),
) -> None:
    """Replace a key: pkg_mgr (signed by key_mgr; channels are re-signed, the old key revoked),
    key_mgr (a new root version signed by root), or root (N+1.root.json signed by old and new)."""
    external = _external(pkg_mgr_public_key)
    if external is not None and role != Role.PKG_MGR:
        fail("--pkg-mgr-public-key goes with `rotate pkg_mgr` only")
    current = client().get("/signing/metadata")
    root_env, key_mgr_env = current["root"], current["key_mgr"]
    now = utcnow()
    roots: list[dict[str, Any]] = []
    new_key_mgr: dict[str, Any] | None = None
    if role == Role.PKG_MGR:
        key_mgr = _find_key(keys, delegation(root_env["signed"], "key_mgr")[0], "key_mgr")
        if external is not None:
            new_key_mgr = builders.rotate_pkg_mgr(key_mgr_env, key_mgr, external, now)
            status = _upload(roots, new_key_mgr)
            _write_copy(keys, "key_mgr.json", new_key_mgr)
            out.print(
                f"pkg_mgr delegated to {external[:16]}… (your signer's key): set "
                "signing.signer_command on the server; signed channels are signed again"
            )
            _print_warnings(status)
            return
        new, path = _new_key(keys, Role.PKG_MGR)
        new_key_mgr = builders.rotate_pkg_mgr(key_mgr_env, key_mgr, public_hex(new), now)
    elif role == Role.KEY_MGR:
        root = _find_key(keys, delegation(root_env["signed"], "root")[0], "root")
        new, path = _new_key(keys, Role.KEY_MGR)
        new_root, new_key_mgr = builders.rotate_key_mgr(root_env, key_mgr_env, root, new, now)
        roots.append(new_root)
    else:
        root = _find_key(keys, delegation(root_env["signed"], "root")[0], "root")
        new, path = _new_key(keys, Role.ROOT)
        roots.append(builders.rotate_root(root_env, root, new, now))
    status = _upload(roots, new_key_mgr)  # the folder's copies change only once it is accepted
    for envelope in roots:
        _write_copy(keys, f"{envelope['signed']['version']}.root.json", envelope)
    if new_key_mgr is not None:
        _write_copy(keys, "key_mgr.json", new_key_mgr)
    out.print(f"new {role.value} key {public_hex(new)[:16]}… in {path}")
    if role == Role.PKG_MGR:
        out.print(
            f"signed channels are being signed again: put {path.name} in the server's "
            "signing.keys_dir; the old pkg_mgr key is revoked (delete its file)"
        )
    _print_warnings(status)


__all__ = ["signing_app"]
