"""py-rattler as the real conda client: solve and install against a live server over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rattler import Channel, ChannelConfig, Gateway, RepoDataRecord, SourceConfig, install, solve


def channel(url: str) -> Channel:
    """A channel by full URL (``http://host/conda/name`` or with ``/t/TOKEN/``)."""
    base, _, name = url.rstrip("/").rpartition("/conda/")
    return Channel(name, ChannelConfig(channel_alias=base + "/conda/"))


def solve_specs(
    url: str,
    specs: list[str],
    cache: Path,
    *,
    sharded: bool = True,
    platforms: list[str] | None = None,
) -> list[RepoDataRecord]:
    gateway = Gateway(cache_dir=cache, default_config=SourceConfig(sharded_enabled=sharded))
    return asyncio.run(
        solve([channel(url)], specs, gateway=gateway, platforms=platforms or ["linux-64", "noarch"])
    )


def install_records(records: list[RepoDataRecord], prefix: Path, cache: Path) -> None:
    asyncio.run(install(records, target_prefix=prefix, cache_dir=cache, show_progress=False))
