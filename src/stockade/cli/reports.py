"""report env FILE|--spec …, report channel CHANNEL, report package CHANNEL NAME (SPEC §7)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import typer

from stockade.cli.client import ApiClient, answer_problem, client, fail, unreachable

report_app = typer.Typer(
    help="Vulnerability reports of environments, packages and channels; SBOMs.",
    no_args_is_help=True,
)
FORMATS = ("json", "csv", "cyclonedx", "spdx")
MAX_FILE = 5 * 1024 * 1024


def _send(api: ApiClient, method: str, path: str, **kwargs: Any) -> bytes:
    base = api.profile.url + "/api/v1"
    try:
        with httpx.Client(base_url=base, headers=api.headers, timeout=api.timeout) as http:
            response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        fail(unreachable(api.profile.url, exc))
    problem = answer_problem(response)
    if problem:
        fail(problem)
    return response.content


def _emit(body: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(body.decode("utf-8", "replace"))
        if not body.endswith(b"\n"):
            sys.stdout.write("\n")
        return
    try:
        output.write_bytes(body)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    typer.echo(f"wrote {output} ({len(body)} bytes)", err=True)


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        fail(f"--format must be one of {', '.join(allowed)} (got {fmt!r})")


@report_app.command("env")
def env(
    file: Path | None = typer.Argument(
        None, help="environment.yml, explicit list, conda-lock.yml or pixi.lock"
    ),
    spec: list[str] = typer.Option([], "--spec", "-s", help="a match spec (repeatable)"),
    channel: list[str] = typer.Option([], "--channel", "-c", help="channel (repeatable)"),
    platform: str | None = typer.Option(None, help="linux-64 by default"),
    kind: str | None = typer.Option(
        None, help="environment | explicit | conda-lock | pixi (detected by default)"
    ),
    fmt: str = typer.Option("json", "--format", "-f", help=" | ".join(FORMATS)),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file"),
) -> None:
    """Report every vulnerability of an environment, with the path from the root to each."""
    _check_format(fmt, FORMATS)
    if (file is None) == (not spec):
        fail("give either an environment FILE or one or more --spec")
    params: dict[str, Any] = {"format": fmt}
    if channel:
        params["channel"] = channel
    if platform:
        params["platform"] = platform
    api = client()
    if file is not None:
        try:
            if file.stat().st_size > MAX_FILE:
                fail(f"{file} is larger than {MAX_FILE} bytes")
            data = file.read_bytes()
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
        form = {"kind": kind} if kind else {}
        files = {"file": (file.name, data, "application/octet-stream")}
        body = _send(api, "POST", "/reports/env", params=params, files=files, data=form)
    else:
        payload = {"specs": spec, "channels": channel, "platform": platform}
        body = _send(api, "POST", "/reports/env", params=params, json=payload)
    _emit(body, output)


@report_app.command("channel")
def channel_report(
    channel: str,
    fmt: str = typer.Option("json", "--format", "-f", help="json | csv"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file"),
) -> None:
    """Every matched artifact of a channel, one row per (artifact, vulnerability)."""
    _check_format(fmt, ("json", "csv"))
    body = _send(client(), "GET", f"/channels/{channel}/vulnerabilities", params={"format": fmt})
    _emit(body, output)


@report_app.command("package")
def package(
    channel: str,
    name: str,
    version: str = typer.Option(..., help="the package version"),
    build: str = typer.Option(..., help="the build string"),
    subdir: str = typer.Option("noarch", help="the artifact's subdir"),
    platform: str | None = typer.Option(None, help="for a noarch package: linux-64 by default"),
    sbom: str | None = typer.Option(None, help="cyclonedx | spdx: an SBOM instead of the tree"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file"),
) -> None:
    """One package's dependency tree, its own and its highest reachable score (or an SBOM)."""
    params: dict[str, Any] = {"version": version, "build": build, "subdir": subdir}
    if platform:
        params["platform"] = platform
    if sbom is not None:
        _check_format(sbom, ("cyclonedx", "spdx"))
        params["format"] = sbom
    what = "sbom" if sbom else "tree"
    body = _send(client(), "GET", f"/channels/{channel}/packages/{name}/{what}", params=params)
    _emit(body, output)
