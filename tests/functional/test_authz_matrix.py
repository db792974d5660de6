"""The authorization matrix (SPEC §12): every route of the application, every kind of principal.

The routes come from the application itself: ``create_app``'s route table (REST API, the conda
protocol route, the pages, docs and static files) is walked at collection time and every
(method, path template) is looked up in ``RULES`` below. A route without a rule fails with
"no authorization rule for METHOD PATH: add one", so no endpoint ships without someone deciding
who may call it. Rules for routes the application does not have (yet) are simply not collected.

One live server (SQLite) is set up through the API as the admin:

- users ``reader`` (read on the private channels through the group ``secret-readers``), ``writer``
  (write), ``manager`` (manage), ``owner`` (created the channels), ``outsider`` (write on the
  public channel only), ``leaver`` (read, then disabled), ``bystander`` (the target of changes);
- channels ``matrix-secret`` and ``matrix-vault`` (private, same grants), ``matrix-open``
  (public) and ``matrix-members`` (authenticated); one real package from the test data
  in ``matrix-secret``.

The principals: ``anonymous``; personal tokens of ``reader``, ``writer``, ``manager``, ``owner``
and ``admin``; ``other-channel`` (a resource token of ``outsider`` limited to ``matrix-open``);
``scope-missing`` (a scope token of the admin with only ``audit:read``); and three credentials
that must fail with 401 everywhere, even on public resources: ``expired`` (its ``expires_at``
moved into the past in the database), ``revoked`` and ``ldap-disabled`` (a token of a user whose
account was then disabled: what an LDAP sync does to a user removed from the directory).

Expected outcomes follow ``auth/access.py``: anonymous without read -> 401 (a sign-in redirect
on pages); signed in without read on a private channel -> 404; read but below the level -> 403;
a missing global permission -> 403. Tokens go in a Bearer header, and for some conda requests in
the URL (``/t/TOKEN/conda/…``, ``/conda/t/TOKEN/…``) or as a basic-auth password (conda's way).
Page forms take the web session's CSRF token, so for them the signed-in users use a real web
session (signed in through ``/login``); bearer-only principals get 403 there (no session, no
CSRF token). Routes that read no credentials at all (docs, static files, the sign-in and sign-out
forms, the SSO callback) answer every principal alike. Destructive calls act on objects made for
the call, so the matrix never destroys its own fixtures.

Every API and conda error must be an RFC 9457 problem, and no response may contain a secret of
the fixtures (token secrets, passwords, session cookies).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from starlette.routing import Mount

from stockade.auth.models import ApiToken
from stockade.auth.permissions import Level, Permission
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.web.credentials import SESSION_COOKIE
from stockade.web.csrf import LOGIN_COOKIE
from tests.conftest import TESTDATA
from tests.factories.packages import PackageSpec, build_conda
from tests.support.offline_app import flat_routes, offline_app
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server

# One world per worker. (With pytest 9.2, pytest-xdist 3.8 cannot tag node ids, so xdist_group
# is ignored for now and the cells are spread over the workers, each building its own world.)
pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("authz-matrix")]

API = "/api/v1"
CONDA = "/conda/{path:path}"
SECRET, VAULT, OPEN = "matrix-secret", "matrix-vault", "matrix-open"
MEMBERS = "matrix-members"  # privacy "authenticated": any signed-in user reads
GROUP = "secret-readers"
SERVICE = "ci-bot"
MIRRORED = "matrix-mirrored"  # private, grants as matrix-secret; fed by the mirror below
FILES_MIRROR = "matrix-files"  # file:// test-recipes into matrix-mirrored, run once at setup
HOLE_MIRROR = "matrix-hole"  # into matrix-secret, from an upstream that never answers
POLICY = "matrix-policy"
KEPT_NAME = "dependency"
KEPT = "dependency-1.0-0.conda"  # from tests/data/channels/test-recipes/noarch
PASSWORD = "matrix-password-1"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
TOKEN_RE = re.compile(r"stk[-_][A-Za-z0-9_-]{8,}")  # keeps secrets out of failure messages
LOGIN = "sign-in redirect"  # 303 to /login: what pages answer anonymous callers instead of 401

NONE, READ, WRITE, MANAGE = Level.NONE, Level.READ, Level.WRITE, Level.MANAGE
ANON = "anonymous"
PRINCIPALS = (
    ANON,
    "reader",
    "writer",
    "manager",
    "owner",
    "admin",
    "other-channel",
    "scope-missing",
    "expired",
    "revoked",
    "ldap-disabled",
)
INVALID = frozenset({"expired", "revoked", "ldap-disabled"})
RESTRICTED = frozenset({"other-channel", "scope-missing"})  # tokens narrower than their user
SESSION_USERS = ("reader", "writer", "manager", "owner", "admin")
USER_OF = {
    "reader": "reader",
    "writer": "writer",
    "manager": "manager",
    "owner": "owner",
    "admin": "admin",
    "other-channel": "outsider",
    "scope-missing": "admin",
    "expired": "reader",
    "revoked": "reader",
    "ldap-disabled": "leaver",
}

# -- the oracle: what each principal holds --------------------------------------------------------

AUTHOR = frozenset({Permission.CHANNEL_CREATE})
PERMISSIONS: dict[str, frozenset[Permission]] = {
    ANON: frozenset(),
    "reader": AUTHOR,
    "writer": AUTHOR,
    "manager": AUTHOR,
    "owner": AUTHOR,
    "admin": frozenset(Permission),
    "other-channel": frozenset(),  # a resource token carries no global permission
    "scope-missing": frozenset({Permission.AUDIT_READ}),
}
# Private channels (matrix-secret, matrix-vault and those made per call) all have these grants.
PRIVATE_LEVELS = {
    "reader": READ,
    "writer": WRITE,
    "manager": MANAGE,
    "owner": MANAGE,
    "admin": MANAGE,
}
OPEN_LEVELS = {
    **{p: READ for p in PRINCIPALS if p not in INVALID},  # public: anyone reads
    "other-channel": WRITE,  # outsider's grant, which its resource token keeps
    "owner": MANAGE,
    "admin": MANAGE,
}
MEMBERS_LEVELS = {
    **dict.fromkeys(("reader", "writer", "manager"), READ),  # signed in: read
    "owner": MANAGE,
    "admin": MANAGE,
    # other-channel: its resource token names only matrix-open; scope-missing: no channel scope
}


def level(principal: str, channel: str) -> Level:
    levels = {OPEN: OPEN_LEVELS, MEMBERS: MEMBERS_LEVELS}.get(channel, PRIVATE_LEVELS)
    return levels.get(principal, NONE)


Outcome = int | str
Expect = Callable[[str], Outcome]


def anyone(ok: Outcome) -> Expect:
    return lambda p: ok


def signed_in(ok: Outcome) -> Expect:
    return lambda p: 401 if p == ANON else ok


def unrestricted(ok: Outcome) -> Expect:
    """Signed in with a credential that stands for the whole user (not a scope/resource token)."""
    return lambda p: 401 if p == ANON else 403 if p in RESTRICTED else ok


def permission(needed: Permission, ok: Outcome) -> Expect:
    def decide(p: str) -> Outcome:
        if p == ANON:
            return 401
        return ok if needed in PERMISSIONS[p] else 403

    return decide


def any_permission(options: Iterable[Permission], ok: Outcome) -> Expect:
    wanted = frozenset(options)
    return lambda p: 401 if p == ANON else ok if wanted & PERMISSIONS[p] else 403


def on_channel(channel: str, needed: Level, ok: Outcome, *, sign_in: bool = True) -> Expect:
    """401 anonymous (without read), 404 signed in without read, 403 below ``needed``."""

    def decide(p: str) -> Outcome:
        if p == ANON and sign_in:
            return 401
        held = level(p, channel)
        if held >= needed:
            return ok
        if held == NONE:
            return 401 if p == ANON else 404
        return 403

    return decide


def draft_expect(p: str) -> Outcome:
    """A draft policy's dry run: read to see the channel, then write on it (or policy:write)."""
    if p == ANON:
        return 401
    held = level(p, MIRRORED)
    if held == NONE:
        return 404
    return 200 if held >= WRITE or P.POLICY_WRITE in PERMISSIONS[p] else 403


def copy_expect(source_needs: Level) -> Expect:
    """From matrix-secret (read to copy, write to move) into matrix-vault (write)."""

    def decide(p: str) -> Outcome:
        if p == ANON:
            return 401
        source, target = level(p, SECRET), level(p, VAULT)
        if source == NONE or target == NONE:
            return 404
        return 200 if source >= source_needs and target >= WRITE else 403

    return decide


def downloads_expect(channel: str | None) -> Expect:
    """audit:read: every channel; else manage on the channel (or on any, without one)."""

    def decide(p: str) -> Outcome:
        if p == ANON:
            return 401
        if Permission.AUDIT_READ in PERMISSIONS[p]:
            return 200
        if channel is None:
            managed = any(level(p, c) >= MANAGE for c in (SECRET, VAULT, OPEN, MEMBERS))
            return 200 if managed else 403
        return on_channel(channel, MANAGE, 200)(p)

    return decide


def forget_made_channel(w: World, _p: str, response: httpx.Response) -> None:
    """A channel a principal just made goes again: owning it would make them a channel manager
    in the cells that follow (whose downloads they may see, for one), whatever the order."""
    if response.status_code == 303:  # the form: /channels/NAME?ok=… (or /login: nothing made)
        location = response.headers["location"].split("?", 1)[0]
        if not location.startswith("/channels/"):
            return
        name = location.removeprefix("/channels/")
    else:
        name = response.json()["name"]
    w.call("DELETE", f"{API}/channels/{name}")


def revoke_others_token(p: str) -> Outcome:
    """Someone else's token: user:manage revokes it; to anyone else it does not exist."""
    if p == ANON:
        return 401
    if p in RESTRICTED:
        return 403  # a scope or resource token may revoke only itself
    return 200 if Permission.USER_MANAGE in PERMISSIONS[p] else 404


# -- requests -----------------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    url: str
    json: Any = None
    data: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    content: bytes | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    #: header (Bearer) | basic (any user name, the token as password: conda's way)
    #: | t (/t/TOKEN/conda/…) | conda-t (/conda/t/TOKEN/…)
    token_in: str = "header"


Build = Callable[["World", str], Req]
Check = Callable[["World", str, httpx.Response], None]


@dataclass(frozen=True)
class Case:
    """One request shape for a route, and what each principal must get.

    ``surface``: ``api`` and ``conda`` (errors are problems), ``page`` (a page read with the
    principal's bearer token), ``form`` (a page form: web session and CSRF token), ``free`` (the
    route reads no credentials at all: docs, static files, sign-in and sign-out forms).
    """

    method: str
    path: str
    expect: Expect
    build: Build
    label: str = ""
    surface: str = "api"
    check: Check | None = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}" + (f" ({self.label})" if self.label else "")


def expected_outcome(case: Case, principal: str) -> Outcome:
    if case.surface == "free":
        return case.expect(principal)
    if principal in INVALID:
        return 401  # wrong credentials are an error, never silently anonymous
    if case.surface == "form" and principal in RESTRICTED:
        return 403  # bearer only: no web session, so no CSRF token
    outcome = case.expect(principal)
    if case.surface in ("page", "form") and outcome == 401:
        return LOGIN
    return outcome


def req(method: str, url: str, **kwargs: Any) -> Build:
    return lambda _w, _p: Req(method, url, **kwargs)


# -- the world: a live server with its users, channels, tokens and web sessions -------------------


