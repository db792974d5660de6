"""A mirror's stored credentials, each bound to what it was given for (docs/adr/0010).

* The upstream **token** is bound to the source's origin (``scheme://host:port``), stored beside
  it (``source_token_origin``). A change of the source to another origin, or of the proxy, drops
  the token unless the same change gives it again: whoever may edit a mirror cannot send an
  administrator's token to a server of their own.
* The **proxy credentials** (``user:password`` of the proxy URL) are stored encrypted
  (``proxy_auth_enc``) apart from the proxy URL, which is stored and shown without them. A proxy
  given again with the same origin and no credentials, or with the redacted password ``***``,
  keeps them; any other proxy replaces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.core.secrets import SecretBox
from stockade.core.urls import origin_of, split_userinfo
from stockade.mirroring.errors import InvalidMirrorError
from stockade.mirroring.models import Mirror

REDACTED = "***"


def proxy_url(mirror: Mirror, secrets: SecretBox) -> str | None:
    """The proxy URL to connect with: the stored URL and its decrypted credentials."""
    if not mirror.proxy:
        return None
    if not mirror.proxy_auth_enc:
        return mirror.proxy  # none, or a row written before they were encrypted (0006)
    scheme, _, rest = mirror.proxy.partition("://")
    return f"{scheme}://{secrets.decrypt(mirror.proxy_auth_enc)}@{rest}"


def seal_legacy_proxies(session: Session, secrets: SecretBox) -> int:
    """Proxy credentials stored in clear before migration 0006, stored encrypted apart now (the
    migration has no key; the server does this at start). Returns how many were sealed."""
    sealed = 0
    query = select(Mirror).where(Mirror.proxy.contains("@"), Mirror.proxy_auth_enc.is_(None))
    for mirror in session.scalars(query):
        assert mirror.proxy is not None
        clean, userinfo = split_userinfo(mirror.proxy)
        mirror.proxy = clean
        mirror.proxy_auth_enc = secrets.encrypt(userinfo) if userinfo else None
        sealed += 1
    return sealed


def has_proxy_credentials(mirror: Mirror) -> bool:
    return bool(mirror.proxy_auth_enc) or bool(mirror.proxy and "@" in mirror.proxy)


@dataclass(frozen=True)
class CredentialChange:
    """What an update did to stored credentials (for the audit event)."""

    token_dropped: bool = False
    proxy_credentials_dropped: bool = False

    def details(self) -> dict[str, bool] | None:
        found = {k: v for k, v in vars(self).items() if v}
        return found or None


def set_token(mirror: Mirror, secrets: SecretBox, token: str | None) -> None:
    """Store ``token`` (None or ``""`` clears it) bound to the mirror's current source origin."""
    if token:
        mirror.source_token_enc = secrets.encrypt(token)
        mirror.source_token_origin = origin_of(mirror.source_url)
    else:
        mirror.source_token_enc = None
        mirror.source_token_origin = None


def set_proxy(mirror: Mirror, secrets: SecretBox, proxy: str | None, userinfo: str | None) -> bool:
    """Store the checked ``proxy`` (without credentials) and ``userinfo``; True when stored
    credentials were dropped. A redacted password (``user:***``) keeps the stored ones when the
    proxy's origin and user are the same; elsewhere it is refused."""
    old_origin = origin_of(mirror.proxy) if mirror.proxy else None
    same_origin = proxy is not None and old_origin == origin_of(proxy)
    sealed = mirror.proxy_auth_enc
    had = sealed is not None
    old_user = _user(secrets.decrypt(sealed)) if sealed is not None else None
    keep = (
        same_origin
        and had
        and (userinfo is None or (_password(userinfo) == REDACTED and _user(userinfo) == old_user))
    )
    if userinfo is not None and _password(userinfo) == REDACTED and not keep:
        raise InvalidMirrorError(
            "proxy: give the proxy's password (*** keeps it only for the same proxy and user)",
            field="proxy",
        )
    mirror.proxy = proxy
    if not keep:
        mirror.proxy_auth_enc = secrets.encrypt(userinfo) if userinfo else None
    return had and not keep and not userinfo


def _user(userinfo: str) -> str:
    return unquote(userinfo.partition(":")[0])


def _password(userinfo: str) -> str:
    return unquote(userinfo.partition(":")[2])


def token_still_bound(mirror: Mirror, *, proxy_changed: bool) -> bool:
    """Whether the stored token may stay after a change of source or proxy."""
    if mirror.source_token_enc is None:
        return True
    return not proxy_changed and mirror.source_token_origin == origin_of(mirror.source_url)


__all__ = [
    "CredentialChange",
    "has_proxy_credentials",
    "proxy_url",
    "seal_legacy_proxies",
    "set_proxy",
    "set_token",
    "token_still_bound",
]
