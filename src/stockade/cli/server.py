"""Server-side commands: serve, db upgrade/check, admin create, config check."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from stockade.cli.client import fail
from stockade.core.errors import StockadeError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # core.metrics.MULTIPROC_ENV (not imported here)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from stockade.container import Container
    from stockade.settings import Settings

out = Console()
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Administrator accounts.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)


def settings_or_exit(**overrides: object) -> Settings:
    from stockade.settings import load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except StockadeError as exc:
        fail(exc.detail)


def private_files(settings: Settings, *, server: bool = False) -> None:
    """The data folder made private; for a ``server`` (serve, worker) also its spools moved into
    it and its header deadline set, process-wide (``web/serving.prepare_server``)."""
    from stockade.web.serving import prepare_server, secure_files

    try:
        (prepare_server if server else secure_files)(settings)
    except StockadeError as exc:
        fail(exc.detail)


def serve(
    host: str | None = typer.Option(None, help="Address to listen on [STOCKADE_HOST]"),
    port: int | None = typer.Option(None, help="Port [STOCKADE_PORT]"),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes (each also publishes)"),
) -> None:
    """Migrate the database, create the first admin if needed, and serve.

    The data folder is made private at each start (folder 0700, database, key and blobs 0600;
    an older, world-readable folder is tightened). Request bodies are limited
    (server.max_body_size; uploads: upload.max_archive_size, upload.max_request_size) and a
    client must send a request's headers within server.header_timeout_s.

    X-Forwarded-For and X-Forwarded-Proto are believed only from server.trusted_proxies
    (addresses or CIDR networks; default 127.0.0.1 and ::1; [] for none), with one worker or
    --workers N: the client address they give is what sign-in throttling and the access log use.

    With --workers N the first process only supervises the workers: it migrates and creates the
    first admin in a short-lived child process and never loads the application itself. The
    workers keep their Prometheus metrics in DATA_DIR/metrics (emptied at each start), so that
    /metrics on any of them shows the totals of all.

    Each serving process also runs the background runtime (publication, scanning, schedules,
    jobs) unless embedded_worker = false [STOCKADE_EMBEDDED_WORKER]: then it serves only and
    `stockade worker` processes do that work.
    """
    import uvicorn

    if workers > 1:
        # Worker processes read their settings themselves: --host/--port reach them by the
        # environment (their base URL is built from them).
        os.environ.update(_override_env(host=host, port=port))
        prepared = _prepare_in_child()
        # Each worker keeps its metrics in this folder, emptied for this run (core/metrics.py):
        # a scrape of any worker adds them all up. Set before the workers import anything.
        os.environ[MULTIPROC_ENV] = prepared["metrics_dir"]
        _serving_on(prepared["url"])
        _workers_start_from("stockade.asgi")
        http = "stockade.web.serving:HttpToolsWithDeadline"  # the deadline is set by asgi:app
        options = prepared["options"]  # the same for every worker process
        uvicorn.run("stockade.asgi:app", factory=True, workers=workers, http=http, **options)
        return
    settings = settings_or_exit(host=host, port=port)
    from stockade.asgi import importing_application
    from stockade.web.serving import HttpToolsWithDeadline, uvicorn_options

    with importing_application(settings):
        from stockade.app import create_app
        from stockade.web.middleware import CondaFastPath

        container = prepare_instance(settings)
        app = CondaFastPath(create_app(settings, container))
    _serving_on(settings.base_url)
    uvicorn.run(app, http=HttpToolsWithDeadline, **uvicorn_options(settings))


def _serving_on(url: str) -> None:
    out.print(f"Stockade serving on {url}  (UI {url}/, API {url}/api/docs, conda {url}/conda)")


def _workers_start_from(module: str) -> None:
    """uvicorn starts its workers with multiprocessing's "spawn", which runs the parent's main
    module again in each child before the worker: for the ``stockade`` script, the CLI (Typer,
    Rich). Naming ``module`` (which loads nothing when imported) as the main module makes the
    workers run that instead."""
    import importlib.util
    import sys

    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None:  # a script, not ``python -m``
        main.__spec__ = importlib.util.find_spec(module)


def _override_env(**overrides: object) -> dict[str, str]:
    return {f"STOCKADE_{k.upper()}": str(v) for k, v in overrides.items() if v is not None}


def prepare_instance(settings: Settings) -> Container:
    """Private files, migrations, the first admin (announced once); the container built."""
    from stockade.container import Container
    from stockade.core.logging import configure_logging
    from stockade.db.migrate import upgrade

    configure_logging(settings.log_level, settings.log_format)
    private_files(settings, server=True)
    upgrade(settings.db_url)
    container = Container.build(settings)
    first = container.bootstrap()
    private_files(settings)  # the files the first start just made: explicit modes too
    if first is not None:
        url = settings.base_url
        out.print(f"\n[bold]First start.[/bold] Sign in at {url}/ as [bold]{first.username}[/bold]")
        if first.password:
            out.print(f"  password (shown once): [bold]{first.password}[/bold]")
        else:
            out.print("  with the password from STOCKADE_ADMIN_PASSWORD")
    return container


def _prepare_in_child() -> dict[str, Any]:
    """:func:`prepare_instance` in a child process that then exits, so that the supervisor of
    several workers never loads the application (~130 MiB it would keep), nor even the settings
    (~20 MiB): the child sends back the base URL and uvicorn's options."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_prepare_child, args=(sender,), name="prepare")
    child.start()
    sender.close()
    try:
        prepared: dict[str, Any] = receiver.recv()
    except EOFError:
        prepared = {}
    child.join()
    if child.exitcode or not prepared:
        raise typer.Exit(child.exitcode if child.exitcode and child.exitcode > 0 else 1)
    return prepared