@dataclass(frozen=True)
class WebSession:
    cookie: str
    csrf: str


class World:
    def __init__(self, live: LiveServer, workdir: Path) -> None:
        self.live = live
        self.workdir = workdir
        # An upstream that accepts connections and never answers: runs from it stay "running".
        self.hole = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.hole_url = f"http://127.0.0.1:{self.hole.getsockname()[1]}/channel"
        self.hole_run = 0
        self.admin = httpx.Client(base_url=live.url, headers=bearer(live.admin_token), timeout=60)
        self.http = httpx.Client(base_url=live.url, timeout=60)
        self.tokens: dict[str, str] = {"admin": live.admin_token}
        self.sessions: dict[str, WebSession] = {}
        self.secrets: set[str] = {ADMIN_PASSWORD, PASSWORD, live.admin_token}

    def close(self) -> None:
        self.admin.close()
        self.http.close()
        self.hole.close()

    # setup, as the admin (or the owner) ------------------------------------------------------

    def call(self, method: str, url: str, *, client: httpx.Client | None = None, **kw: Any) -> Any:
        response = (client or self.admin).request(method, url, **kw)
        assert response.status_code < 300, f"setup {method} {url}: {response.text}"
        return response.json() if response.content else None

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def new_user(self, name: str | None = None, *, password: str = PASSWORD) -> str:
        name = name or self.unique("u")
        self.call("POST", f"{API}/users", json={"username": name, "password": password})
        return name

    def new_account(self) -> str:
        """A per-call user to act on: a service account (no password, so no argon2 to wait for)."""
        name = self.unique("sa")
        self.call("POST", f"{API}/service-accounts", json={"name": name})
        return name

    def new_group(self, *members: str) -> str:
        name = self.unique("g")
        self.call("POST", f"{API}/groups", json={"name": name})
        for member in members:
            self.call("PUT", f"{API}/groups/{name}/members/{member}")
        return name

    def new_role(self, *, user: str | None = None, group: str | None = None) -> str:
        name = self.unique("r")
        self.call("POST", f"{API}/roles", json={"name": name, "permissions": {}})
        if user or group:
            holder = {"user": user} if user else {"group": group}
            self.call("POST", f"{API}/roles/{name}/assignments", json=holder)
        return name

    def new_token(self, user: str, **extra: Any) -> tuple[int, str]:
        body = {"name": self.unique("t"), "expires_in_days": 7, "user": user, **extra}
        issued = self.call("POST", f"{API}/tokens", json=body)
        self.secrets.add(issued["token"])
        return int(issued["id"]), str(issued["token"])

    def grant(self, channel: str, level: str, **holder: str) -> None:
        self.call("PUT", f"{API}/channels/{channel}/members", json={"level": level, **holder})

    def new_channel(self, name: str | None = None, privacy: str = "private") -> str:
        """A channel of ``owner`` with the grants of matrix-secret."""
        name = name or self.unique("c")
        owner = bearer(self.tokens["owner"])
        body = {"name": name, "privacy": privacy}
        self.call("POST", f"{API}/channels", json=body, headers=owner)
        if privacy == "private":
            self.grant(name, "read", group=GROUP)
            self.grant(name, "write", user="writer")
            self.grant(name, "manage", user="manager")
        return name

    def new_package(self) -> Path:
        spec = PackageSpec(name=self.unique("matrix").lower(), version="1.0", build="0")
        return build_conda(self.workdir, spec)

    def upload(self, channel: str) -> str:
        return self.upload_path(channel).name

    def upload_path(self, channel: str) -> Path:
        path = self.new_package()
        files = [("files", (path.name, path.read_bytes(), "application/octet-stream"))]
        self.call("POST", f"{API}/channels/{channel}/files", files=files)
        return path

    def new_mirror(self, channel: str = SECRET) -> str:
        """A mirror (of the never-answering upstream) into ``channel``, made by the admin."""
        name = self.unique("m")
        body = {"name": name, "channel": channel, "source": self.hole_url, "schedule": ""}
        self.call("POST", f"{API}/mirrors", json={**body, "check": False})  # never answers
        return name

    def new_run(self) -> int:
        """A run that stays running (its upstream accepts connections and never answers)."""
        return int(self.call("POST", f"{API}/mirrors/{self.new_mirror()}/runs")["id"])

    def new_policy(self, *, assigned: str | None = None) -> str:
        name = self.unique("p")
        body = {"name": name, "definition": {"exclude_specs": ["python"]}}
        self.call("POST", f"{API}/policies", json=body)
        if assigned:
            self.call("POST", f"{API}/policies/{name}/assignments", json={"channel": assigned})
        return name

    def sign_in(self, username: str, password: str) -> WebSession:
        with httpx.Client(base_url=self.live.url, timeout=60) as client:
            form = CSRF_RE.search(client.get("/login").text)
            assert form is not None
            data = {"username": username, "password": password, "next": "/"}
            response = client.post("/login", data={**data, "csrf_token": form.group(1)})
            assert response.status_code == 303, response.text
            cookie = client.cookies.get(SESSION_COOKIE)
            assert cookie
            page = CSRF_RE.search(client.get("/account").text)
            assert page is not None, "no CSRF token on the account page"
        self.secrets.add(cookie)
        return WebSession(cookie, page.group(1))

    def user_of(self, principal: str) -> str:
        """The user behind a principal that may act; ``bystander`` for the others."""
        if principal == ANON or principal in INVALID:
            return "bystander"
        return USER_OF[principal]

    # the request under test ----------------------------------------------------------------

    def send(self, case: Case, principal: str, request: Req) -> httpx.Response:
        headers: dict[str, str] = {}
        cookies = dict(request.cookies)
        data = dict(request.data) if request.data is not None else None
        url = request.url
        token = self.tokens.get(principal)
        if case.surface == "form" and principal in self.sessions:
            web = self.sessions[principal]
            cookies[SESSION_COOKIE] = web.cookie
            data = {**(data or {}), "csrf_token": web.csrf}
        elif token is not None and request.token_in == "t":
            url = f"/t/{token}{url}"
        elif token is not None and request.token_in == "conda-t":
            url = f"/conda/t/{token}{url.removeprefix('/conda')}"
        elif token is not None and request.token_in == "basic":
            basic = base64.b64encode(f"conda:{token}".encode()).decode()
            headers["authorization"] = f"Basic {basic}"
        elif token is not None:
            headers["authorization"] = f"Bearer {token}"
        if cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self.http.cookies.clear()  # nothing carries over from one cell to the next
        return self.http.request(
            request.method,
            url,
            headers=headers,
            json=request.json,
            data=data,
            files=request.files,
            content=request.content,
        )

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<secret>")
        return text


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def build_world(live: LiveServer, workdir: Path) -> World:
    w = World(live, workdir)
    for name in ("reader", "writer", "manager", "owner", "outsider", "leaver", "bystander"):
        w.new_user(name)
    w.call("POST", f"{API}/service-accounts", json={"name": SERVICE})
    w.call("POST", f"{API}/groups", json={"name": GROUP})
    w.call("PUT", f"{API}/groups/{GROUP}/members/reader")
    for name in ("reader", "writer", "manager", "owner"):
        w.tokens[name] = w.new_token(name)[1]
    w.new_channel(SECRET)
    w.new_channel(VAULT)
    w.new_channel(OPEN, privacy="public")
    w.new_channel(MEMBERS, privacy="authenticated")
    w.grant(SECRET, "read", user="leaver")
    w.grant(OPEN, "write", user="outsider")
    package = TESTDATA / "channels" / "test-recipes" / "noarch" / KEPT
    files = [("files", (KEPT, package.read_bytes(), "application/octet-stream"))]
    w.call("POST", f"{API}/channels/{SECRET}/files", files=files)
    live.wait_published(SECRET)

    resource = {"kind": "resource", "resources": {OPEN: "write"}}
    w.tokens["other-channel"] = w.new_token("outsider", **resource)[1]
    w.tokens["scope-missing"] = w.new_token("admin", kind="scope", scopes=["audit:read"])[1]
    expired_id, w.tokens["expired"] = w.new_token("reader")
    with transaction(live.container.factory) as session:  # straight into the server's database
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == expired_id)
            .values(expires_at=utcnow() - timedelta(minutes=5))
        )
    revoked_id, w.tokens["revoked"] = w.new_token("reader")
    w.call("DELETE", f"{API}/tokens/{revoked_id}")
    w.tokens["ldap-disabled"] = w.new_token("leaver")[1]
    w.call("PATCH", f"{API}/users/leaver", json={"is_active": False})

    # Synced now: the hole's runs (started from here on) never end and hold the job threads, so a
    # sync first asked for by a later cell would wait in the queue behind them.
    matrix_feed(w)
    build_mirrors(w)
    for name in SESSION_USERS:
        w.sessions[name] = w.sign_in(name, ADMIN_PASSWORD if name == "admin" else PASSWORD)
    return w


def build_mirrors(w: World) -> None:
    """matrix-files (file://, run once) into matrix-mirrored; matrix-hole into matrix-secret."""
    w.new_channel(MIRRORED)
    source = (TESTDATA / "channels" / "test-recipes").resolve().as_uri()
    body = {"name": FILES_MIRROR, "channel": MIRRORED, "source": source, "subdirs": ["noarch"]}
    w.call("POST", f"{API}/mirrors", json={**body, "schedule": ""})
    run = w.call("POST", f"{API}/mirrors/{FILES_MIRROR}/runs")
    deadline = time.monotonic() + 60
    while w.call("GET", run["url"])["state"] in ("pending", "running"):
        assert time.monotonic() < deadline, "the matrix mirror run did not end"
        time.sleep(0.1)
    body = {"name": HOLE_MIRROR, "channel": SECRET, "source": w.hole_url, "schedule": ""}
    w.call("POST", f"{API}/mirrors", json={**body, "check": False})  # never answers
    w.hole_run = int(w.call("POST", f"{API}/mirrors/{HOLE_MIRROR}/runs")["id"])
    w.call("POST", f"{API}/policies", json={"name": POLICY, "definition": {"keep_latest": 1}})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("authz-matrix")
    with (
        fresh_database("sqlite", data_dir, None) as db_url,
        # the matrix's webhooks point at a closed loopback port (calls fail at once)
        run_server(data_dir, db_url, webhooks={"allow_loopback": True}) as live,
    ):
        workdir = data_dir / "packages"
        workdir.mkdir()
        w = build_world(live, workdir)
        try:
            yield w
        finally:
            w.close()


# -- builders for requests that need their own objects -------------------------------------------


def password_of(user: str) -> str:
    return ADMIN_PASSWORD if user == "admin" else PASSWORD


def own_token(w: World, p: str) -> Req:
    token_id, _ = w.new_token(w.user_of(p))
    return Req("DELETE", f"{API}/tokens/{token_id}")


def bystander_token(w: World, _p: str) -> Req:
    token_id, _ = w.new_token("bystander")
    return Req("DELETE", f"{API}/tokens/{token_id}")


def new_channel_then(method: str, suffix: str = "", **kwargs: Any) -> Build:
    return lambda w, _p: Req(method, f"{API}/channels/{w.new_channel()}{suffix}", **kwargs)


def upload_multipart(channel: str) -> Build:
    def build(w: World, _p: str) -> Req:
        path = w.new_package()
        files = [("files", (path.name, path.read_bytes(), "application/octet-stream"))]
        return Req("POST", f"{API}/channels/{channel}/files", files=files)

    return build


