"""``stockade fsck``: the blob store checked against the database (``storage/fsck.py``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from stockade.cli.client import fail
from stockade.cli.output import print_json
from stockade.cli.server import settings_or_exit
from stockade.core.errors import StockadeError

if TYPE_CHECKING:
    from stockade.storage.fsck import FsckReport, Phase

out = Console()
err = Console(stderr=True)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"s": 1, "": 3600, "m": 60, "h": 3600, "d": 86400}
SHOWN = 20  # orphans and problems printed for people (--json lists them all, up to 10,000)


def parse_grace(value: str) -> timedelta:
    """``24h``, ``90m``, ``3600s``, ``2d`` or a number of hours."""
    match = _DURATION.match(value)
    if match is None:
        raise typer.BadParameter(f"{value[:40]!r} is not a duration: say e.g. 24h, 90m, 0s, 2d")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def fsck(
    verify: bool = typer.Option(
        False, "--verify", help="Also read every referenced blob and check its sha256."
    ),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Delete orphans older than --grace. Missing or damaged blobs are only reported: "
        "fsck never makes up bytes.",
    ),
    grace: str = typer.Option(
        "24h",
        help="Orphans stored more recently are left alone (an upload stores its file before it "
        "records it): 24h, 90m, 0s, 2d.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON (for scripts)."),
) -> None:
    """Check the blob store against the database: every blob the database names
    is stored.

    Reports blobs that are missing or have another size than recorded (and,
    with --verify, whose bytes do not hash to their name) with what names
    them (channel/subdir/file), and exits 1 if there is any. Blobs nothing
    names (orphans: superseded indexes, removed packages) are listed;
    --repair deletes those older than --grace. Safe to run while the server
    is serving; two runs at once only delete the same orphans. See
    docs/backup.md."""
    from stockade.container import Container
    from stockade.db.migrate import at_head
    from stockade.storage.fsck import Fsck

    period = parse_grace(grace)
    settings = settings_or_exit()
    if not at_head(settings.db_url):
        fail(
            "the database cannot be reached or is not at the newest schema (`stockade db "
            "upgrade` migrates it)"
        )
    container = Container.build(settings)
    try:
        with _Bar(enabled=not json_out) as bar:
            checker = Fsck(
                container.factory,
                container.read_factory,
                container.blobs,
                verify=verify,
                repair=repair,
                grace=period,
                progress=bar.advance,
            )
            report = checker.run()
    except StockadeError as exc:  # the blob store unreachable, say: nothing is concluded
        fail(exc.detail)
    finally:
        container.close()
    if json_out:
        print_json(as_json(report, period))
    else:
        _print(report, repair)
    if not report.clean:
        raise typer.Exit(1)


class _Bar:
    """One Rich progress line per phase, on stderr (``--json`` output stays clean)."""

    def __init__(self, *, enabled: bool) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        self.progress = Progress(*columns, console=err, transient=True, disable=not enabled)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def advance(self, phase: Phase, step: int, total: int | None) -> None:
        task = self.tasks.get(phase)
        if task is None:
            task = self.tasks[phase] = self.progress.add_task(str(phase), total=total)
        if step:
            self.progress.advance(task, step)


def as_json(report: FsckReport, grace: timedelta) -> dict[str, Any]:
    return {
        "clean": report.clean,
        "referenced": report.referenced,
        "references": report.references,
        "verified": report.verified,
        "not_fetched": report.absent_ok,
        "stored": report.stored,
        "problem_count": report.problem_count,
        "problems": [
            {
                "sha256": p.sha256,
                "problem": str(p.kind),
                "detail": p.detail,
                "referenced_by": [{"kind": r.kind, "where": r.where} for r in p.referrers],
                "referenced_by_count": p.referrer_count,
            }
            for p in report.problems
        ],
        "orphans": {
            "count": report.orphan_count,
            "within_grace": report.young,
            "grace_s": int(grace.total_seconds()),
            "collected": report.collected,
            "collected_bytes": report.collected_bytes,
            "referenced_again": report.kept_referenced,
            "deferred": report.deferred,
            "listed": [
                {
                    "sha256": o.sha256,
                    "modified_at": o.modified_at.isoformat() if o.modified_at else None,
                    "collected": o.collected,
                }
                for o in report.orphans
            ],
        },
    }


def _print(report: FsckReport, repair: bool) -> None:
    line = f"{report.referenced} referenced blobs ({report.references} references) checked"
    if report.verified:
        line += f", {report.verified} hashed"
    if report.absent_ok:
        line += f"; {report.absent_ok} passive mirror files not fetched yet"
    out.print(line, highlight=False)
    for problem in report.problems[:SHOWN]:
        names = ", ".join(r.where for r in problem.referrers[:3])
        more = problem.referrer_count - min(3, len(problem.referrers))
        names += f" and {more} more" if more > 0 else ""
        out.print(
            f"[red]{problem.kind}[/red] {problem.sha256}: {problem.detail}; named by {names}",
            highlight=False,
        )
    if report.problem_count > SHOWN:
        out.print(f"… and {report.problem_count - SHOWN} more (--json lists them)")
    out.print(
        f"{report.stored} blobs stored, {report.orphan_count} orphans "
        f"({report.young} within the grace period, left alone)",
        highlight=False,
    )
    if repair:
        out.print(f"collected {report.collected} orphans ({report.collected_bytes} bytes)")
        if report.deferred:
            out.print(f"{report.deferred} orphans left for the next run (writers held the lock)")
    else:
        for orphan in report.orphans[:SHOWN]:
            out.print(f"  orphan {orphan.sha256}", highlight=False)
        if report.orphan_count > SHOWN:
            out.print(f"  … and {report.orphan_count - SHOWN} more (--json lists them)")
    if report.clean:
        out.print("[green]every referenced blob is stored[/green]")
    else:
        out.print(f"[red]{report.problem_count} referenced blobs missing or damaged[/red]")
