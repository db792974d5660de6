"""Server-rendered pages: mounted by ``create_app`` through :func:`install_ui`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

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
    app.include_router(signin.router)
    for identity in (account, admin, service_accounts, admin_groups, admin_roles, audit_page):
        app.include_router(identity.router)
    for mirroring in (mirrors, mirror_page, mirror_runs, policies):
        app.include_router(mirroring.router)
    app.include_router(channel_members.router)  # before pages: `/channels/{name:path}` takes all
    # channel work, before pages too; notices before files (`…/notices/{id}/remove` is not `…/remove`)
    for channel_work in (
        channel_admin_notices,
        channel_admin_patches,
        channel_admin_files,
        channel_admin_settings,
        channel_admin,
    ):
        app.include_router(channel_work.router)
    # before pages too: the package page's `…/packages/{package}/vulnerabilities` tab
    app.include_router(cves.router)
    app.include_router(cve_page.router)
    app.include_router(report_page.router)
    app.include_router(quarantine_page.router)
    app.include_router(signing_page.router)
    app.include_router(airgap_page.router)
    app.include_router(downloads_page.router)
    app.include_router(webhooks_page.router)
    app.include_router(feeds_page.router)
    app.include_router(search_page.router)
    app.include_router(pages.router)