def upload_each(channel: str) -> Build:
    """``POST .../uploads``: the per-file endpoint (200 with each file's outcome)."""

    def build(w: World, _p: str) -> Req:
        path = w.new_package()
        files = [("files", (path.name, path.read_bytes(), "application/octet-stream"))]
        return Req("POST", f"{API}/channels/{channel}/uploads", files=files)

    return build


def upload_put(w: World, _p: str) -> Req:
    path = w.new_package()
    return Req("PUT", f"{API}/channels/{SECRET}/files/{path.name}", content=path.read_bytes())


def upload_again_forced(w: World, _p: str) -> Req:
    """Replace a file that is there (``force``): needs manage, not just write."""
    path = w.upload_path(SECRET)
    url = f"{API}/channels/{SECRET}/files/{path.name}?force=true"
    return Req("PUT", url, content=path.read_bytes())


def move_files(w: World, _p: str) -> Req:
    """Move out of matrix-secret (write there, as removing) into matrix-vault (write)."""
    body = {"source": SECRET, "target": VAULT, "files": [f"noarch/{w.upload(SECRET)}"]}
    return Req("POST", f"{API}/copy", json={**body, "move": True})


def delete_file(w: World, _p: str) -> Req:
    return Req("DELETE", f"{API}/channels/{SECRET}/files/noarch/{w.upload(SECRET)}")


def remove_files(w: World, _p: str) -> Req:
    body = {"files": [f"noarch/{w.upload(SECRET)}"]}
    return Req("POST", f"{API}/channels/{SECRET}/remove", json=body)


def delete_notice(w: World, _p: str) -> Req:
    notice = w.call("POST", f"{API}/channels/{SECRET}/notices", json={"message": "to delete"})
    return Req("DELETE", f"{API}/channels/{SECRET}/notices/{notice['id']}")


def revoke_member(w: World, _p: str) -> Req:
    w.grant(SECRET, "read", user="bystander")
    return Req("DELETE", f"{API}/channels/{SECRET}/members?user=bystander")


def show_self(w: World, p: str) -> Req:
    return Req("GET", f"{API}/users/{w.user_of(p)}")


def patch_self(w: World, p: str) -> Req:
    """Change one's own display name: harmless when allowed, telling when not. (Not the password:
    a new password ends the user's other sessions, which later form cells sign in with; the
    password form below covers that, keeping its own session.)"""
    user = w.user_of(p)
    return Req("PATCH", f"{API}/users/{user}", json={"display_name": f"{user} (self)"})


def per_user(method: str, suffix: str = "", **kwargs: Any) -> Build:
    return lambda w, _p: Req(method, f"{API}/users/{w.new_account()}{suffix}", **kwargs)


def per_group(method: str, suffix: str = "", *, members: tuple[str, ...] = (), **kw: Any) -> Build:
    return lambda w, _p: Req(method, f"{API}/groups/{w.new_group(*members)}{suffix}", **kw)


def per_role(method: str, **kwargs: Any) -> Build:
    return lambda w, _p: Req(method, f"{API}/roles/{w.new_role()}", **kwargs)


def assign_role(w: World, _p: str) -> Req:
    body = {"user": w.new_account()}
    return Req("POST", f"{API}/roles/{w.new_role()}/assignments", json=body)


def unassign_role(w: World, _p: str) -> Req:
    user = w.new_account()
    return Req("DELETE", f"{API}/roles/{w.new_role(user=user)}/assignments?user={user}")


def login_form(_w: World, _p: str) -> Req:
    token = "matrix-login-csrf-0123456789abcdef"  # double submit: cookie and field agree
    data = {"username": "bystander", "password": PASSWORD, "next": "/", "csrf_token": token}
    return Req("POST", "/login", data=data, cookies={LOGIN_COOKIE: token})


def form(url: str, **data: Any) -> Build:
    return lambda _w, _p: Req("POST", url, data=dict(data))


def user_form(suffix: str, **data: Any) -> Build:
    return lambda w, _p: Req("POST", f"/admin/users/{w.new_account()}{suffix}", data=dict(data))


def group_form(suffix: str, *, members: tuple[str, ...] = (), **data: Any) -> Build:
    return lambda w, _p: Req("POST", f"/admin/groups/{w.new_group(*members)}{suffix}", data=data)


def role_form(suffix: str, **data: Any) -> Build:
    return lambda w, _p: Req("POST", f"/admin/roles/{w.new_role()}{suffix}", data=dict(data))


def user_role_form(w: World, _p: str) -> Req:
    url = f"/admin/users/{w.new_account()}/roles"
    return Req("POST", url, data={"role": w.new_role()})


def user_role_remove_form(w: World, _p: str) -> Req:
    user = w.new_account()
    return Req("POST", f"/admin/users/{user}/roles/remove", data={"role": w.new_role(user=user)})


def group_role_form(w: World, _p: str) -> Req:
    return Req("POST", f"/admin/groups/{w.new_group()}/roles", data={"role": w.new_role()})


def group_role_remove_form(w: World, _p: str) -> Req:
    group = w.new_group()
    url = f"/admin/groups/{group}/roles/remove"
    return Req("POST", url, data={"role": w.new_role(group=group)})


def role_assign_form(w: World, _p: str) -> Req:
    data = {"holder_kind": "user", "holder": w.new_account()}
    return Req("POST", f"/admin/roles/{w.new_role()}/assign", data=data)


def role_unassign_form(w: World, _p: str) -> Req:
    user = w.new_account()
    data = {"holder_kind": "user", "holder": user}
    return Req("POST", f"/admin/roles/{w.new_role(user=user)}/unassign", data=data)


def user_token_revoke_form(w: World, _p: str) -> Req:
    token_id, _ = w.new_token("bystander")
    return Req("POST", f"/admin/users/bystander/tokens/{token_id}/revoke", data={})


def service_token_revoke_form(w: World, _p: str) -> Req:
    token_id, _ = w.new_token(SERVICE)
    return Req("POST", f"/admin/service-accounts/{SERVICE}/tokens/{token_id}/revoke", data={})


def own_token_revoke_form(w: World, p: str) -> Req:
    token_id, _ = w.new_token(w.user_of(p))
    return Req("POST", f"/account/tokens/{token_id}/revoke", data={})


def own_password_form(w: World, p: str) -> Req:
    pw = password_of(w.user_of(p))
    data = {"current_password": pw, "new_password": pw, "confirm_password": pw}
    return Req("POST", "/account/password", data=data)


def member_revoke_form(w: World, _p: str) -> Req:
    w.grant(SECRET, "read", user="bystander")
    data = {"holder_kind": "user", "holder": "bystander"}
    return Req("POST", f"/channels/{SECRET}/members/revoke", data=data)


# -- checks on allowed answers -------------------------------------------------------------------


def check_whoami(w: World, p: str, response: httpx.Response) -> None:
    assert response.json()["username"] == (ANON if p == ANON else USER_OF[p])


def check_channel_list(w: World, p: str, response: httpx.Response) -> None:
    names = {c["name"] for c in response.json()}
    assert OPEN in names
    assert (SECRET in names) == (level(p, SECRET) >= READ), f"{SECRET} listed: {SECRET in names}"


def check_page_listing(w: World, p: str, response: httpx.Response) -> None:
    shown = SECRET in response.text
    assert shown == (level(p, SECRET) >= READ), f"{SECRET} shown on the page: {shown}"


def check_private_index(w: World, p: str, response: httpx.Response) -> None:
    assert KEPT in response.text


# -- the rules -----------------------------------------------------------------------------------

P = Permission


