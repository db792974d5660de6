"""The ``stockade`` command: server commands and client commands over the REST API."""

from __future__ import annotations

import typer

from stockade.cli import (
    account,
    airgap,
    channels,
    cves,
    downloads,
    identity,
    ldap,
    mirrors,
    policies,
    quarantine,
    reports,
    scan,
    search,
    server,
    signing,
    upload,
    webhooks,
)
from stockade.cli.client import CliError, fail

app = typer.Typer(
    name="stockade",
    help="Stockade: a secure, on-premise conda package repository.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(server.serve)
app.command()(server.worker)
app.add_typer(server.db_app, name="db")
app.add_typer(server.admin_app, name="admin")
app.add_typer(server.config_app, name="config")
app.command()(account.login)
app.command()(account.logout)
app.command()(account.whoami)
app.add_typer(account.token_app, name="token")
app.add_typer(identity.user_app, name="user")
app.add_typer(identity.group_app, name="group")
app.add_typer(identity.role_app, name="role")
app.add_typer(identity.audit_app, name="audit")
app.add_typer(downloads.downloads_app, name="downloads")
app.add_typer(ldap.app, name="ldap")
app.command("conda-config")(account.conda_config)
app.add_typer(channels.channel_app, name="channel")
app.add_typer(mirrors.mirror_app, name="mirror")
app.add_typer(policies.policy_app, name="policy")
app.add_typer(cves.cve_app, name="cve")
app.add_typer(webhooks.webhook_app, name="webhook")
app.add_typer(reports.report_app, name="report")
app.add_typer(quarantine.quarantine_app, name="quarantine")
app.add_typer(scan.scan_app, name="scan")
app.add_typer(signing.signing_app, name="signing")
app.add_typer(airgap.airgap_app, name="airgap")
app.command()(upload.upload)
app.command()(channels.copy)
app.command()(channels.move)
app.command()(channels.remove)
app.command()(search.search)


def main() -> None:
    try:
        app()
    except CliError as exc:
        fail(str(exc))
