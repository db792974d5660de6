"""``audit export --to FOLDER`` and ``audit verify-export``: the folder export, run here.

``export --to`` is a server command (as ``db upgrade``): with this server's configuration it reads
its database (nothing else) and runs the scheduled export once into FOLDER: new events only, files
named by seq range, the same state the scheduled job keeps when FOLDER is ``[audit]
export_folder``. ``verify-export`` needs nothing but the files: it checks their hash chain.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from stockade.audit.errors import AuditChainBrokenError
from stockade.audit.export import AuditExporter, exported_files
from stockade.audit.export_format import ExportFormat, FileCheck, decode_file, verify_records
from stockade.cli import output
from stockade.cli.client import fail
from stockade.core.errors import StockadeError

__all__ = ["export_to_folder", "verify_export"]

out = output.out


def export_to_folder(folder: Path, fmt: ExportFormat | None) -> None:
    """Export the events after the last one exported into ``folder``; fail with the reason."""
    from stockade.cli.server import settings_or_exit
    from stockade.core.clock import utcnow
    from stockade.db.engine import make_engine, make_session_factory

    settings = settings_or_exit()
    sqlite_file = (
        settings.db_url.split("///", 1)[-1] if settings.db_url.startswith("sqlite") else ""
    )
    if sqlite_file and not Path(sqlite_file).is_file():
        fail(f"no database at {sqlite_file}: run this where the server's configuration is")
    engine = make_engine(settings.db_url)
    try:
        with make_session_factory(engine, readonly=True)() as session:
            exporter = AuditExporter(
                session,
                folder,
                fmt=fmt or settings.audit.export_format,
                max_events=settings.audit.export_max_events,
            )
            run = exporter.run(utcnow())
    except StockadeError as exc:
        fail(exc.detail)
    except OSError as exc:  # a planted link (O_NOFOLLOW), no right to write, a full disk
        fail(f"cannot export into {folder}: {exc.strerror or type(exc).__name__}")
    except SQLAlchemyError as exc:  # the URL (and any password in it) is not shown
        fail(
            f"the audit log cannot be read from the configured database ({type(exc).__name__}); "
            "is it the server's, created and upgraded (stockade db upgrade)?"
        )
    finally:
        engine.dispose()
    for name in run.files:
        out.print(f"wrote {folder / name}")
    out.print(run.summary())


def _files_of(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for _, _, p in exported_files(path))
        elif path.is_file():
            found.append(path)
        else:
            fail(f"{path} is neither a file nor a folder")
    return found


def verify_export(paths: list[Path]) -> None:
    """Check the hash chain across exported files, in the order given (a folder: seq order)."""
    files = _files_of(paths)
    if not files:
        fail("no audit export files found")
    check = FileCheck()
    try:
        for path in files:
            verify_records(decode_file(path), check, path.name)
    except AuditChainBrokenError as exc:
        fail(f"audit export broken: {exc.detail} ({check.checked} events checked before it)")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(f"audit export unreadable: {exc}")
    out.print(
        f"audit export intact: {check.checked} events in {len(files)} files, "
        f"up to {check.last_seq}, head {(check.last_hash or '')[:16]}…"
    )
