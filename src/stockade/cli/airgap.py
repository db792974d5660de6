"""airgap export|exports|import|status: package bundles for air-gapped sites (SPEC §9,
docs/formats.md).

``export`` asks the server to plan and sign a bundle, then writes the zip here member by member
(constant memory, a Rich progress bar). An interrupted export resumes where it stopped when run
again with the same ``--out``: the zip is written to ``<name>.zip.partial`` with a journal of the
members already complete (``airgap.zipwriter``). ``import`` sends a bundle (or a ``cve.zip``) to
the air-gapped server, which checks it, places it into its air-gap folder and runs the mirrors of
its channel; ``--follow`` watches those runs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from stockade.airgap.zipwriter import BundleWriter, ZipWriteError
from stockade.cli.client import ApiClient, CliError, answer_problem, client, fail, unreachable
from stockade.cli.mirrors import follow_run
from stockade.cli.output import AsJson, cell, key_values, out, print_json, table, when

if TYPE_CHECKING:
    import httpx

airgap_app = typer.Typer(
    help="Air-gapped sites: package bundles of a channel (export here, then on the other "
    "server drop them into its air-gap folder or `stockade airgap import` them; a mirror "
    "with source airgap:CHANNEL applies them). Needs mirror:manage (export: and read access "
    "to the channel).",
    no_args_is_help=True,
)


class _ExportGoneError(Exception):
    """A file of the planned bundle is no longer served: the export cannot complete."""


def _partial_for(out_dir: Path, channel: str) -> str | None:
    """The bundle id of an interrupted export of ``channel`` in ``out_dir``, if there is one."""
    stem = f"conda_{channel.replace('/', '_')}_airgap_"
    found = sorted(out_dir.glob(f"{stem}*.zip.partial"))
    if not found:
        return None
    return found[-1].name.removesuffix(".zip.partial").removeprefix(stem)


def _discard(out_dir: Path, channel: str) -> None:
    stem = f"conda_{channel.replace('/', '_')}_airgap_"
    for path in out_dir.glob(f"{stem}*.zip.partial*"):
        path.unlink(missing_ok=True)


@airgap_app.command("export")
def export(
    channel: str = typer.Option(..., "--channel", "-c", help="the channel to bundle"),
    out_dir: Path = typer.Option(..., "--out", help="folder to write the bundle into"),
    subdirs: str | None = typer.Option(
        None, help="comma-separated subdirs (default: all the channel publishes)"
    ),
    since: str | None = typer.Option(
        None, help="incremental: only what changed since this bundle id, or LAST"
    ),
    restart: bool = typer.Option(
        False, "--restart", help="discard an interrupted export of this channel and start anew"
    ),
) -> None:
    """Write a signed package bundle of CHANNEL (full, or incremental --since) into --out."""
    if not out_dir.is_dir():
        fail(f"{out_dir}: no such folder")
    if restart:
        _discard(out_dir, channel)
    api = client()
    resume = _partial_for(out_dir, channel)
    if resume is not None:
        plan = api.get(f"/airgap/exports/{resume}")
        out.print(f"resuming the export of bundle {resume}", highlight=False)
    else:
        body: dict[str, Any] = {"channel": channel, "since": since}
        if subdirs:
            body["subdirs"] = [s.strip() for s in subdirs.split(",") if s.strip()]
        plan = api.post("/airgap/exports", json=body)
    name = Path(str(plan["file_name"])).name  # a name, never a path the server chose
    if not name.endswith(".zip") or name != plan["file_name"]:
        fail(f"the server named the bundle {name!r}: not a bundle file name")
    target = out_dir / name
    try:
        _write(api, plan, target)
    except _ExportGoneError as exc:
        _discard(out_dir, channel)
        fail(f"{exc} (the interrupted export was discarded)")
    except ZipWriteError as exc:
        fail(f"{target}: {exc.detail}")
    except OSError as exc:
        fail(f"{target}: {exc.strerror}")
    _report(plan, target)


def _report(plan: dict[str, Any], target: Path) -> None:
    kind = f"incremental after {plan['parent_id']}" if plan["parent_id"] else "full"
    out.print(f"wrote {target} ({target.stat().st_size} bytes)", highlight=False)
    out.print(f"bundle {plan['bundle_id']} of {plan['channel']} ({kind})", highlight=False)
    for subdir, counts in sorted(plan["counts"].get("subdirs", {}).items()):
        out.print(
            f"  {subdir}: {counts['records']} records; {counts['added']} added, "
            f"{counts['changed']} changed, {counts['removed']} removed",
            highlight=False,
        )


def _write(api: ApiClient, plan: dict[str, Any], target: Path) -> None:
    base = f"/airgap/exports/{plan['bundle_id']}/members/"
    with (
        api.http() as http,  # transient answers retried (cli/retry.py)
        BundleWriter.open(target) as writer,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=out,
            transient=True,
        ) as progress,
    ):
        done = writer.written()
        manifest_data = _member_bytes(api, http, base + "manifest.json")
        files: dict[str, dict[str, Any]] = orjson.loads(manifest_data)["files"]
        task = progress.add_task(f"bundle {plan['bundle_id']}", total=plan["bytes"])
        progress.advance(task, sum(done[p].size for p in files if p in done))
        for name in plan["members"]:
            if name not in done:
                data = manifest_data if name == "manifest.json" else None
                data = data or _member_bytes(api, http, base + name)
                writer.add_bytes(name, data)
        for path, meta in files.items():
            if path in done:
                continue
            params = {"sha256": meta["sha256"]} if path.startswith("pkgs/") else {}
            chunks = _member_chunks(api, http, base + path, params)
            writer.add_stream(path, _counted(_prefetched(chunks), progress, task), **meta)
        writer.finish()


_DONE = object()
#: Blocks read ahead of the writer (about 1 MiB each): the network read and the writer's
#: hashing and writing (which release the GIL) run at the same time, in bounded memory.
PREFETCH = 8


def _prefetched(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` read by a thread of their own, at most ``PREFETCH`` blocks ahead."""
    ahead: queue.Queue[object] = queue.Queue(PREFETCH)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():  # the consumer may be gone: never block for ever
            try:
                ahead.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for block in chunks:
                if not put(block):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(exc)

    reader = threading.Thread(target=read, name="airgap-export-read", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        reader.join()


def _counted(chunks: Iterator[bytes], progress: Progress, task: Any) -> Iterator[bytes]:
    for block in chunks:
        progress.advance(task, len(block))
        yield block


def _member_bytes(api: ApiClient, http: httpx.Client, url: str) -> bytes:
    return b"".join(_member_chunks(api, http, url, {}))


def _member_chunks(
    api: ApiClient, http: httpx.Client, url: str, params: dict[str, str]
) -> Iterator[bytes]:
    import httpx  # loaded when a request is made, not to show --help

    try:
        with http.stream("GET", url, params=params) as response:
            if response.status_code >= 400:
                response.read()
                problem = answer_problem(response) or f"HTTP {response.status_code}"
                if response.status_code == 409:
                    raise _ExportGoneError(problem)
                raise CliError(problem)
            yield from response.iter_bytes(1 << 20)
    except httpx.HTTPError as exc:
        raise CliError(unreachable(api.profile.url, exc)) from None


@airgap_app.command("exports")
def exports(as_json: AsJson = False) -> None:
    """The bundles exported from this server, newest first."""
    rows = client().get("/airgap/exports")
    if as_json:
        print_json(rows)
        return
    grid = table("bundle", "channel", "parent", "subdirs", "files", "bytes", "made")
    for r in rows:
        grid.add_row(
            r["bundle_id"],
            r["channel"],
            r["parent_id"] or "(full)",
            cell(r["subdirs"]),
            str(r["files"]),
            str(r["bytes"]),
            when(r["created_at"]),
        )
    out.print(grid)


@airgap_app.command("status")
def status(as_json: AsJson = False) -> None:
    """The air-gap folder: bundles waiting, and the ones applied or refused (with why)."""
    data = client().get("/airgap")
    if as_json:
        print_json(data)
        return
    key_values(
        "Air-gap folder",
        [("folder", data["folder"]), ("trusted keys", len(data["trusted_keys"]))],
    )
    waiting = table("waiting", "kind", "bundle", "channel", "parent")
    for w in data["waiting"]:
        waiting.add_row(
            w["file_name"],
            w["kind"],
            cell(w["bundle_id"]),
            cell(w["channel"]),
            cell(w["parent_id"]),
        )
    out.print(waiting)
    history = table("file", "state", "bundle", "mirror", "reason", "when")
    for h in data["history"]:
        history.add_row(
            h["file_name"],
            h["state"],
            cell(h["bundle_id"]),
            cell(h["mirror"]),
            cell(h["reason"]),
            when(h["finished_at"]),
        )
    out.print(history)


@airgap_app.command("import")
def import_bundle(
    file: Path = typer.Argument(..., help="a package bundle (.zip) or a cve.zip"),
    name: str | None = typer.Option(
        None, help="its name in the air-gap folder (default: the file's name)"
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="watch the mirror runs it starts until they end"
    ),
    as_json: AsJson = False,
) -> None:
    """Send FILE to the server: checked (a bad bundle is refused and nothing is placed), put
    into the air-gap folder, and applied by a run of every mirror whose source is
    airgap:CHANNEL, started now (a cve.zip: at the CVE bundle feed's next sync)."""
    if not file.is_file():
        fail(f"{file}: no such file")
    api = client()
    data = _upload(api, file, name or file.name)
    if as_json:
        print_json(data)
    else:
        _print_import(data)
    if follow:
        followed = [r for r in data["runs"] if r["run_id"] is not None]
        finals = [follow_run(api, r["run_id"]) for r in followed]
        if any(f["state"] != "completed" for f in finals):
            raise typer.Exit(1)


def _upload(api: ApiClient, file: Path, name: str) -> dict[str, Any]:
    size = file.stat().st_size
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task(f"uploading {file.name}", total=size)

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as fh:
                while block := fh.read(1 << 20):
                    progress.advance(task, len(block))
                    yield block

        data: dict[str, Any] = api.request(
            "POST",
            "/airgap/bundles",
            params={"name": name},
            content=chunks(),
            headers={"content-type": "application/zip", "content-length": str(size)},
        )
    return data


def _print_import(data: dict[str, Any]) -> None:
    what = f"bundle {data['bundle_id']} of {data['channel']}" if data["bundle_id"] else "cve.zip"
    out.print(f"placed {data['file_name']} ({what}) in the air-gap folder", highlight=False)
    for run in data["runs"]:
        state = run["state"] if run["run_id"] is None else f"run {run['run_id']} {run['state']}"
        extra = f": {run['detail']}" if run["detail"] else ""
        out.print(f"  mirror {run['mirror']}: {state}{extra}", highlight=False)
    out.print(data["detail"], highlight=False)