def _api_rules() -> Iterator[Case]:
    ch = f"{API}/channels/{{channel:path}}"
    # whoami and tokens
    yield Case("GET", f"{API}/whoami", anyone(200), req("GET", f"{API}/whoami"), check=check_whoami)
    # search: the private channel's package only for who can read it (also by typo, where-is)
    for q in (KEPT_NAME, KEPT_NAME[:-1] + "x"):
        found = req("GET", f"{API}/search?q={q}")
        yield Case("GET", f"{API}/search", anyone(200), found, check=check_page_listing, label=q)
    held = req("GET", f"{API}/search/where/{KEPT_NAME}")
    yield Case("GET", f"{API}/search/where/{{name}}", anyone(200), held, check=check_page_listing)
    new_token = lambda w, _p: Req(  # noqa: E731
        "POST", f"{API}/tokens", json={"name": w.unique("t"), "expires_in_days": 1}
    )
    # A scope or resource token must not mint a personal token: that would undo its limits.
    yield Case("POST", f"{API}/tokens", unrestricted(201), new_token)
    for_ci = lambda w, _p: Req(  # noqa: E731
        "POST", f"{API}/tokens", json={"name": w.unique("t"), "expires_in_days": 1, "user": SERVICE}
    )
    yield Case("POST", f"{API}/tokens", permission(P.USER_MANAGE, 201), for_ci, label="for CI")
    yield Case("GET", f"{API}/tokens", unrestricted(200), req("GET", f"{API}/tokens"), label="own")
    theirs = req("GET", f"{API}/tokens?user=bystander")
    yield Case("GET", f"{API}/tokens", permission(P.USER_READ, 200), theirs, label="someone's")
    tok = f"{API}/tokens/{{token_id}}"
    yield Case("DELETE", tok, unrestricted(200), own_token, label="own token")
    yield Case("DELETE", tok, revoke_others_token, bystander_token, label="someone else's")
    # users, service accounts, groups, roles
    body = lambda w, _p: Req(  # noqa: E731
        "POST", f"{API}/users", json={"username": w.unique("u"), "password": PASSWORD}
    )
    yield Case("POST", f"{API}/users", permission(P.USER_WRITE, 201), body)
    yield Case("GET", f"{API}/users", permission(P.USER_READ, 200), req("GET", f"{API}/users"))
    user = f"{API}/users/{{username}}"
    yield Case("GET", user, signed_in(200), show_self, label="self")
    other = req("GET", f"{API}/users/bystander")
    yield Case("GET", user, permission(P.USER_READ, 200), other, label="someone else")
    # Self-service (here: setting one's password) is for credentials that stand for the user.
    yield Case("PATCH", user, unrestricted(200), patch_self, label="self")
    other = req("PATCH", f"{API}/users/bystander", json={"display_name": "Bystander"})
    yield Case("PATCH", user, permission(P.USER_WRITE, 200), other, label="someone else")
    yield Case("DELETE", user, permission(P.USER_MANAGE, 204), per_user("DELETE"))
    sa = lambda w, _p: Req(  # noqa: E731
        "POST", f"{API}/service-accounts", json={"name": w.unique("sa")}
    )
    yield Case("POST", f"{API}/service-accounts", permission(P.USER_WRITE, 201), sa)
    listing = req("GET", f"{API}/service-accounts")
    yield Case("GET", f"{API}/service-accounts", permission(P.USER_READ, 200), listing)
    yield Case("GET", f"{API}/groups", permission(P.USER_READ, 200), req("GET", f"{API}/groups"))
    group = lambda w, _p: Req("POST", f"{API}/groups", json={"name": w.unique("g")})  # noqa: E731
    yield Case("POST", f"{API}/groups", permission(P.USER_WRITE, 201), group)
    grp = f"{API}/groups/{{name}}"
    shown = req("GET", f"{API}/groups/{GROUP}")
    yield Case("GET", grp, permission(P.USER_READ, 200), shown)
    patched = per_group("PATCH", json={"description": "changed"})
    yield Case("PATCH", grp, permission(P.USER_WRITE, 200), patched)
    yield Case("DELETE", grp, permission(P.USER_WRITE, 204), per_group("DELETE"))
    member = f"{API}/groups/{{name}}/members/{{username}}"
    added = per_group("PUT", "/members/bystander")
    yield Case("PUT", member, permission(P.USER_WRITE, 200), added)
    removed = per_group("DELETE", "/members/bystander", members=("bystander",))
    yield Case("DELETE", member, permission(P.USER_WRITE, 200), removed)
    yield Case("GET", f"{API}/roles", permission(P.ROLE_READ, 200), req("GET", f"{API}/roles"))
    role = lambda w, _p: Req(  # noqa: E731
        "POST", f"{API}/roles", json={"name": w.unique("r"), "permissions": {"audit": "read"}}
    )
    yield Case("POST", f"{API}/roles", permission(P.ROLE_MANAGE, 201), role)
    rl = f"{API}/roles/{{name}}"
    yield Case("GET", rl, permission(P.ROLE_READ, 200), req("GET", f"{API}/roles/author"))
    patched = per_role("PATCH", json={"description": "changed"})
    yield Case("PATCH", rl, permission(P.ROLE_MANAGE, 200), patched)
    yield Case("DELETE", rl, permission(P.ROLE_MANAGE, 204), per_role("DELETE"))
    assignments = f"{API}/roles/{{name}}/assignments"
    yield Case("POST", assignments, permission(P.ROLE_WRITE, 200), assign_role)
    yield Case("DELETE", assignments, permission(P.ROLE_WRITE, 200), unassign_role)
    # audit
    audit = permission(P.AUDIT_READ, 200)
    yield Case("GET", f"{API}/audit", audit, req("GET", f"{API}/audit?limit=5"))
    export = req("GET", f"{API}/audit/export?type=channel.create")
    yield Case("GET", f"{API}/audit/export", audit, export)
    yield Case("GET", f"{API}/audit/verify", audit, req("GET", f"{API}/audit/verify"))
    # downloads: audit:read sees every channel's, managers their channels' (only)
    yield Case("GET", f"{API}/downloads", downloads_expect(None), req("GET", f"{API}/downloads"))
    yield Case(
        "GET",
        f"{API}/downloads",
        downloads_expect(SECRET),
        req("GET", f"{API}/downloads?channel={SECRET}"),
        label="one channel",
    )
    report = req("GET", f"{API}/downloads/report?by=user&format=csv")
    yield Case("GET", f"{API}/downloads/report", downloads_expect(None), report)
    # LDAP administration (not configured here: 422 once the permission check lets one through)
    ldap = permission(P.SYSTEM_MANAGE, 422)
    yield Case("POST", f"{API}/ldap/test", ldap, req("POST", f"{API}/ldap/test", json={}))
    yield Case("POST", f"{API}/ldap/sync", ldap, req("POST", f"{API}/ldap/sync"))
    # channels
    made = lambda w, _p: Req(  # noqa: E731
        "POST", f"{API}/channels", json={"name": w.unique("c"), "privacy": "private"}
    )
    yield Case(
        "POST",
        f"{API}/channels",
        permission(P.CHANNEL_CREATE, 201),
        made,
        check=forget_made_channel,
    )
    sub = lambda w, _p: Req(  # noqa: E731
        "POST", f"{API}/channels", json={"name": f"{SECRET}/{w.unique('sub')}"}
    )
    yield Case("POST", f"{API}/channels", on_channel(SECRET, MANAGE, 201), sub, label="subchannel")
    listing = req("GET", f"{API}/channels")
    yield Case("GET", f"{API}/channels", anyone(200), listing, check=check_channel_list)
    read = on_channel(SECRET, READ, 200, sign_in=False)
    yield Case("GET", ch, read, req("GET", f"{API}/channels/{SECRET}"), label="private")
    public = on_channel(OPEN, READ, 200, sign_in=False)
    yield Case("GET", ch, public, req("GET", f"{API}/channels/{OPEN}"), label="public")
    members_only = on_channel(MEMBERS, READ, 200, sign_in=False)
    shown = req("GET", f"{API}/channels/{MEMBERS}")
    yield Case("GET", ch, members_only, shown, label="authenticated")
    manage = on_channel(SECRET, MANAGE, 200)
    changed = new_channel_then("PATCH", json={"description": "changed"})
    yield Case("PATCH", ch, manage, changed)
    yield Case("DELETE", ch, on_channel(SECRET, MANAGE, 204), new_channel_then("DELETE"))
    yield Case("POST", f"{ch}/freeze", manage, new_channel_then("POST", "/freeze"))
    yield Case("POST", f"{ch}/unfreeze", manage, new_channel_then("POST", "/unfreeze"))
    yield Case("GET", f"{ch}/subdirs", read, req("GET", f"{API}/channels/{SECRET}/subdirs"))
    yield Case("GET", f"{ch}/notices", read, req("GET", f"{API}/channels/{SECRET}/notices"))
    notice = req("POST", f"{API}/channels/{SECRET}/notices", json={"message": "matrix"})
    yield Case("POST", f"{ch}/notices", on_channel(SECRET, MANAGE, 201), notice)
    gone = on_channel(SECRET, MANAGE, 204)
    yield Case("DELETE", f"{ch}/notices/{{notice_id}}", gone, delete_notice)
    # members
    members = req("GET", f"{API}/channels/{SECRET}/members")
    yield Case("GET", f"{ch}/members", on_channel(SECRET, READ, 200), members)
    grant = {"user": "bystander", "level": "read"}
    granted = req("PUT", f"{API}/channels/{SECRET}/members", json=grant)
    yield Case("PUT", f"{ch}/members", manage, granted)
    yield Case("DELETE", f"{ch}/members", manage, revoke_member)
    # files
    write = on_channel(SECRET, WRITE, 201)
    yield Case("POST", f"{ch}/files", write, upload_multipart(SECRET), label="private")
    public_write = on_channel(OPEN, WRITE, 201)
    yield Case("POST", f"{ch}/files", public_write, upload_multipart(OPEN), label="public")
    yield Case("POST", f"{ch}/uploads", on_channel(SECRET, WRITE, 200), upload_each(SECRET))
    yield Case("PUT", f"{ch}/files/{{filename}}", write, upload_put)
    forced = on_channel(SECRET, MANAGE, 201)
    yield Case("PUT", f"{ch}/files/{{filename}}", forced, upload_again_forced, label="force")
    yield Case("GET", f"{ch}/files", read, req("GET", f"{API}/channels/{SECRET}/files"))
    one = f"{ch}/files/{{subdir}}/{{filename}}"
    yield Case("GET", one, read, req("GET", f"{API}/channels/{SECRET}/files/noarch/{KEPT}"))
    yield Case("DELETE", one, on_channel(SECRET, WRITE, 204), delete_file)
    yield Case("POST", f"{ch}/remove", on_channel(SECRET, WRITE, 200), remove_files)
    copy = {"source": SECRET, "target": VAULT, "files": [f"noarch/{KEPT}"], "skip_existing": True}
    yield Case("POST", f"{API}/copy", copy_expect(READ), req("POST", f"{API}/copy", json=copy))
    yield Case("POST", f"{API}/copy", copy_expect(WRITE), move_files, label="move")
    # patches (on a file name nobody uploaded: the rows change, the packages do not)
    yield Case("GET", f"{ch}/patches", read, req("GET", f"{API}/channels/{SECRET}/patches"))
    one_patch = f"{ch}/patches/{{subdir}}/{{filename}}"
    patch_url = f"{API}/channels/{SECRET}/patches/noarch/ghost-1.0-0.conda"
    patch = {"changes": {"license": "MIT"}}
    patched = req("PUT", patch_url, json=patch)
    yield Case("PUT", one_patch, on_channel(SECRET, WRITE, 200), patched)
    cleared = req("DELETE", patch_url)
    yield Case("DELETE", one_patch, on_channel(SECRET, WRITE, 204), cleared)
    doc = {
        "patch_instructions_version": 1,
        "packages.conda": {"ghost-1.0-0.conda": {"license": "MIT"}},
    }
    imported = req("POST", f"{API}/channels/{SECRET}/patches/noarch", json=doc)
    yield Case("POST", f"{ch}/patches/{{subdir}}", on_channel(SECRET, WRITE, 200), imported)


def _conda_rules() -> Iterator[Case]:
    private = on_channel(SECRET, READ, 200, sign_in=False)
    public = on_channel(OPEN, READ, 200, sign_in=False)
    index, package = f"/conda/{SECRET}/noarch/repodata.json", f"/conda/{SECRET}/noarch/{KEPT}"
    rules: list[tuple[str, Expect, Build, str]] = [
        ("GET", private, req("GET", index), "private index"),
        ("GET", private, req("GET", package), "private package"),
        ("GET", private, req("GET", f"/conda/{SECRET}/channeldata.json"), "private channeldata"),
        ("GET", private, req("GET", index, token_in="t"), "private index, /t/TOKEN/conda"),
        ("GET", private, req("GET", index, token_in="basic"), "private index, basic auth"),
        (
            "GET",
            on_channel(MEMBERS, READ, 200, sign_in=False),
            req("GET", f"/conda/{MEMBERS}/noarch/repodata.json"),
            "authenticated index",
        ),
        (
            "GET",
            private,
            req("GET", package, token_in="conda-t"),
            "private package, /conda/t/TOKEN",
        ),
        ("GET", public, req("GET", f"/conda/{OPEN}/noarch/repodata.json"), "public index"),
        (
            "GET",
            public,
            req("GET", f"/conda/{OPEN}/noarch/repodata.json", token_in="t"),
            "public index, /t/TOKEN/conda",
        ),
        ("HEAD", private, req("HEAD", package), "private package"),
    ]
    for method, expect, build, label in rules:
        check = check_private_index if label.startswith("private index") else None
        yield Case(method, CONDA, expect, build, label=label, surface="conda", check=check)


