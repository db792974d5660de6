"""How many dry runs and explanations one caller may ask for per minute, counted in the database
(the sign-in throttle's table, under its own keys) so every worker and replica shares the count.

Callers are counted by user when signed in (``[mirror] previews_per_minute_user``, 120), else by
client address (``previews_per_minute_anonymous``, 30; IPv6 per /64). Over the limit:
429 with ``Retry-After`` until the minute is over. The few previews a process evaluates at once
are bounded separately (:func:`stockade.mirroring.preview.preview_slot`).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.models import SignInFailures
from stockade.auth.principal import Principal
from stockade.auth.ratelimit import client_key
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.db.upsert import insert_ignore
from stockade.mirroring.errors import PreviewBusyError
from stockade.settings import MirrorSettings

WINDOW = timedelta(seconds=60)


def caller_key(principal: Principal, ip: str | None) -> str:
    if principal.user_id is not None:
        return f"preview:u:{principal.user_id}"
    return f"preview:{client_key(ip)}"[:96]


def take_preview_turn(
    factory: sessionmaker[Session],
    principal: Principal,
    ip: str | None,
    settings: MirrorSettings,
) -> None:
    """Count one preview for the caller; 429 when its minute's allowance is used up."""
    key = caller_key(principal, ip)
    per_minute = (
        settings.previews_per_minute_anonymous
        if principal.is_anonymous
        else settings.previews_per_minute_user
    )
    now = utcnow()
    with transaction(factory) as session:
        values = {"key": key, "failures": 0, "window_started_at": now}
        insert_ignore(session, SignInFailures, values, ["key"])
        row = session.get(SignInFailures, key, with_for_update=True, populate_existing=True)
        assert row is not None
        if row.window_started_at <= now - WINDOW:
            row.failures, row.window_started_at = 0, now
        if row.failures >= per_minute:
            retry = int((row.window_started_at + WINDOW - now).total_seconds()) + 1
            raise PreviewBusyError(
                f"at most {per_minute} dry runs and explanations a minute; try again in {retry} s",
                retry_after=retry,
            )
        row.failures += 1
