"""What every page form shares: the CSRF check, form errors shown on the page, notices after a change.

A POST handler hands :func:`submit` the change to make and how to draw its page again. Anonymous
callers go to the sign-in page, a missing or wrong CSRF token gives a 403 page (and nothing is
changed), a domain error shows the page again with the message and a 4xx status, and success
redirects (303) to a page that names what was done (``?ok=user-created``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import quote

from fastapi import Form
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from stockade.auth.principal import Principal
from stockade.core.errors import ErrorKind, StockadeError
from stockade.web.csrf import CsrfError, require_session_token
from stockade.web.ui.render import PAGE_ERRORS, error_page, guarded, sentence

FormText = Annotated[str, Form()]
FormList = Annotated[list[str], Form()]
MAX_FIELD = 1024

NOTICES = {
    "password-changed": "Your password was changed and your other sessions ended.",
    "password-changed-tokens": "Your password was changed, your other sessions ended and "
    "your API tokens were revoked.",
    "token-revoked": "The token was revoked; it no longer works.",
    "user-created": "The user was created.",
    "user-updated": "The user was updated.",
    "user-enabled": "The account was enabled.",
    "user-disabled": "The account was disabled and its sessions ended.",
    "user-deleted": "The user was deleted.",
    "password-reset": "The password was reset.",
    "role-assigned": "The role was assigned.",
    "role-unassigned": "The role was taken away.",
    "service-created": "The service account was created; issue it a token below.",
    "group-created": "The group was created.",
    "group-updated": "The group was updated.",
    "group-deleted": "The group was deleted.",
    "member-added": "The member was added.",
    "member-removed": "The member was removed.",
    "role-created": "The role was created.",
    "role-updated": "The role was updated.",
    "role-deleted": "The role was deleted.",
    "privacy-changed": "The channel's access was changed.",
    "grant-saved": "The grant was saved.",
    "grant-removed": "The grant was removed.",
    "mirror-created": "The mirror was created; run it now or wait for its schedule.",
    "mirror-updated": "The mirror's settings were saved.",
    "mirror-deleted": "The mirror was deleted, and the records it had brought in removed.",
    "run-started": "A run was queued.",
    "run-stopped": "The run was asked to stop.",
    "policy-created": "The policy was created; assign it to a channel or a mirror to apply it.",
    "policy-updated": "The policy was saved; it applies from the next run.",
    "policy-deleted": "The policy was deleted.",
    "policy-assigned": "The policy was assigned; it applies from the next run.",
    "policy-unassigned": "The policy was unassigned.",
    # webhooks and CVE feeds (web/ui/webhooks_page.py, feeds_page.py)
    "webhook-updated": "The webhook was saved.",
    "webhook-deleted": "The webhook was deleted.",
    "webhook-pinged": "A test call was queued; its delivery is listed below.",
    "webhook-redelivered": "The delivery was queued to be sent again.",
    "feed-created": "The feed was added; it syncs at its schedule's next time, or now.",
    "feed-updated": "The feed was saved.",
    "feed-deleted": "The feed was removed; the advisories it brought stay.",
    "feed-sync-queued": "A sync was queued; the state below follows it.",
    # channel work (web/ui/channel_admin*.py)
    "channel-created": "The channel was created.",
    "channel-frozen": "The channel is frozen: its indexes stay as they are until it is unfrozen.",
    "channel-unfrozen": "The channel is unfrozen; what changed meanwhile is being published.",
    "channel-updated": "The channel's settings were saved.",
    "channel-deleted": "The channel was deleted, with its subchannels and their files.",
    "files-uploaded": "The files were uploaded; they appear in the indexes once published.",
    "files-copied": "The files were copied.",
    "files-moved": "The files were moved.",
    "files-removed": "The files were removed.",
    "patch-saved": "The patch was saved; the index is published again with it.",
    "patch-cleared": "The patch was removed; the index is published again without it.",
    "notice-added": "The notice was added; conda shows it to the channel's users.",
    "notice-removed": "The notice was removed.",
}


@dataclass(frozen=True)
class FormError:
    """A refused change, shown above the form it came from."""

    message: str
    status: int = 400
    form: str = ""  # which form on the page failed (so its fields keep what was typed)
    values: dict[str, str] = field(default_factory=dict)


Redraw = Callable[[FormError], Response]


def notice_of(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("ok", ""))


def done(url: str, notice: str) -> Response:
    """After a change: back to a page, with a notice (Post/Redirect/Get)."""
    assert notice in NOTICES
    return RedirectResponse(f"{url}?ok={notice}", status_code=303)


def path_part(value: str) -> str:
    return quote(value, safe="")


def clean(value: str, limit: int = MAX_FIELD) -> str:
    """A one-line form value: trimmed, without control characters, at most ``limit`` long."""
    return "".join(c for c in value if c.isprintable()).strip()[:limit]


def checked_post(
    request: Request,
    principal: Principal,
    csrf_token: str,
    action: Callable[[], Response],
    *,
    back: str,
) -> Response:
    """Sign-in and CSRF first, then the action with domain errors turned into pages."""
    if principal.is_anonymous:
        return RedirectResponse(f"/login?next={path_part(back)}", status_code=303)
    try:
        require_session_token(request, csrf_token)
    except CsrfError as exc:
        return error_page(request, 403, exc.title, exc.detail)
    return guarded(request, principal, action)


def submit(
    request: Request,
    principal: Principal,
    csrf_token: str,
    *,
    back: str,
    change: Callable[[], Response],
    redraw: Redraw,
    form: str = "",
    values: dict[str, str] | None = None,
) -> Response:
    """Make a change from a form; a refusal draws the page again with the reason."""

    def run() -> Response:
        try:
            return change()
        except StockadeError as exc:
            status, _ = PAGE_ERRORS.get(exc.kind, (400, exc.title))
            if exc.kind is ErrorKind.UNAUTHENTICATED:
                status = 400  # a wrong current password, a locked account: not a missing sign-in
            return redraw(FormError(sentence(exc.detail), status, form, values or {}))

    return checked_post(request, principal, csrf_token, run, back=back)