def _page_rules() -> Iterator[Case]:
    def page(path: str, expect: Expect, build: Build, **kw: Any) -> Case:
        return Case("GET", path, expect, build, surface="page", **kw)

    def post(path: str, expect: Expect, build: Build, **kw: Any) -> Case:
        return Case("POST", path, expect, build, surface="form", **kw)

    def free(method: str, path: str, ok: int, build: Build) -> Case:
        return Case(method, path, anyone(ok), build, surface="free")

    # infrastructure: no credentials read at all
    yield free("GET", f"{API}/openapi.json", 200, req("GET", f"{API}/openapi.json"))
    yield free("GET", "/api/docs", 200, req("GET", "/api/docs"))
    yield free("GET", "/docs/oauth2-redirect", 200, req("GET", "/docs/oauth2-redirect"))
    yield free("GET", "/healthz", 200, req("GET", "/healthz"))
    # nginx's auth_request endpoint: only with x_accel_redirect set (not on this server)
    yield free("GET", "/_stockade/authz", 404, req("GET", "/_stockade/authz"))
    # failing publications: counted for everyone, listed for the channels the caller may read
    # (it reads credentials: wrong ones are a 401 there too)
    yield Case("GET", "/readyz", anyone(200), req("GET", "/readyz"))
    # Prometheus metrics: not public by default ([metrics] public = false): system:read (admins)
    yield Case("GET", "/metrics", permission(Permission.SYSTEM_READ, 200), req("GET", "/metrics"))
    yield free("GET", "/static", 200, req("GET", "/static/forms.css"))
    yield free("GET", "/static/swagger-ui", 200, req("GET", "/static/swagger-ui/swagger-ui.css"))
    yield free("GET", "/favicon.ico", 200, req("GET", "/favicon.ico"))
    # sign-in, sign-out, single sign-on (not configured on this server: 404)
    yield page("/login", lambda p: 200 if p == ANON else 303, req("GET", "/login"))
    yield free("POST", "/login", 303, login_form)  # the form's credentials are what counts
    yield free("POST", "/logout", 303, req("POST", "/logout"))  # ends the cookie's session, if any
    yield page("/login/sso", anyone(404), req("GET", "/login/sso"))
    yield free("GET", "/auth/oidc/callback", 404, req("GET", "/auth/oidc/callback"))
    # browsing
    yield page("/", anyone(200), req("GET", "/"), check=check_page_listing)
    yield free("GET", "/channels", 303, req("GET", "/channels"))  # a plain redirect to /
    found = req("GET", f"/search?q={KEPT_NAME}")
    yield page("/search", anyone(200), found, check=check_page_listing)
    held = req("GET", f"/search/where/{KEPT_NAME}")
    yield page("/search/where/{name}", anyone(200), held, check=check_page_listing)
    read = on_channel(SECRET, READ, 200, sign_in=False)
    pkg = req("GET", f"/channels/{SECRET}/packages/{KEPT_NAME}")
    yield page("/channels/{name:path}/packages/{package}", read, pkg)
    channel = "/channels/{name:path}"
    yield page(channel, read, req("GET", f"/channels/{SECRET}"), label="private")
    public = on_channel(OPEN, READ, 200, sign_in=False)
    yield page(channel, public, req("GET", f"/channels/{OPEN}"), label="public")
    # channel members
    members = f"{channel}/members"
    yield page(members, on_channel(SECRET, READ, 200), req("GET", f"/channels/{SECRET}/members"))
    manage = on_channel(SECRET, MANAGE, 303)
    privacy = form(f"/channels/{SECRET}/members/privacy", privacy="private")  # unchanged
    yield post(f"{members}/privacy", manage, privacy)
    grant = form(
        f"/channels/{SECRET}/members/grant", holder_kind="user", holder="bystander", level="read"
    )
    yield post(f"{members}/grant", manage, grant)
    yield post(f"{members}/revoke", manage, member_revoke_form)
    # my account
    yield page("/account", unrestricted(200), req("GET", "/account"))
    yield post("/account/password", signed_in(303), own_password_form)
    token = form("/account/tokens", token_name="matrix", days="1", kind="personal")
    yield post("/account/tokens", signed_in(201), token)
    yield post("/account/tokens/{token_id}/revoke", signed_in(303), own_token_revoke_form)
    # administration
    sections = (P.USER_READ, P.ROLE_READ, P.AUDIT_READ, P.SECURITY_READ)  # Signing: security
    yield page("/admin", any_permission(sections, 200), req("GET", "/admin"))
    users = "/admin/users"
    yield page(users, permission(P.USER_READ, 200), req("GET", users))
    new_user = lambda w, _p: Req(  # noqa: E731
        "POST", users, data={"username": w.unique("u"), "password": PASSWORD}
    )
    yield post(users, permission(P.USER_WRITE, 303), new_user)
    one = f"{users}/{{name}}"
    yield page(one, permission(P.USER_READ, 200), req("GET", f"{users}/bystander"))
    profile = form(f"{users}/bystander/profile", display_name="Bystander")
    yield post(f"{one}/profile", permission(P.USER_WRITE, 303), profile)
    active = user_form("/active", active="yes")
    yield post(f"{one}/active", permission(P.USER_WRITE, 303), active)
    reset = form(f"{users}/bystander/password", password=PASSWORD)  # the password it has
    yield post(f"{one}/password", permission(P.USER_WRITE, 303), reset)
    deleted = user_form("/delete", confirm="yes")
    yield post(f"{one}/delete", permission(P.USER_MANAGE, 303), deleted)
    yield post(f"{one}/roles", permission(P.ROLE_WRITE, 303), user_role_form)
    yield post(f"{one}/roles/remove", permission(P.ROLE_WRITE, 303), user_role_remove_form)
    revoke = f"{one}/tokens/{{token_id}}/revoke"
    yield post(revoke, permission(P.USER_MANAGE, 303), user_token_revoke_form)
    accounts = "/admin/service-accounts"
    yield page(accounts, permission(P.USER_READ, 200), req("GET", accounts))
    new_account = lambda w, _p: Req("POST", accounts, data={"name": w.unique("sa")})  # noqa: E731
    yield post(accounts, permission(P.USER_WRITE, 303), new_account)
    account = f"{accounts}/{{name}}"
    yield page(account, permission(P.USER_READ, 200), req("GET", f"{accounts}/{SERVICE}"))
    issued = form(f"{accounts}/{SERVICE}/tokens", token_name="ci", days="1", kind="personal")
    yield post(f"{account}/tokens", permission(P.USER_MANAGE, 201), issued)
    revoke = f"{account}/tokens/{{token_id}}/revoke"
    yield post(revoke, permission(P.USER_MANAGE, 303), service_token_revoke_form)
    groups = "/admin/groups"
    yield page(groups, permission(P.USER_READ, 200), req("GET", groups))
    new_group = lambda w, _p: Req("POST", groups, data={"name": w.unique("g")})  # noqa: E731
    yield post(groups, permission(P.USER_WRITE, 303), new_group)
    grp = f"{groups}/{{name}}"
    yield page(grp, permission(P.USER_READ, 200), req("GET", f"{groups}/{GROUP}"))
    added = group_form("/members", username="bystander")
    yield post(f"{grp}/members", permission(P.USER_WRITE, 303), added)
    removed = group_form("/members/remove", members=("bystander",), username="bystander")
    yield post(f"{grp}/members/remove", permission(P.USER_WRITE, 303), removed)
    described = group_form("/description", description="changed")
    yield post(f"{grp}/description", permission(P.USER_WRITE, 303), described)
    yield post(f"{grp}/roles", permission(P.ROLE_WRITE, 303), group_role_form)
    yield post(f"{grp}/roles/remove", permission(P.ROLE_WRITE, 303), group_role_remove_form)
    deleted = group_form("/delete", confirm="yes")
    yield post(f"{grp}/delete", permission(P.USER_WRITE, 303), deleted)
    roles = "/admin/roles"
    yield page(roles, permission(P.ROLE_READ, 200), req("GET", roles))
    new_role = lambda w, _p: Req(  # noqa: E731
        "POST", roles, data={"name": w.unique("r"), "levels": ["audit:read"]}
    )
    yield post(roles, permission(P.ROLE_MANAGE, 303), new_role)
    rl = f"{roles}/{{name}}"
    yield page(rl, permission(P.ROLE_READ, 200), req("GET", f"{roles}/author"))
    updated = role_form("", description="changed", levels=["audit:read"])
    yield post(rl, permission(P.ROLE_MANAGE, 303), updated)
    yield post(f"{rl}/assign", permission(P.ROLE_WRITE, 303), role_assign_form)
    yield post(f"{rl}/unassign", permission(P.ROLE_WRITE, 303), role_unassign_form)
    yield post(f"{rl}/delete", permission(P.ROLE_MANAGE, 303), role_form("/delete", confirm="yes"))
    audit = "/admin/audit"
    yield page(audit, permission(P.AUDIT_READ, 200), req("GET", audit))
    downloads = "/admin/downloads"
    yield page(downloads, downloads_expect(None), req("GET", downloads))
    yield post(f"{audit}/verify", permission(P.AUDIT_READ, 200), form(f"{audit}/verify"))
    yield from _mirror_page_rules()
    yield from _cve_page_rules()


def _mirror_api_rules() -> Iterator[Case]:
    """Mirrors follow the channel's levels (read to see, manage to change and run); policies are
    global (policy:read/write/manage), previews need read on the channel."""
    yield Case("GET", f"{API}/mirrors", anyone(200), req("GET", f"{API}/mirrors"))
    create = lambda w, _p: Req(  # noqa: E731
        "POST", f"{API}/mirrors", json={"name": w.unique("m"), "source": w.hole_url, "check": False}
    )
    yield Case("POST", f"{API}/mirrors", permission(P.CHANNEL_CREATE, 201), create)
    mirror = f"{API}/mirrors/{{name}}"
    yield Case(
        "GET", mirror, on_channel(SECRET, READ, 200), req("GET", f"{API}/mirrors/{HOLE_MIRROR}")
    )
    patch = req("PATCH", f"{API}/mirrors/{HOLE_MIRROR}", json={"concurrency": 4})
    yield Case("PATCH", mirror, on_channel(SECRET, MANAGE, 200), patch)
    delete = lambda w, _p: Req("DELETE", f"{API}/mirrors/{w.new_mirror()}")  # noqa: E731
    yield Case("DELETE", mirror, on_channel(SECRET, MANAGE, 204), delete)
    start = lambda w, _p: Req("POST", f"{API}/mirrors/{w.new_mirror()}/runs")  # noqa: E731
    yield Case("POST", f"{mirror}/runs", on_channel(SECRET, MANAGE, 202), start)
    runs = req("GET", f"{API}/mirrors/{HOLE_MIRROR}/runs")
    yield Case("GET", f"{mirror}/runs", on_channel(SECRET, READ, 200), runs)
    excl = req("GET", f"{API}/mirrors/{FILES_MIRROR}/exclusions")
    yield Case("GET", f"{mirror}/exclusions", on_channel(MIRRORED, READ, 200), excl)
    run = f"{API}/runs/{{run_id}}"
    show = lambda w, _p: Req("GET", f"{API}/runs/{w.hole_run}")  # noqa: E731
    yield Case("GET", run, on_channel(SECRET, READ, 200), show)
    logs = lambda w, _p: Req("GET", f"{API}/runs/{w.hole_run}/logs")  # noqa: E731
    yield Case("GET", f"{run}/logs", on_channel(SECRET, READ, 200), logs)
    stop = lambda w, _p: Req("POST", f"{API}/runs/{w.new_run()}/stop")  # noqa: E731
    yield Case("POST", f"{run}/stop", on_channel(SECRET, MANAGE, 200), stop)
    # policies
    pol = f"{API}/policies"
    yield Case("GET", pol, permission(P.POLICY_READ, 200), req("GET", pol))
    new = lambda w, _p: Req("POST", pol, json={"name": w.unique("p")})  # noqa: E731
    yield Case("POST", pol, permission(P.POLICY_WRITE, 201), new)
    one = f"{pol}/{{name}}"
    yield Case("GET", one, permission(P.POLICY_READ, 200), req("GET", f"{pol}/{POLICY}"))
    change = req("PATCH", f"{pol}/{POLICY}", json={"description": "changed"})
    yield Case("PATCH", one, permission(P.POLICY_WRITE, 200), change)
    drop = lambda w, _p: Req("DELETE", f"{pol}/{w.new_policy()}")  # noqa: E731
    yield Case("DELETE", one, permission(P.POLICY_MANAGE, 204), drop)
    assign = lambda w, _p: Req(  # noqa: E731
        "POST", f"{pol}/{w.new_policy()}/assignments", json={"channel": MIRRORED}
    )
    yield Case("POST", f"{one}/assignments", permission(P.POLICY_READ, 201), assign)
    unassign = lambda w, _p: Req(  # noqa: E731
        "DELETE", f"{pol}/{w.new_policy(assigned=MIRRORED)}/assignments?channel={MIRRORED}"
    )
    yield Case("DELETE", f"{one}/assignments", permission(P.POLICY_MANAGE, 204), unassign)
    preview = {"channel": MIRRORED, "mirror": FILES_MIRROR}
    stored = req("POST", f"{pol}/{POLICY}/dry-run", json=preview)
    yield Case("POST", f"{one}/dry-run", permission(P.POLICY_READ, 200), stored)
    draft = req("POST", f"{pol}/dry-run", json={**preview, "definition": {"keep_latest": 1}})
    yield Case("POST", f"{pol}/dry-run", draft_expect, draft)
    why = req("GET", f"{pol}/explain?channel={MIRRORED}&spec=python")
    yield Case("GET", f"{pol}/explain", on_channel(MIRRORED, READ, 200), why)


