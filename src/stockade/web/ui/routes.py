"""Server-rendered pages: mounted by ``create_app`` through :func:`install_ui`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from stockade.web.routing import add_routes
from stockade.web.ui import (
    account,
    admin,
    admin_groups,
    admin_roles,
    airgap_page,
    audit_page,
    channel_admin,
    channel_admin_files,
    channel_admin_notices,
    channel_admin_patches,
    channel_admin_settings,
    channel_members,
    cve_page,
    cves,
    downloads_page,
    feeds_page,
    mirror_page,
    mirror_runs,
    mirrors,
    pages,
    policies,
    quarantine_page,
    report_page,
    search_page,
    service_accounts,
    signin,
    signing_page,
    webhooks_page,
)
from stockade.web.ui.render import STATIC_DIR, build_templates


def install_ui(app: FastAPI) -> None:
    """Templates, ``/static``, sign-in and the browsing pages (none of them in the OpenAPI)."""
    app.state.ui_templates = build_templates()
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    add_routes(
        app.router,
        signin.router,
        account.router,
        admin.router,
        service_accounts.router,
        admin_groups.router,
        admin_roles.router,
        audit_page.router,
        mirrors.router,
        mirror_page.router,
        mirror_runs.router,
        policies.router,
        channel_members.router,  # before pages: `/channels/{name:path}` takes all
        # channel work, before pages too; notices before files (`…/notices/{id}/remove` is not
        # `…/remove`)
        channel_admin_notices.router,
        channel_admin_patches.router,
        channel_admin_files.router,
        channel_admin_settings.router,
        channel_admin.router,
        cves.router,  # before pages too: the package page's `…/packages/{package}/vulnerabilities`
        cve_page.router,
        report_page.router,
        quarantine_page.router,
        signing_page.router,
        airgap_page.router,
        downloads_page.router,
        webhooks_page.router,
        feeds_page.router,
        search_page.router,
        pages.router,
    )
