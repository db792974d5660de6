"""Tokens on the pages: the creation form (personal, resource, scope), the list, the one-time secret.

Used by the account page (your own tokens) and the service account pages (an admin's tokens for CI).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from stockade.auth.admin import PrincipalAdmin
from stockade.auth.models import ApiToken
from stockade.auth.permissions import Category
from stockade.auth.principal import Principal
from stockade.auth.tokens import TOKEN_KINDS, TokenService
from stockade.channels.service import check_token_resources
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError
from stockade.web.ui.forms import clean

SCOPE_LEVELS = ("read", "write", "manage")
CATEGORIES = tuple(c.value for c in Category)
DEFAULT_DAYS = 90
MAX_RESOURCES = 64
_RESOURCE_LINE = re.compile(r"^(?P<channel>[^\s:=]+)\s*[:=\s]\s*(?P<level>[A-Za-z]+)$")


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    kind: str
    prefix: str
    scopes: list[str]
    resources: dict[str, str]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    revoked_at: datetime | None
    state: str  # active | expired | revoked


@dataclass(frozen=True)
class NewToken:
    """What the owner sees once, right after creating a token."""

    name: str
    secret: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenForm:
    name: str
    days: str
    kind: str
    scopes: list[str]
    resources: str

    def values(self) -> dict[str, str]:
        return {
            "token_name": self.name,
            "days": self.days,
            "kind": self.kind,
            "resources": self.resources,
        }


def token_rows(tokens: list[ApiToken]) -> list[TokenRow]:
    now = utcnow()
    rows = [
        TokenRow(
            id=t.id,
            name=t.name,
            kind=t.kind,
            prefix=t.display_prefix,
            scopes=list(t.scopes or []),
            resources=dict(t.resources or {}),
            created_at=t.created_at,
            expires_at=t.expires_at,
            last_used_at=t.last_used_at,
            last_used_ip=t.last_used_ip,
            revoked_at=t.revoked_at,
            state="revoked" if t.revoked_at else "expired" if t.expires_at <= now else "active",
        )
        for t in tokens
    ]
    order = {"active": 0, "expired": 1, "revoked": 2}
    return sorted(rows, key=lambda r: (order[r.state], -r.id))


def parse_days(value: str, max_days: int) -> int:
    try:
        days = int(value.strip())
    except ValueError:
        raise InvalidInputError(
            f"expiry must be a whole number of days between 1 and {max_days}", field="days"
        ) from None
    if not 1 <= days <= max_days:
        raise InvalidInputError(f"expiry must be between 1 and {max_days} days", field="days")
    return days


def parse_resources(text: str) -> dict[str, str]:
    """Lines of ``channel:level`` (or ``channel level``, ``channel=level``; ``name/*`` for a tree)."""
    resources: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _RESOURCE_LINE.match(line)
        if found is None or found["level"].lower() not in SCOPE_LEVELS:
            raise InvalidInputError(
                f"resources line {number}: write channel:level, e.g. team/ci:read",
                field="resources",
            )
        resources[found["channel"]] = found["level"].lower()
    if len(resources) > MAX_RESOURCES:
        raise InvalidInputError(
            f"a token lists at most {MAX_RESOURCES} channels", field="resources"
        )
    return resources


def issue_token(
    session: Session,
    principal: Principal,
    owner_name: str,
    form: TokenForm,
    *,
    max_days: int,
) -> NewToken:
    """Check the form and create the token (in the caller's transaction)."""
    owner = PrincipalAdmin(session, principal).user_for_token(owner_name)
    kind = form.kind if form.kind in TOKEN_KINDS else ""
    if not kind:
        raise InvalidInputError("choose a kind of token", field="kind")
    days = parse_days(form.days, max_days)
    scopes = [clean(s, 64) for s in form.scopes] if kind == "scope" else []
    resources = parse_resources(form.resources) if kind == "resource" else {}
    check_token_resources(session, owner, principal, resources)
    issued = TokenService(session, max_days=max_days).create(
        owner.id,
        clean(form.name, 256),
        days,
        kind=kind,
        scopes=scopes,
        resources=resources,
        actor=principal,
    )
    return NewToken(issued.record.name, issued.secret, issued.record.expires_at)


def token_form_context(max_days: int) -> dict[str, object]:
    """What the token form needs to draw its choices."""
    return {
        "token_kinds": TOKEN_KINDS,
        "scope_categories": CATEGORIES,
        "scope_levels": SCOPE_LEVELS,
        "token_max_days": max_days,
        "token_default_days": min(DEFAULT_DAYS, max_days),
    }