MATRIX_CVE = "MATRIX-CVE-1"  # an OSV advisory of the package in matrix-secret
_CVE_FEEDS: dict[str, str] = {}


def _feed_folder(w: World, name: str) -> Path:
    folder = w.workdir / name
    folder.mkdir(exist_ok=True)
    return folder


def new_feed(w: World) -> str:
    """A feed of an empty folder, made by the admin."""
    name = w.unique("feed")
    url = _feed_folder(w, "empty-feed").as_uri()
    w.call("POST", f"{API}/cve/feeds", json={"name": name, "url": url, "format": "osv"})
    return name


def matrix_feed(w: World) -> str:
    """One feed holding ``MATRIX_CVE`` (of dependency 1.0), synced once."""
    known = _CVE_FEEDS.get(w.live.url)
    if known is not None:
        return known
    folder = _feed_folder(w, "matrix-feed")
    record = {
        "id": MATRIX_CVE,
        "modified": "2024-01-01T00:00:00Z",
        "summary": "an advisory of the matrix package",
        "affected": [{"package": {"ecosystem": "conda", "name": KEPT_NAME}, "versions": ["1.0"]}],
    }
    (folder / f"{MATRIX_CVE}.json").write_text(json.dumps(record))
    name = w.unique("feed")
    w.call("POST", f"{API}/cve/feeds", json={"name": name, "url": folder.as_uri(), "format": "osv"})
    location = f"{API}/cve/feeds/{name}"
    w.call("POST", f"{location}/sync")
    deadline = time.monotonic() + 60
    while w.call("GET", location)["last_status"] == "queued":
        assert time.monotonic() < deadline, "the matrix feed sync did not end"
        time.sleep(0.05)
    _CVE_FEEDS[w.live.url] = name
    return name


def _cve_api_rules() -> Iterator[Case]:
    """Vulnerabilities are global (cve:read to read, cve:write to curate, cve:manage for feeds);
    matches show only on channels the caller can read (checked in test_cves_api.py)."""
    feeds = f"{API}/cve/feeds"
    yield Case("GET", feeds, permission(P.CVE_READ, 200), req("GET", feeds))
    create = lambda w, _p: Req(  # noqa: E731
        "POST",
        feeds,
        json={
            "name": w.unique("feed"),
            "url": _feed_folder(w, "empty-feed").as_uri(),
            "format": "osv",
        },
    )
    yield Case("POST", feeds, permission(P.CVE_MANAGE, 201), create)
    one = f"{feeds}/{{name}}"
    show = lambda w, _p: Req("GET", f"{feeds}/{matrix_feed(w)}")  # noqa: E731
    yield Case("GET", one, permission(P.CVE_READ, 200), show)
    change = lambda w, _p: Req(  # noqa: E731
        "PATCH", f"{feeds}/{matrix_feed(w)}", json={"schedule": "0 * * * *"}
    )
    yield Case("PATCH", one, permission(P.CVE_MANAGE, 200), change)
    drop = lambda w, _p: Req("DELETE", f"{feeds}/{new_feed(w)}")  # noqa: E731
    yield Case("DELETE", one, permission(P.CVE_MANAGE, 204), drop)
    sync = lambda w, _p: Req("POST", f"{feeds}/{new_feed(w)}/sync")  # noqa: E731
    yield Case("POST", f"{one}/sync", permission(P.CVE_MANAGE, 202), sync)
    cves = f"{API}/cves"
    yield Case("GET", cves, permission(P.CVE_READ, 200), req("GET", cves))
    cve = f"{cves}/{{vuln_id}}"

    def advisory(suffix: str = "", method: str = "GET", **kw: Any) -> Build:
        def build(w: World, _p: str) -> Req:
            matrix_feed(w)
            return Req(method, f"{cves}/{MATRIX_CVE}{suffix}", **kw)

        return build

    yield Case("GET", cve, permission(P.CVE_READ, 200), advisory())
    body = {"package": KEPT_NAME, "version": "1.0", "status": "cleared", "note": "matrix"}
    curate = advisory("/curations", "POST", json=body)
    yield Case("POST", f"{cve}/curations", permission(P.CVE_WRITE, 201), curate)
    yield Case("GET", f"{cve}/curations", permission(P.CVE_READ, 200), advisory("/curations"))
    yield from _cve_admin_rules()


def _feed_zip() -> bytes:
    """A zip of one OSV record (of the matrix package): an import body."""
    import io
    import zipfile

    record = {"id": "MATRIX-IMPORT-1", "modified": "2024-01-01T00:00:00Z", "affected": []}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("MATRIX-IMPORT-1.json", json.dumps(record))
    return buffer.getvalue()


def new_name_entry(w: World) -> int:
    """An admin name-map entry, made by the admin."""
    body = {"conda_name": w.unique("nm"), "identifier": "matrix:product"}
    return int(w.call("POST", f"{API}/cve/name-map", json=body)["entry"]["id"])


def _cve_admin_rules() -> Iterator[Case]:
    """Imports, export and name-map changes need cve:manage; the name map reads with cve:read."""
    imports = f"{API}/cve/imports?format=osv"
    body = _feed_zip()
    yield Case(
        "POST",
        f"{API}/cve/imports",
        permission(P.CVE_MANAGE, 200),
        req("POST", imports, content=body),
    )
    yield Case(
        "GET", f"{API}/cve/export", permission(P.CVE_MANAGE, 200), req("GET", f"{API}/cve/export")
    )
    names = f"{API}/cve/name-map"
    yield Case("GET", names, permission(P.CVE_READ, 200), req("GET", names))
    add = lambda w, _p: Req(  # noqa: E731
        "POST", names, json={"conda_name": w.unique("nm"), "identifier": "pkg:pypi/matrix"}
    )
    yield Case("POST", names, permission(P.CVE_MANAGE, 201), add)
    drop = lambda w, _p: Req("DELETE", f"{names}/{new_name_entry(w)}")  # noqa: E731
    yield Case("DELETE", f"{names}/{{entry_id}}", permission(P.CVE_MANAGE, 200), drop)
    load = lambda w, _p: Req(  # noqa: E731
        "POST",
        f"{names}/import",
        content=f"conda,identifier\n{w.unique('nm')},pkg:pypi/m\n".encode(),
    )
    yield Case("POST", f"{names}/import", permission(P.CVE_MANAGE, 200), load)


def _cve_page_rules() -> Iterator[Case]:
    """The vulnerability pages: the API's rules (cve:read, cve:write to curate); the package
    tab also needs read on the channel (404 without it, checked first)."""

    def advisory(suffix: str = "", method: str = "GET", **kw: Any) -> Build:
        def build(w: World, _p: str) -> Req:
            matrix_feed(w)
            return Req(method, f"/cves/{MATRIX_CVE}{suffix}", **kw)

        return build

    def tab(p: str) -> Outcome:
        seen = on_channel(SECRET, READ, 200)(p)
        return seen if seen != 200 else permission(P.CVE_READ, 200)(p)

    yield Case("GET", "/cves", permission(P.CVE_READ, 200), req("GET", "/cves"), surface="page")
    cve = "/cves/{vuln_id}"
    yield Case("GET", cve, permission(P.CVE_READ, 200), advisory(), surface="page")
    body = {"package": KEPT_NAME, "version": "1.0", "status": "cleared", "note": "matrix"}
    curate = advisory("/curations", "POST", data=body)
    yield Case("POST", f"{cve}/curations", permission(P.CVE_WRITE, 303), curate, surface="form")

    def shown(w: World, _p: str) -> Req:
        matrix_feed(w)
        return Req("GET", f"/channels/{SECRET}/packages/{KEPT_NAME}/vulnerabilities")

    path = "/channels/{name:path}/packages/{package}/vulnerabilities"
    yield Case("GET", path, tab, shown, surface="page")


def _report_api_rules() -> Iterator[Case]:
    """Reports read channels: whoever can read them, anonymous too for public channels; a
    channel the caller cannot read does not exist (checked in test_reports_api.py)."""
    read = on_channel(SECRET, READ, 200)
    env = {"specs": [KEPT_NAME], "channels": [SECRET]}
    yield Case("POST", f"{API}/reports/env", read, req("POST", f"{API}/reports/env", json=env))
    ch = f"{API}/channels/{{channel:path}}"
    pkg = f"{API}/channels/{SECRET}/packages/{KEPT_NAME}"
    one = "version=1.0&build=0&subdir=noarch"
    yield Case("GET", f"{ch}/packages/{{name}}/tree", read, req("GET", f"{pkg}/tree?{one}"))
    sbom = req("GET", f"{pkg}/sbom?{one}&format=spdx")
    yield Case("GET", f"{ch}/packages/{{name}}/sbom", read, sbom)
    listed = req("GET", f"{API}/channels/{SECRET}/vulnerabilities")
    yield Case("GET", f"{ch}/vulnerabilities", read, listed, label="private")
    public = on_channel(OPEN, READ, 200, sign_in=False)
    shown = req("GET", f"{API}/channels/{OPEN}/vulnerabilities?format=csv")
    yield Case("GET", f"{ch}/vulnerabilities", public, shown, label="public")
    # the page: a form that changes nothing, open to anyone (session forms carry the CSRF token,
    # checked in test_reports_api.py); a private channel needs read, as in the API
    yield Case("GET", "/reports/env", anyone(200), req("GET", "/reports/env"), surface="page")
    page = req("POST", "/reports/env", data={"specs": KEPT_NAME, "channel": SECRET})
    yield Case("POST", "/reports/env", read, page, surface="page")


_WEBHOOKS: dict[str, int] = {}
CLOSED_HOOK = "http://127.0.0.1:9/matrix"  # refused at once: the calls fail without waiting


def new_webhook(w: World) -> int:
    """A webhook of matrix-secret, made by the admin."""
    made = w.call("POST", f"{API}/channels/{SECRET}/webhooks", json={"url": CLOSED_HOOK})
    return int(made["id"])


def matrix_webhook(w: World) -> int:
    known = _WEBHOOKS.get(w.live.url)
    if known is None:
        known = _WEBHOOKS[w.live.url] = new_webhook(w)
    return known


def _webhook_api_rules() -> Iterator[Case]:
    """A channel's webhooks are its managers' (owner, manage grant, admin), whatever the call."""
    hooks = f"{API}/channels/{{channel:path}}/webhooks"
    manage = on_channel(SECRET, MANAGE, 200)
    at = f"{API}/channels/{SECRET}/webhooks"
    yield Case("GET", hooks, manage, req("GET", at))
    body = {"url": CLOSED_HOOK, "events": ["vulnerability.active"]}
    yield Case("POST", hooks, on_channel(SECRET, MANAGE, 201), req("POST", at, json=body))
    one = f"{hooks}/{{webhook_id}}"

    def shared(method: str, suffix: str = "", **kw: Any) -> Build:
        return lambda w, _p: Req(method, f"{at}/{matrix_webhook(w)}{suffix}", **kw)

    yield Case("GET", one, manage, shared("GET"))
    yield Case("PATCH", one, manage, shared("PATCH", json={"description": "matrix"}))
    drop = lambda w, _p: Req("DELETE", f"{at}/{new_webhook(w)}")  # noqa: E731
    yield Case("DELETE", one, on_channel(SECRET, MANAGE, 204), drop)
    yield Case("POST", f"{one}/ping", on_channel(SECRET, MANAGE, 202), shared("POST", "/ping"))
    yield Case("GET", f"{one}/deliveries", manage, shared("GET", "/deliveries"))

    def redeliver(w: World, _p: str) -> Req:
        hook = matrix_webhook(w)
        delivery = w.call("POST", f"{at}/{hook}/ping")["delivery_id"]
        return Req("POST", f"{at}/{hook}/deliveries/{delivery}/redeliver")

    again = f"{one}/deliveries/{{delivery_id}}/redeliver"
    yield Case("POST", again, on_channel(SECRET, MANAGE, 202), redeliver)


