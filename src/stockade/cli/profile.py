"""The client profile: which server and token the CLI talks to.

Stored in ``$XDG_CONFIG_HOME/stockade/profile.toml`` (mode 0600). ``STOCKADE_URL`` and
``STOCKADE_TOKEN`` are used when set, and when no profile is stored.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Profile:
    url: str
    token: str | None


def profile_path() -> Path:
    explicit = os.environ.get("STOCKADE_PROFILE")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "stockade" / "profile.toml"


def load_profile() -> Profile | None:
    env_url, env_token = os.environ.get("STOCKADE_URL"), os.environ.get("STOCKADE_TOKEN")
    stored: dict[str, str] = {}
    path = profile_path()
    if path.is_file():
        with path.open("rb") as fh:
            stored = {k: str(v) for k, v in tomllib.load(fh).items()}
    url = env_url or stored.get("url")
    if not url:
        return None
    token = env_token or (
        stored.get("token") if not env_url or env_url == stored.get("url") else None
    )
    return Profile(url=url.rstrip("/"), token=token)


def save_profile(profile: Profile) -> Path:
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"url = {json.dumps(profile.url)}"]
    if profile.token:
        lines.append(f"token = {json.dumps(profile.token)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def forget_profile() -> bool:
    path = profile_path()
    if path.is_file():
        path.unlink()
        return True
    return False
