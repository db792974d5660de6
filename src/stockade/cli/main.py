"""The ``stockade`` command: server commands and client commands over the REST API.

Subcommands are registered by name, module and one line of help, and a subcommand's module is
imported only when that subcommand runs (or shows its own ``--help``): ``stockade --help`` and
``stockade mirror run --help`` load no database layer, web framework or HTTP client. A test checks
that each line of help here is the first line of the command's own.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer import _click as click
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

# name -> (module, attribute: a command function or a Typer group, short help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": (
        "stockade.cli.server",
        "serve",
        "Migrate the database, create the first admin if needed, and serve.",
    ),
    "worker": (
        "stockade.cli.server",
        "worker",
        "Run the background runtime (publication, scanning, schedules, jobs); serve nothing.",
    ),
    "login": (
        "stockade.cli.account",
        "login",
        "Sign in and store a profile (server URL and a token made for this CLI).",
    ),
    "logout": ("stockade.cli.account", "logout", "Forget the stored profile."),
    "whoami": ("stockade.cli.account", "whoami", "Show who the CLI acts as."),
    "conda-config": (
        "stockade.cli.account",
        "conda_config",
        "Write a .condarc that points conda, mamba and pixi at this server.",
    ),
    "upload": ("stockade.cli.upload", "upload", "Upload package files to a channel."),
    "copy": ("stockade.cli.channels", "copy", "Copy artifacts from SOURCE to TARGET."),
    "move": ("stockade.cli.channels", "move", "Move artifacts from SOURCE to TARGET."),
    "remove": ("stockade.cli.channels", "remove", "Remove artifacts from a channel."),
    "search": (
        "stockade.cli.search",
        "search",
        "Search every channel you can read: exact name first, then prefix, names containing the "
        "text, words of summaries and descriptions, then names close to a typo; ties by "
        "downloads.",
    ),
    "db": ("stockade.cli.server", "db_app", "Database schema."),
    "admin": ("stockade.cli.server", "admin_app", "Administrator accounts."),
    "config": ("stockade.cli.server", "config_app", "Configuration."),
    "token": ("stockade.cli.account", "token_app", "Personal API tokens."),
    "user": (
        "stockade.cli.identity",
        "user_app",
        "Users (local, LDAP, OIDC) and service accounts.",
    ),
    "group": ("stockade.cli.identity", "group_app", "Groups and their members."),
    "role": (
        "stockade.cli.identity",
        "role_app",
        "Built-in and custom roles, and who holds them.",
    ),
    "audit": ("stockade.cli.identity", "audit_app", "The audit log: query, export, verify."),
    "downloads": (
        "stockade.cli.downloads",
        "downloads_app",
        "Download reports: by package, channel or user; the raw downloads. Admins see every "
        "channel, channel owners and managers their channels.",
    ),
    "ldap": (
        "stockade.cli.ldap",
        "app",
        "LDAP / Active Directory: test the connection, synchronize users and groups.",
    ),
    "channel": ("stockade.cli.channels", "channel_app", "Channels."),
    "mirror": ("stockade.cli.mirrors", "mirror_app", "Mirrors of upstream channels."),
    "policy": (
        "stockade.cli.policies",
        "policy_app",
        "Policies: which upstream records mirrors keep.",
    ),
    "cve": ("stockade.cli.cves", "cve_app", "Vulnerabilities: feeds, matches, curation."),
    "webhook": (
        "stockade.cli.webhooks",
        "webhook_app",
        "Webhooks of a channel: calls on new vulnerability matches and on matches turned active.",
    ),
    "report": (
        "stockade.cli.reports",
        "report_app",
        "Vulnerability reports of environments, packages and channels; SBOMs.",
    ),
    "quarantine": (
        "stockade.cli.quarantine",
        "quarantine_app",
        "The quarantine queue: files the malware scanners held (malicious; suspicious or "
        "unjudged where the channel holds them). Reading needs security:read, the rest "
        "security:manage.",
    ),
    "scan": (
        "stockade.cli.scan",
        "scan_app",
        "Malware scanning: scan again (an artifact, a channel, everything), the queue's state, "
        "and admins' own YARA rules. Needs security:manage (status: security:read).",
    ),
    "signing": (
        "stockade.cli.signing",
        "signing_app",
        "Content trust: the root → key_mgr → pkg_mgr keys that sign what channels serve, in "
        "the format conda's content-trust plugin verifies. Needs security:manage (status: "
        "security:read).",
    ),
    "airgap": (
        "stockade.cli.airgap",
        "airgap_app",
        "Air-gapped sites: package bundles of a channel (export here, then on the other server "
        "drop them into its air-gap folder or `stockade airgap import` them; a mirror with "
        "source airgap:CHANNEL applies them). Needs mirror:manage (export: and read access to "
        "the channel).",
    ),
    "fsck": (
        "stockade.cli.fsck",
        "fsck",
        "Check the blob store against the database: every blob the database names is stored.",
    ),
    "backup": (
        "stockade.cli.backup",
        "backup",
        "Back up the database, the key files and the blobs into a folder (in that order).",
    ),
    "restore": (
        "stockade.cli.backup",
        "restore",
        "Restore a backup made by `stockade backup` into this server's empty data folder and "
        "database.",
    ),
}


class LazyGroup(TyperGroup):
    """The top-level group: lists :data:`SUBCOMMANDS` from their one line of help, and imports
    a subcommand's module only to run it (``resolve_command``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, (_module, _attribute, short_help) in SUBCOMMANDS.items():
            self.commands.setdefault(name, TyperCommand(name, short_help=short_help))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name in SUBCOMMANDS:
            command = self.commands[name] = load(name, self.rich_markup_mode)
        return name, command, rest


def load(name: str, rich_markup_mode: Any = None) -> click.Command:
    """The real command ``name``, its module imported."""
    module, attribute, _help = SUBCOMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        return get_group_from_info(
            TyperInfo(target, name=name),
            pretty_exceptions_short=True,
            suggest_commands=True,
            rich_markup_mode=rich_markup_mode,
        )
    info = CommandInfo(name=name, callback=target)
    return get_command_from_info(
        info, pretty_exceptions_short=True, rich_markup_mode=rich_markup_mode
    )


def full_command() -> click.Command:
    """The whole command tree with every subcommand loaded (for tests that walk it)."""
    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    for name in SUBCOMMANDS:
        group.commands[name] = load(name, group.rich_markup_mode)
    return group


def load_all() -> None:
    """Import every subcommand's module (a process that forks commands imports them once)."""
    for module in sorted({module for module, _attribute, _help in SUBCOMMANDS.values()}):
        importlib.import_module(module)


app = typer.Typer(
    name="stockade",
    help="Stockade: a secure, on-premise conda package repository.",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Stockade: a secure, on-premise conda package repository."""


def main() -> None:
    from stockade.cli.client import CliError, fail

    try:
        app()
    except CliError as exc:
        fail(str(exc))