def manages_any(ok: Outcome) -> Expect:
    """The webhook list: whoever manages some channel (or every channel: channel:manage)."""

    def decide(p: str) -> Outcome:
        if p == ANON:
            return 401
        managed = any(level(p, c) >= MANAGE for c in (SECRET, VAULT, OPEN, MEMBERS))
        return ok if managed or P.CHANNEL_MANAGE in PERMISSIONS[p] else 403

    return decide


def _webhook_feed_page_rules() -> Iterator[Case]:
    """The webhook and CVE feed pages (web/ui/webhooks_page.py, feeds_page.py): the API's rules
    as pages and forms (a webhook: manage on its channel; feeds: cve:read, cve:manage)."""

    def page(path: str, expect: Expect, build: Build) -> Case:
        return Case("GET", path, expect, build, surface="page")

    def post(path: str, expect: Expect, build: Build) -> Case:
        return Case("POST", path, expect, build, surface="form")

    hooks, manage = "/admin/webhooks", on_channel(SECRET, MANAGE, 303)
    yield page(hooks, manages_any(200), req("GET", hooks))
    body = {"channel": SECRET, "url": CLOSED_HOOK, "events": "vulnerability.active"}
    yield post(hooks, on_channel(SECRET, MANAGE, 201), req("POST", hooks, data=body))
    one = f"{hooks}/{{webhook_id}}"

    def shared(method: str, suffix: str = "", **data: Any) -> Build:
        sent = data if method == "POST" else None
        return lambda w, _p: Req(method, f"{hooks}/{matrix_webhook(w)}{suffix}", data=sent)

    yield page(one, on_channel(SECRET, MANAGE, 200), shared("GET"))
    edit = {"url": CLOSED_HOOK, "events": "vulnerability.active", "enabled": "yes"}
    yield post(one, manage, shared("POST", **edit))
    yield post(f"{one}/ping", manage, shared("POST", "/ping"))

    def redeliver(w: World, _p: str) -> Req:
        hook = matrix_webhook(w)
        delivery = w.call("POST", f"{API}/channels/{SECRET}/webhooks/{hook}/ping")["delivery_id"]
        return Req("POST", f"{hooks}/{hook}/deliveries/{delivery}/redeliver", data={})

    yield post(f"{one}/deliveries/{{delivery_id}}/redeliver", manage, redeliver)
    drop = lambda w, _p: Req("POST", f"{hooks}/{new_webhook(w)}/delete", data={"confirm": "yes"})  # noqa: E731
    yield post(f"{one}/delete", manage, drop)

    feeds = "/admin/cve-feeds"
    yield page(feeds, permission(P.CVE_READ, 200), req("GET", feeds))
    made = lambda w, _p: Req(  # noqa: E731
        "POST",
        feeds,
        data={
            "name": w.unique("feed"),
            "url": _feed_folder(w, "empty-feed").as_uri(),
            "format": "osv",
        },
    )
    yield post(feeds, permission(P.CVE_MANAGE, 303), made)
    named = f"{feeds}/{{name}}"
    show = lambda w, _p: Req("GET", f"{feeds}/{matrix_feed(w)}")  # noqa: E731
    yield page(named, permission(P.CVE_READ, 200), show)
    saved = {"format": "osv", "schedule": "0 * * * *", "enabled": "yes"}
    save = lambda w, _p: Req("POST", f"{feeds}/{matrix_feed(w)}", data=saved)  # noqa: E731
    yield post(named, permission(P.CVE_MANAGE, 303), save)

    def on_new(suffix: str, **data: str) -> Build:
        return lambda w, _p: Req("POST", f"{feeds}/{new_feed(w)}{suffix}", data=dict(data))

    yield post(f"{named}/sync", permission(P.CVE_MANAGE, 303), on_new("/sync"))
    yield post(f"{named}/enabled", permission(P.CVE_MANAGE, 303), on_new("/enabled", enabled="no"))
    yield post(f"{named}/delete", permission(P.CVE_MANAGE, 303), on_new("/delete", confirm="yes"))


def check_mirror_listing(w: World, p: str, response: httpx.Response) -> None:
    shown = HOLE_MIRROR in response.text
    assert shown == (level(p, SECRET) >= READ), f"{HOLE_MIRROR} shown on the page: {shown}"


def mirror_settings_form(w: World, _p: str) -> Req:
    data = {"source": w.hole_url, "mode": "passive", "subdirs": "noarch", "concurrency": "4"}
    return Req("POST", f"/mirrors/{w.new_mirror()}", data={**data, "enabled": "yes"})


def run_stop_form(w: World, _p: str) -> Req:
    mirror = w.new_mirror()
    run = w.call("POST", f"{API}/mirrors/{mirror}/runs")["id"]
    return Req("POST", f"/mirrors/{mirror}/runs/{run}/stop", data={})


def _mirror_page_rules() -> Iterator[Case]:
    """The mirror and policy pages: the rules of the API behind them, as pages and forms."""

    def page(path: str, expect: Expect, build: Build, **kw: Any) -> Case:
        return Case("GET", path, expect, build, surface="page", **kw)

    def post(path: str, expect: Expect, build: Build, **kw: Any) -> Case:
        return Case("POST", path, expect, build, surface="form", **kw)

    mirrors = "/mirrors"
    yield page(mirrors, anyone(200), req("GET", mirrors), check=check_mirror_listing)
    made = lambda w, _p: Req(  # noqa: E731
        "POST",
        mirrors,
        data={"name": w.unique("m"), "source": w.hole_url, "subdirs": "noarch", "no_check": "yes"},
    )
    yield post(mirrors, permission(P.CHANNEL_CREATE, 303), made)
    one = f"{mirrors}/{{name}}"
    read = on_channel(MIRRORED, READ, 200, sign_in=False)
    yield page(one, read, req("GET", f"{mirrors}/{FILES_MIRROR}"))
    why = req("GET", f"{mirrors}/{FILES_MIRROR}?spec=python&subdir=noarch")
    yield page(one, read, why, label="explain")
    manage = on_channel(SECRET, MANAGE, 303)
    yield post(one, manage, mirror_settings_form)
    run_now = lambda w, _p: Req("POST", f"{mirrors}/{w.new_mirror()}/run", data={})  # noqa: E731
    yield post(f"{one}/run", manage, run_now)
    gone = lambda w, _p: Req(  # noqa: E731
        "POST", f"{mirrors}/{w.new_mirror()}/delete", data={"confirm": "yes"}
    )
    yield post(f"{one}/delete", manage, gone)
    run = f"{one}/runs/{{run_id}}"
    shown = lambda w, _p: Req("GET", f"{mirrors}/{HOLE_MIRROR}/runs/{w.hole_run}")  # noqa: E731
    yield page(run, on_channel(SECRET, READ, 200, sign_in=False), shown)
    yield post(f"{run}/stop", manage, run_stop_form)
    # policies: global permissions; previews also need read on the channel
    pol = "/policies"
    yield page(pol, permission(P.POLICY_READ, 200), req("GET", pol))
    yield page(f"{pol}/new", permission(P.POLICY_WRITE, 200), req("GET", f"{pol}/new"))
    created = lambda w, _p: Req(  # noqa: E731
        "POST", f"{pol}/new", data={"name": w.unique("p"), "exclude_specs": "python"}
    )
    yield post(f"{pol}/new", permission(P.POLICY_WRITE, 303), created)
    draft = form(f"{pol}/new", action="preview", preview_channel=MIRRORED, keep_latest="1")
    yield post(f"{pol}/new", permission(P.POLICY_WRITE, 200), draft, label="preview")
    named = f"{pol}/{{name}}"
    yield page(named, permission(P.POLICY_READ, 200), req("GET", f"{pol}/{POLICY}"))
    saved = lambda w, _p: Req(  # noqa: E731
        "POST", f"{pol}/{w.new_policy()}", data={"description": "changed", "keep_latest": "2"}
    )
    yield post(named, permission(P.POLICY_WRITE, 303), saved)
    stored = form(f"{pol}/{POLICY}", action="preview", preview_channel=MIRRORED, keep_latest="1")
    yield post(named, permission(P.POLICY_READ, 200), stored, label="preview")
    dropped = lambda w, _p: Req(  # noqa: E731
        "POST", f"{pol}/{w.new_policy()}/delete", data={"confirm": "yes"}
    )
    yield post(f"{named}/delete", permission(P.POLICY_MANAGE, 303), dropped)
    assigned = lambda w, _p: Req(  # noqa: E731
        "POST", f"{pol}/{w.new_policy()}/assign", data={"target": f"channel:{MIRRORED}"}
    )
    yield post(f"{named}/assign", permission(P.POLICY_READ, 303), assigned)
    unassigned = lambda w, _p: Req(  # noqa: E731
        "POST",
        f"{pol}/{w.new_policy(assigned=MIRRORED)}/unassign",
        data={"target": f"channel:{MIRRORED}"},
    )
    yield post(f"{named}/unassign", permission(P.POLICY_MANAGE, 303), unassigned)
    # the quarantine queue: security:read to look, security:manage to release or delete (an id
    # that does not exist: its holders get 404, everyone else is refused before the lookup)
    held = "/quarantine/{artifact_id}"
    gone = "/quarantine/999999999"
    yield page("/quarantine", permission(P.SECURITY_READ, 200), req("GET", "/quarantine"))
    yield page(held, permission(P.SECURITY_READ, 404), req("GET", gone))
    release = form(f"{gone}/release", note="matrix")
    yield post(f"{held}/release", permission(P.SECURITY_MANAGE, 404), release)
    delete = form(f"{gone}/delete", note="matrix", confirm="yes")
    yield post(f"{held}/delete", permission(P.SECURITY_MANAGE, 404), delete)
    # the signing page (read-only): security:read
    yield page("/admin/signing", permission(P.SECURITY_READ, 200), req("GET", "/admin/signing"))
    # the air-gap page (read-only): mirror:read
    yield page("/admin/airgap", permission(P.MIRROR_READ, 200), req("GET", "/admin/airgap"))


