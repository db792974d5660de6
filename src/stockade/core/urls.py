"""URLs parsed once, and shown without their secrets (ARCHITECTURE.md: "one redaction").

:func:`parse_url` is the one parser every check of a URL's scheme, host or path goes through: it
gives the scheme and host lower-cased, the port checked, and refuses what parsers disagree on
(backslashes, spaces, control characters, a host that ``httpx`` would read differently). Checks
then decide on :class:`ParsedURL`, never on the raw string (``FILE:///etc`` is a ``file`` URL).

:func:`redact_url` is the one redaction of a URL for display and logs: no userinfo password (a
lone user name is taken for a token), no ``/t/<token>/`` segment, no value of a secret-looking
query parameter. :func:`split_userinfo` separates credentials from a URL so they can be stored
encrypted apart from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

from stockade.core.logging import SCHEME, scrub

__all__ = [
    "DEFAULT_PORTS",
    "ParsedURL",
    "URLParseError",
    "origin_of",
    "parse_url",
    "redact_text",
    "redact_url",
    "split_userinfo",
]

DEFAULT_PORTS = {"http": 80, "https": 443, "ldap": 389, "ldaps": 636}
_SECRET_PARAM = re.compile(r"(?i)token|key|secret|password|passwd|sig|auth|credential")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class URLParseError(ValueError):
    """A URL that cannot be read safely; the message never repeats the URL."""


@dataclass(frozen=True)
class ParsedURL:
    """A URL's parts, normalized: ``scheme`` and ``host`` lower-case (an IPv6 host without
    brackets), ``port`` the explicit port or None."""

    scheme: str
    host: str
    port: int | None
    path: str
    query: str
    fragment: str
    username: str | None
    password: str | None

    @property
    def effective_port(self) -> int | None:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)

    @property
    def has_userinfo(self) -> bool:
        return self.username is not None or self.password is not None

    @property
    def origin(self) -> str:
        """``scheme://host:port`` (the port always written): what a credential is bound to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = self.effective_port
        return f"{self.scheme}://{host}" + (f":{port}" if port is not None else "")

    def unsplit(self, *, userinfo: bool = False) -> str:
        """The URL written back from its normalized parts (without userinfo unless asked)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host + (f":{self.port}" if self.port is not None else "")
        if userinfo and self.has_userinfo:
            user = self.username or ""
            netloc = f"{user}:{self.password}@{netloc}" if self.password else f"{user}@{netloc}"
        return urlunsplit((self.scheme, netloc, self.path, self.query, self.fragment))


def parse_url(url: str, *, max_length: int = 4096) -> ParsedURL:
    """``url`` parsed and normalized; URLParseError when it is not a plain absolute URL."""
    if not isinstance(url, str):
        raise URLParseError("a URL is a string")
    value = url.strip()
    if not value or len(value) > max_length:
        raise URLParseError(f"a URL is 1 to {max_length} characters")
    if not value.isprintable() or any(c.isspace() or c == "\\" for c in value):
        raise URLParseError("the URL has spaces, backslashes or control characters")
    if "%00" in value:  # a NUL once decoded (a path, a host): never a real URL
        raise URLParseError("the URL has an encoded NUL")
    if not _SCHEME_RE.match(value):
        raise URLParseError("the URL has no scheme (like https://)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range": never the URL itself
        raise URLParseError(f"the URL cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme in ("http", "https") and host:
        _same_host_for_httpx(value, host)
    return ParsedURL(
        scheme=scheme,
        host=host,
        port=port,
        path=parts.path,
        query=parts.query,
        fragment=parts.fragment,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _same_host_for_httpx(value: str, host: str) -> None:
    """Refuse a URL that the HTTP client would send to another host than the one checked."""
    try:
        seen = httpx.URL(value).host.lower()
    except (httpx.InvalidURL, ValueError):
        raise URLParseError("the URL cannot be parsed (host)") from None
    if seen.strip("[]") != host and seen != _idna(host):
        raise URLParseError("the URL's host is ambiguous")


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def origin_of(url: str) -> str | None:
    """The origin (``scheme://host:port``) of ``url``, None when it cannot be parsed."""
    try:
        return parse_url(url).origin
    except URLParseError:
        return None


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` part, and that part (percent-encoded) or None."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), userinfo


def redact_url(url: str) -> str:
    """``url`` fit for display: no userinfo password (a lone user name is taken for a token),
    no ``/t/<token>/`` segment, no value of a secret-looking query parameter."""
    try:
        parts = urlsplit(url)
        url.encode("utf-8")  # a lone surrogate cannot be shown (nor logged)
    except (ValueError, UnicodeError):
        return "<malformed url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*"
        )
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


_URL_IN_TEXT = re.compile(SCHEME + r"[^\s'\"<>]+")  # linear in the text (logging.SCHEME)


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every URL in it redacted and every string of ``secrets`` replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return scrub(_URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text))
