"""report env FILE|--spec …, report channel CHANNEL, report package CHANNEL NAME (SPEC §7)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import typer

from stockade.cli import report_view
from stockade.cli.client import ApiClient, answer_problem, client, fail, unreachable
from stockade.cli.output import AsJson, print_json

report_app = typer.Typer(
    help="Vulnerability reports of environments, packages and channels; SBOMs.",
    no_args_is_help=True,
)
FORMATS = ("table", "json", "csv", "cyclonedx", "spdx")
FORMAT_HELP = (
    "table (the default on a terminal) | json (the default with --output; the API's JSON) | "
    "csv | cyclonedx | spdx"
)
MAX_FILE = 5 * 1024 * 1024


def _send(api: ApiClient, method: str, path: str, **kwargs: Any) -> bytes:
    import httpx  # loaded when a request is made, not to show --help

    try:
        with api.http() as http:  # transient answers retried (cli/retry.py)
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


def _format(fmt: str | None, as_json: bool, output: Path | None, allowed: tuple[str, ...]) -> str:
    """``--json`` is ``--format json``; with neither, a table, or JSON written to ``--output``."""
    if as_json and fmt not in (None, "json"):
        fail(f"--json and --format {fmt} ask for two formats: give one")
    chosen = "json" if as_json else fmt or ("json" if output is not None else "table")
    _check_format(chosen, allowed)
    if chosen == "table" and output is not None:
        fail("--output writes json, csv or an SBOM: add --format json (or another)")
    return chosen


def _show(body: bytes, fmt: str, output: Path | None, render: Callable[[Any], None]) -> None:
    """A table for people; JSON indented as ``--json`` prints it everywhere; other formats as is."""
    if fmt == "table":
        render(orjson.loads(body))
    elif fmt == "json" and output is None:
        print_json(orjson.loads(body))
    else:
        _emit(body, output)


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
    fmt: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file"),
    as_json: AsJson = False,
) -> None:
    """Report every vulnerability of an environment, with the path from the root to each: totals
    and a findings table (advisory, score, severity, status, package, path); --json for scripts."""
    fmt = _format(fmt, as_json, output, FORMATS)
    if (file is None) == (not spec):
        fail("give either an environment FILE or one or more --spec")
    params: dict[str, Any] = {"format": "json" if fmt == "table" else fmt}
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
    _show(body, fmt, output, report_view.print_environment)


@report_app.command("channel")
def channel_report(
    channel: str,
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="table (default) | json (default with --output) | csv"
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file"),
    as_json: AsJson = False,
) -> None:
    """Every matched artifact of a channel, one row per (artifact, vulnerability)."""
    fmt = _format(fmt, as_json, output, ("table", "json", "csv"))
    params = {"format": "json" if fmt == "table" else fmt}
    body = _send(client(), "GET", f"/channels/{channel}/vulnerabilities", params=params)
    _show(body, fmt, output, report_view.print_channel)


@report_app.command("package")
def package(
    channel: str,
    name: str,
    version: str = typer.Option(..., help="the package version"),
    build: str = typer.Option(..., help="the build string"),
    subdir: str = typer.Option("noarch", help="the artifact's subdir"),
    platform: str | None = typer.Option(None, help="for a noarch package: linux-64 by default"),
    sbom: str | None = typer.Option(None, help="cyclonedx | spdx: an SBOM instead of the tree"),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="table (default) | json (default with --output)"
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file"),
    as_json: AsJson = False,
) -> None:
    """One package's dependency tree, its own and its highest reachable score, and its findings
    (or an SBOM)."""
    params: dict[str, Any] = {"version": version, "build": build, "subdir": subdir}
    if platform:
        params["platform"] = platform
    if sbom is not None:
        _check_format(sbom, ("cyclonedx", "spdx"))
        if fmt is not None or as_json:
            fail("--sbom is the output format: leave out --format and --json")
        params["format"] = sbom
        body = _send(client(), "GET", f"/channels/{channel}/packages/{name}/sbom", params=params)
        _emit(body, output)
        return
    fmt = _format(fmt, as_json, output, ("table", "json"))
    body = _send(client(), "GET", f"/channels/{channel}/packages/{name}/tree", params=params)
    _show(body, fmt, output, report_view.print_package)