def _scanning_api_rules() -> Iterator[Case]:
    """The quarantine queue and scanning: security:read to look, security:manage to act. Ids and
    names that do not exist: their holders get 404, everyone else is refused before the lookup."""
    held = f"{API}/quarantine/{{artifact_id}}"
    gone = f"{API}/quarantine/999999999"
    yield Case(
        "GET",
        f"{API}/quarantine",
        permission(P.SECURITY_READ, 200),
        req("GET", f"{API}/quarantine"),
    )
    yield Case("GET", held, permission(P.SECURITY_READ, 404), req("GET", gone))
    yield Case(
        "GET", f"{held}/file", permission(P.SECURITY_MANAGE, 404), req("GET", f"{gone}/file")
    )
    release = req("POST", f"{gone}/release", json={"note": "matrix"})
    yield Case("POST", f"{held}/release", permission(P.SECURITY_MANAGE, 404), release)
    yield Case("DELETE", held, permission(P.SECURITY_MANAGE, 404), req("DELETE", gone))
    rescan = req("POST", f"{API}/scans", json={"channel": SECRET})
    yield Case("POST", f"{API}/scans", permission(P.SECURITY_MANAGE, 202), rescan)
    status = req("GET", f"{API}/scans/status")
    yield Case("GET", f"{API}/scans/status", permission(P.SECURITY_READ, 200), status)
    rules = f"{API}/scan-rules"
    yield Case("GET", rules, permission(P.SECURITY_READ, 200), req("GET", rules))
    source = (
        'rule matrix_never { meta: verdict = "suspicious" '
        'strings: $s = "matrix-never-7c1f" condition: $s }'
    )
    added = lambda w, _p: Req("POST", rules, json={"name": w.unique("r"), "source": source})  # noqa: E731
    yield Case("POST", rules, permission(P.SECURITY_MANAGE, 201), added)
    missing = req("DELETE", f"{rules}/no-such-rule-set")
    yield Case("DELETE", f"{rules}/{{name}}", permission(P.SECURITY_MANAGE, 404), missing)


def _signing_rules() -> Iterator[Case]:
    """Content trust: security:read to look, security:manage to install metadata (an empty
    upload: its holders get 422, everyone else is refused before it is read). The trust files
    are public (conda fetches them without credentials); none exist on this server."""
    yield Case(
        "GET", f"{API}/signing", permission(P.SECURITY_READ, 200), req("GET", f"{API}/signing")
    )
    empty = req("POST", f"{API}/signing/metadata", json={"roots": [], "key_mgr": None})
    yield Case("POST", f"{API}/signing/metadata", permission(P.SECURITY_MANAGE, 422), empty)
    current = req("GET", f"{API}/signing/metadata")
    yield Case("GET", f"{API}/signing/metadata", signed_in(404), current)
    trust = req("GET", "/signing/1.root.json")
    yield Case("GET", "/signing/{name}", anyone(404), trust, surface="free")


def _airgap_rules() -> Iterator[Case]:
    """Air-gap bundles: mirror:read to look (the folder, the exports made here), mirror:manage to
    export, read an export's members and place a bundle. A channel or bundle that does not exist
    (404 or 422 for its holders) and an empty bundle (422): everyone else is refused before."""
    status = f"{API}/airgap"
    yield Case("GET", status, permission(P.MIRROR_READ, 200), req("GET", status))
    exports = f"{API}/airgap/exports"
    yield Case("GET", exports, permission(P.MIRROR_READ, 200), req("GET", exports))
    nowhere = req("POST", exports, json={"channel": "matrix-no-such-channel"})
    yield Case("POST", exports, permission(P.MIRROR_MANAGE, 422), nowhere)
    gone = f"{exports}/20260101T000000Z-000000000000"
    one = f"{exports}/{{bundle_id}}"
    yield Case("GET", one, permission(P.MIRROR_MANAGE, 404), req("GET", gone))
    member = req("GET", f"{gone}/members/manifest.json")
    yield Case("GET", f"{one}/members/{{path:path}}", permission(P.MIRROR_MANAGE, 404), member)
    bundles = f"{API}/airgap/bundles"
    empty = req("POST", bundles, content=b"")
    yield Case("POST", bundles, permission(P.MIRROR_MANAGE, 422), empty)


def _channel_work_rules() -> Iterator[Case]:
    """The channel work pages (web/ui/channel_admin*.py): the services' checks, as forms."""
    channel = "/channels/{name:path}"
    read = on_channel(SECRET, READ, 200, sign_in=False)

    def redirect(expect: Expect) -> Expect:
        return lambda p: 303 if expect(p) == 200 else expect(p)

    def form_on_new(suffix: str, **data: Any) -> Build:
        return lambda w, _p: Req("POST", f"/channels/{w.new_channel()}{suffix}", data=dict(data))

    def upload_form(w: World, _p: str) -> Req:
        path = w.new_package()
        files = [("files", (path.name, path.read_bytes(), "application/octet-stream"))]
        return Req("POST", f"/channels/{SECRET}/files", data={}, files=files)

    def copy_form(op: str) -> Build:
        def build(w: World, _p: str) -> Req:
            data = {"files": f"noarch/{w.upload(SECRET)}", "target": VAULT}
            return Req("POST", f"/channels/{SECRET}/files/{op}", data=data)

        return build

    def remove_form(w: World, _p: str) -> Req:
        data = {"files": f"noarch/{w.upload(SECRET)}"}
        return Req("POST", f"/channels/{SECRET}/remove", data=data)

    def notice_remove_form(w: World, _p: str) -> Req:
        notice = w.call("POST", f"{API}/channels/{SECRET}/notices", json={"message": "to go"})
        return Req("POST", f"/channels/{SECRET}/notices/{notice['id']}/remove", data={})

    def new_channel_form(w: World, _p: str) -> Req:
        return Req("POST", "/new-channel", data={"name": w.unique("ui")})

    create = permission(P.CHANNEL_CREATE, 200)
    yield Case("GET", "/new-channel", create, req("GET", "/new-channel"), surface="page")
    yield Case(
        "POST",
        "/new-channel",
        redirect(create),
        new_channel_form,
        surface="form",
        check=forget_made_channel,
    )
    for page in ("files", "patches", "notices"):
        url = req("GET", f"/channels/{SECRET}/{page}")
        yield Case("GET", f"{channel}/{page}", read, url, surface="page")
    write, manage = on_channel(SECRET, WRITE, 303), on_channel(SECRET, MANAGE, 303)
    yield Case("POST", f"{channel}/files", write, upload_form, surface="form")
    yield Case("POST", f"{channel}/remove", write, remove_form, surface="form")
    copy = redirect(copy_expect(READ))
    yield Case("POST", f"{channel}/files/{{op}}", copy, copy_form("copy"), "copy", "form")
    move = redirect(copy_expect(WRITE))
    yield Case("POST", f"{channel}/files/{{op}}", move, copy_form("move"), "move", "form")
    for verb in ("freeze", "unfreeze"):
        yield Case("POST", f"{channel}/{verb}", manage, form_on_new(f"/{verb}"), surface="form")
    described = form_on_new("/description", description="from the matrix")
    yield Case("POST", f"{channel}/description", manage, described, surface="form")
    kept = form_on_new("/settings")  # scan settings as they are, signing off: no change
    yield Case("POST", f"{channel}/settings", manage, kept, surface="form")
    deleted = form_on_new("/delete", confirm="yes")
    yield Case("POST", f"{channel}/delete", manage, deleted, surface="form")
    patch = form_on_new("/patches", subdir="noarch", filename=KEPT, changes='{"license": "MIT"}')
    yield Case("POST", f"{channel}/patches", write, patch, surface="form")
    clear = form_on_new("/patches/clear", subdir="noarch", filename=KEPT)
    yield Case("POST", f"{channel}/patches/clear", write, clear, surface="form")
    notice = form(f"/channels/{SECRET}/notices", message="from the matrix")
    yield Case("POST", f"{channel}/notices", manage, notice, surface="form")
    removal = f"{channel}/notices/{{notice_id}}/remove"
    yield Case("POST", removal, manage, notice_remove_form, surface="form")


def _index(cases: Iterable[Case]) -> dict[tuple[str, str], list[Case]]:
    rules: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        rules.setdefault((case.method, case.path), []).append(case)
    return rules


RULES = _index(
    [
        *_api_rules(),
        *_mirror_api_rules(),
        *_cve_api_rules(),
        *_webhook_api_rules(),
        *_report_api_rules(),
        *_scanning_api_rules(),
        *_signing_rules(),
        *_airgap_rules(),
        *_conda_rules(),
        *_page_rules(),
        *_channel_work_rules(),
        *_webhook_feed_page_rules(),
    ]
)


# -- the routes of the application ---------------------------------------------------------------


def app_routes() -> list[tuple[str, str]]:
    """Every (method, path template) the application answers, from its own route table.

    ``HEAD`` of a ``GET`` route is answered as the ``GET`` is: it is checked where a rule asks for
    it (the conda downloads). A mount (``/static``) counts as ``GET`` of its path.
    """
    found: set[tuple[str, str]] = set()
    with offline_app() as app:
        for route in flat_routes(app.routes):
            if isinstance(route, Mount):
                found.add(("GET", route.path))
                continue
            methods = set(getattr(route, "methods", None) or ())
            for method in methods:
                if method == "HEAD" and "GET" in methods and ("HEAD", route.path) not in RULES:
                    continue
                found.add((method, route.path))
    return sorted(found, key=lambda mp: (mp[1], mp[0]))


@dataclass(frozen=True)
class Cell:
    method: str
    path: str
    case: Case | None  # None: the route has no rule
    principal: str

    @property
    def id(self) -> str:
        name = self.case.name if self.case else f"{self.method} {self.path}"
        return f"{name} as {self.principal}"


def cells() -> list[Cell]:
    found: list[Cell] = []
    for method, path in app_routes():
        cases = RULES.get((method, path))
        if not cases:
            found.append(Cell(method, path, None, "-"))
            continue
        found.extend(Cell(method, path, case, p) for case in cases for p in PRINCIPALS)
    return found


CELLS = cells()


# -- the test ------------------------------------------------------------------------------------


def assert_problem(response: httpx.Response, where: str) -> None:
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("application/problem+json"), f"{where}: {content_type}"
    if response.request.method == "HEAD":
        return
    problem = response.json()
    assert problem.get("status") == response.status_code, f"{where}: {problem}"
    assert isinstance(problem.get("title"), str) and problem["title"], f"{where}: {problem}"
    assert isinstance(problem.get("detail"), str) and problem["detail"], f"{where}: {problem}"


def assert_no_secret(world: World, response: httpx.Response, where: str) -> None:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for secret in world.secrets:
        assert secret not in headers, f"{where}: a secret of the fixtures is in the headers"
        assert secret not in response.text, f"{where}: a secret of the fixtures is in the body"


def assert_outcome(response: httpx.Response, expected: Outcome, where: str) -> None:
    body = TOKEN_RE.sub("stk_<secret>", response.text[:300])
    got = f"{where}: got {response.status_code} {body!r}"
    if expected == LOGIN:
        location = response.headers.get("location", "")
        assert response.status_code == 303 and location.startswith("/login"), (
            f"expected a sign-in redirect; {got}"
        )
        return
    assert response.status_code == expected, f"expected {expected}; {got}"


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_authorization(world: World, cell: Cell) -> None:
    if cell.case is None:
        pytest.fail(f"no authorization rule for {cell.method} {cell.path}: add one to RULES")
    case, principal = cell.case, cell.principal
    request = case.build(world, principal)
    response = world.send(case, principal, request)
    where = world.redact(f"{request.method} {request.url} as {principal}")
    assert_no_secret(world, response, where)
    assert_outcome(response, expected_outcome(case, principal), where)
    if case.surface in ("api", "conda") and response.status_code >= 400:
        assert_problem(response, where)
    if case.check is not None and (
        response.is_success or (case.surface == "form" and response.status_code == 303)
    ):
        case.check(world, principal, response)


def test_the_matrix_covers_every_principal_kind() -> None:
    """Each kind of principal SPEC §4 names appears, and the oracle knows all of them."""
    assert set(PRINCIPALS) == {ANON, *USER_OF}
    assert set(PERMISSIONS) | INVALID == set(PRINCIPALS)
    routes = {(c.method, c.path) for c in CELLS}
    assert len(routes) > 50, f"only {len(routes)} routes found: is the route walk broken?"