def _prepare_child(sender: Connection) -> None:
    from stockade.core.metrics import prepare_multiprocess_dir
    from stockade.web.serving import uvicorn_options

    try:
        settings = settings_or_exit()
        prepare_instance(settings).close()
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    metrics_dir = prepare_multiprocess_dir(settings.data_dir.resolve() / "metrics")
    sender.send(
        {
            "url": settings.base_url,
            "options": uvicorn_options(settings),
            "metrics_dir": str(metrics_dir),
        }
    )
    sender.close()


def worker(
    threads: int | None = typer.Option(
        None, min=1, max=64, help="job threads [STOCKADE_JOBS__WORKERS]"
    ),
) -> None:
    """Run the background runtime (publication, scanning, schedules, jobs); serve nothing.

    The jobs: mirror runs, feed syncs, matching and webhook calls, from the job queue.
    `stockade serve` runs the same runtime inside itself unless embedded_worker = false; run
    any number of workers (and of serve replicas): periodic jobs run once per due time across
    all of them. Uses Redis when jobs.redis_url is set (workers on any machine), else the SQLite
    queue under the data folder (on the same machine as `stockade serve`).

    With metrics.worker_port set, the worker serves the metrics of the jobs it runs at
    http://metrics.worker_host:PORT/metrics (no authentication: keep it on a private address).
    """
    from stockade.container import Container
    from stockade.core.logging import configure_logging
    from stockade.db.migrate import upgrade
    from stockade.jobs.worker import run_worker

    settings = settings_or_exit()
    if threads is not None:
        settings.jobs.workers = threads
    configure_logging(settings.log_level, settings.log_format)
    private_files(settings, server=True)
    upgrade(settings.db_url)
    container = Container.build(settings)
    queue = "Redis" if settings.jobs.redis_url else f"SQLite ({settings.data_dir / 'jobs.db'})"
    out.print(f"Stockade worker: {settings.jobs.workers} job threads, queue on {queue}")
    _worker_metrics(settings)
    run_worker(container)


def _worker_metrics(settings: Settings) -> None:
    from stockade.core.metrics import serve_process_metrics

    port = settings.metrics.worker_port
    if port is None:
        return
    try:
        serve_process_metrics(settings.metrics.worker_host, port)
    except OSError as exc:
        fail(f"metrics.worker_port: cannot listen on {settings.metrics.worker_host}:{port}: {exc}")
    out.print(f"metrics on http://{settings.metrics.worker_host}:{port}/metrics")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (Alembic) to the configured database."""
    from stockade.db.migrate import upgrade

    settings = settings_or_exit()
    private_files(settings)  # a database this creates is private (0600), as with serve
    upgrade(settings.db_url)
    out.print("database is up to date")


@db_app.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree (drift)."""
    from stockade.db.migrate import check, upgrade

    settings = settings_or_exit()
    private_files(settings)
    upgrade(settings.db_url)
    drift = check(settings.db_url)
    if drift:
        fail(f"models and migrations differ: {drift}")
    out.print("models and migrations agree")


@admin_app.command("create")
def admin_create(
    username: str,
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
) -> None:
    """Create an administrator."""
    from stockade.auth.service import UserService
    from stockade.container import Container
    from stockade.db.engine import transaction
    from stockade.db.migrate import upgrade

    settings = settings_or_exit()
    private_files(settings)
    upgrade(settings.db_url)
    container = Container.build(settings)
    try:
        with transaction(container.factory) as session:
            UserService(session).create_user(username, password, admin=True)
    except StockadeError as exc:
        fail(exc.detail)
    out.print(f"administrator {username!r} created")


def render_url(url: str) -> str:
    from stockade.cli.config_view import URL_PASSWORD

    return URL_PASSWORD.sub(r"\g<head>:***@", url)


@config_app.command("check")
def config_check() -> None:
    """Validate the configuration and print the effective settings as TOML, each with where it
    came from (file, env STOCKADE_…, default); secrets are shown as ***."""
    from stockade.cli.config_view import render

    settings = settings_or_exit()
    print(render(settings), end="")
    print(f"# database: {render_url(settings.db_url)}")
    out.print("[green]configuration is valid[/green]")
