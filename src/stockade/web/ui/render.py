"""Templates and responses for the pages: the Jinja2 environment, filters, error pages.

Every page goes through :func:`render`, which adds what the layout needs (who is signed in, the
CSRF token of the session, the search box) and headers that keep pages private and scripts out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from stockade.auth.principal import ANONYMOUS, Principal
from stockade.core.errors import ErrorKind, StockadeError
from stockade.core.urls import redact_url
from stockade.web.csrf import session_csrf

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {"content-security-policy": CSP, "cache-control": "no-store"}
# Pages with live parts load scripts from /static (never inline) that call the API of this origin.
SCRIPT_CSP = "; script-src 'self'; connect-src 'self'"


def human_size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - the loop always returns


def when(value: datetime | int | None) -> str:
    """A UTC timestamp (a datetime or epoch milliseconds) as ``YYYY-MM-DD HH:MM UTC``."""
    if value is None:
        return ""
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def safe_url(value: object) -> str | None:
    """An http(s) link from package metadata, or None (no ``javascript:`` hrefs)."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def build_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = human_size
    env.filters["when"] = when
    env.filters["path"] = lambda value: quote(str(value), safe="/")
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["redact_url"] = redact_url  # the one redaction of URLs (stockade.core.urls)
    return Jinja2Templates(env=env)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    scripts: tuple[str, ...] = (),
) -> Response:
    """Draw a page; ``scripts`` are files under ``/static`` the page loads (CSP allows only them)."""
    templates: Jinja2Templates = request.app.state.ui_templates
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    csrf = session_csrf(request) if principal.via == "session" else None
    page = {
        "principal": principal,
        "csrf_token": csrf,
        "search_query": "",
        "current_path": request.url.path,
        # A page that reloads itself while work goes on (WCAG 2.2.1: the visitor can stop it).
        "refresh_stopped": request.query_params.get("refresh") == "off",
        "page_scripts": scripts,
        **context,
    }
    headers = page_headers(request)
    if scripts:
        csp = headers["content-security-policy"] + SCRIPT_CSP
        headers = {**headers, "content-security-policy": csp}
    return templates.TemplateResponse(request, name, page, status_code=status, headers=headers)


def page_headers(request: Request) -> dict[str, str]:
    """Pages' CSP; sign-out may end the single sign-on at the OpenID provider (form-action)."""
    oidc = request.app.state.container.settings.oidc
    if not oidc.enabled:
        return PAGE_HEADERS
    parts = urlsplit(oidc.issuer)
    csp = CSP.replace("form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}")
    return {**PAGE_HEADERS, "content-security-policy": csp}


def sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    context = {"title": title, "detail": sentence(detail), "status": status}
    return render(request, "error.html", context, status=status)


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


PAGE_ERRORS: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.UNAUTHENTICATED: (401, "Sign-in required"),
    ErrorKind.NOT_FOUND: (404, "Not found"),
    ErrorKind.FORBIDDEN: (403, "Permission denied"),
    ErrorKind.INVALID: (400, "Invalid request"),
    ErrorKind.CONFLICT: (409, "Conflict"),
    ErrorKind.TOO_LARGE: (413, "Too large"),
    ErrorKind.UNAVAILABLE: (503, "Unavailable"),
}


def guarded(request: Request, principal: Principal, build: Callable[[], Response]) -> Response:
    """Run a page; domain errors become pages (or a sign-in redirect), never a stack trace."""
    try:
        return build()
    except StockadeError as exc:
        if exc.kind is ErrorKind.UNAUTHENTICATED and principal.is_anonymous:
            return login_redirect(request)
        status, title = PAGE_ERRORS.get(exc.kind, (400, exc.title))
        return error_page(request, status, title, exc.detail)
