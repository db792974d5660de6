"""Attack classes on every route that takes a URL or a secret (issue 11, items 1, 2, 3 and 6).

The route table is read (tests/support/url_routes.py): :data:`KNOWN` names every route whose body
has a URL-like or secret-like field and the driver that attacks it; a new such route fails
:func:`test_every_url_or_secret_route_is_driven` until it is added here with a driver.

The attacks: URL normalization (``FILE:``/``File:`` forms, mixed-case schemes, userinfo, IP forms
such as ``127.1``, ``0x7f.0.0.1``, ``2130706433``, ``[::1]``, ``[::ffff:127.0.0.1]``), the
outbound guard (a canary server on 127.0.0.1 must never be called; errors the same for every
refused destination and silent about why to non-admins), redaction of secrets in answers, pages
and the audit log, and credentials bound to the origin they were given for. The server here runs
with the default, strict ``[outbound]`` policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL
from tests.functional.test_ui import csrf_of, sign_in
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server
from tests.support.upstream import Upstream
from tests.support.url_routes import url_or_secret_routes

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [pytest.mark.functional, pytest.mark.one_config]
API = "/api/v1"
PASSWORD = "a-long-password-1"
SECRET = "Pr0xyPa55-do-not-show"
FAR = "https://conda.example.invalid/chan"  # never resolves: accepted, never called here
LOOPBACK_FORMS = [
    "127.0.0.1",
    "127.1",
    "0x7f.0.0.1",
    "2130706433",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "localhost",
]
INTERNAL_FORMS = [*LOOPBACK_FORMS, "169.254.169.254", "10.1.2.3", "0.0.0.0"]


@dataclass
class Ctx:
    live: LiveServer
    canary: Upstream  # on 127.0.0.1: any request it logs is a failure of the guard
    alice: str  # manages `channel`, no role
    api: httpx.Client  # alice's API client
    web: httpx.Client  # alice signed in to the web pages
    channel: str

    @property
    def port(self) -> int:
        return int(self.canary.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def ctx(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    data_dir = tmp_path_factory.mktemp(f"strict-{backend}")
    root = tmp_path_factory.mktemp("canary")
    with (
        fresh_database(backend, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url, outbound={}) as live,  # the default: strict
        Upstream(root) as canary,
    ):
        alice = f"alice-{uuid.uuid4().hex[:6]}"
        assert live.admin.post(f"{API}/users", json={"username": alice, "password": PASSWORD})
        channel = live.new_channel(prefix="sec")
        grant = {"user": alice, "level": "manage"}
        assert live.admin.put(f"{API}/channels/{channel}/members", json=grant).status_code == 200
        api = live.client(auth=(alice, PASSWORD))
        web = live.client()
        assert sign_in(web, alice, PASSWORD).status_code == 303
        yield Ctx(live, canary, alice, api, web, channel)
        assert canary.requests == [], "the outbound guard let a request through"


def new_name(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def audit_text(live: LiveServer) -> str:
    return live.admin.get(f"{API}/audit", params={"limit": 500}).text


def shown_nowhere(live: LiveServer, secret: str, *responses: httpx.Response) -> None:
    for response in responses:
        assert secret not in response.text, response.request.url
    assert secret not in audit_text(live)


# ------------------------------------------------------------------------------ mirrors (API)


def _mirror_body(source: str, **fields: Any) -> dict[str, Any]:
    # made-up sources: not checked (the check connects only once every rule below passed)
    body = {"name": new_name(), "source": source, "subdirs": ["noarch"], "schedule": ""}
    return {**body, "check": False, **fields}


def _send_mirror(c: Ctx, method: str, **fields: Any) -> httpx.Response:
    if method == "POST":
        body = _mirror_body(fields.pop("source", FAR), channel=c.channel, **fields)
        return c.api.post(f"{API}/mirrors", json=body)
    name = new_name()
    body = _mirror_body(FAR, name=name, channel=c.channel)
    assert c.api.post(f"{API}/mirrors", json=body).status_code == 201
    return c.api.patch(f"{API}/mirrors/{name}", json=fields)


def drive_mirror_api(c: Ctx, method: str) -> None:
    # 1. file:// in any spelling needs an admin, and says nothing about the path
    answers = set()
    for source in ("FILE:///etc", "File:///no/such/dir", "file:///etc", "fIlE://localhost/tmp"):
        body = problem(_send_mirror(c, method, source=source), 403, "mirror:admin-only")
        answers.add((body["status"], body["code"], body["detail"]))
    assert len(answers) == 1, answers
    # 2. the outbound guard, every spelling of an internal address, source and proxy alike
    for host in INTERNAL_FORMS:
        for fields in (
            {"source": f"HtTp://{host}:{c.port}/chan"},
            {"proxy": f"HTTP://{host}:{c.port}"},
        ):
            body = problem(_send_mirror(c, method, **fields), 422, "mirror:refused-destination")
            assert not any(w in body["detail"] for w in ("loopback", "private", "link-local"))
    # 3. credentials never in the source URL
    for source in ("HTTPS://user:pw@conda.example.invalid/c", "https://tok@conda.example.invalid/"):
        problem(_send_mirror(c, method, source=source), 422, "mirror:credentials-in-url")
    # 3b. the upstream's signing metadata URL follows the source's rules (issue 14)
    for url in ("FILE:///etc", "file:///etc"):
        problem(_send_mirror(c, method, signing_metadata_url=url), 403, "mirror:admin-only")
    for host in INTERNAL_FORMS:
        url = f"HtTp://{host}:{c.port}/chan"
        body = problem(
            _send_mirror(c, method, signing_metadata_url=url), 422, "mirror:refused-destination"
        )
        assert body["field"] == "signing_metadata_url", body
    url = "HTTPS://user:pw@conda.example.invalid/c"
    problem(_send_mirror(c, method, signing_metadata_url=url), 422, "mirror:credentials-in-url")
    # 4. a CA bundle path: refused before it is looked at (no probing of server files)
    first = problem(_send_mirror(c, method, ca_bundle="/etc/passwd"), 403, "mirror:admin-only")
    second = problem(_send_mirror(c, method, ca_bundle="/no/such.pem"), 403, "mirror:admin-only")
    assert first["detail"] == second["detail"]
    # 5. proxy passwords are stored apart and shown to no one
    proxy = f"http://bob:{SECRET}@proxy.example.invalid:3128"
    made = _send_mirror(c, method, proxy=proxy)
    assert made.status_code in (200, 201), made.text
    assert made.json()["proxy"] == "http://proxy.example.invalid:3128"
    assert made.json()["has_proxy_credentials"] is True
    name = made.json()["name"]
    anonymous = c.live.client()
    shown_nowhere(
        c.live,
        SECRET,
        made,
        anonymous.get(f"{API}/mirrors"),
        anonymous.get(f"{API}/mirrors/{name}"),
        anonymous.get(f"/mirrors/{name}"),
        anonymous.get("/mirrors"),
        c.live.admin.get(f"{API}/mirrors/{name}"),
    )
    if method == "PATCH":
        _drive_origin_binding(c)


def _drive_origin_binding(c: Ctx) -> None:
    """An admin's token stays with the origin it was given for (item 2)."""
    name = new_name()
    body = _mirror_body(FAR, name=name, channel=c.channel, token="stk-admin-upstream-token")
    assert c.live.admin.post(f"{API}/mirrors", json=body).json()["has_token"] is True
    # same origin, other path or spelling: kept
    moved = c.api.patch(f"{API}/mirrors/{name}", json={"source": "HTTPS://Conda.Example.Invalid/x"})
    assert moved.status_code == 200 and moved.json()["has_token"] is True, moved.text
    # another origin: dropped, and the audit event says so
    moved = c.api.patch(f"{API}/mirrors/{name}", json={"source": "https://evil.example.invalid/c"})
    assert moved.status_code == 200 and moved.json()["has_token"] is False, moved.text
    assert "token_dropped" in audit_text(c.live)
    # given again with the move (an admin): kept; then a new proxy drops it
    again = {"source": FAR, "token": "stk-admin-upstream-token"}
    assert c.live.admin.patch(f"{API}/mirrors/{name}", json=again).json()["has_token"] is True
    proxied = c.api.patch(f"{API}/mirrors/{name}", json={"proxy": "http://proxy.example.invalid:8"})
    assert proxied.status_code == 200 and proxied.json()["has_token"] is False, proxied.text


# ------------------------------------------------------------------------------ mirrors (forms)


def _form(c: Ctx, path: str, **fields: str) -> httpx.Response:
    data = {"mode": "passive", "subdirs": "noarch", "schedule": "", "concurrency": "4", **fields}
    data["no_check"] = "1"  # made-up sources (the check connects only once every rule passed)
    data["csrf_token"] = csrf_of(c.web.get("/mirrors").text)
    return c.web.post(path, data=data)


def _exists(c: Ctx, name: str) -> bool:
    return c.live.admin.get(f"{API}/mirrors/{name}").status_code == 200


def drive_mirror_form(c: Ctx, method: str, path: str) -> None:
    assert method == "POST"
    editing = path != "/mirrors"
    target = new_name()
    if editing:
        body = _mirror_body(FAR, name=target, channel=c.channel)
        assert c.api.post(f"{API}/mirrors", json=body).status_code == 201
    sources = ["FILE:///etc", "File:///no/such/dir"] + [
        f"HTTP://{h}:{c.port}/c" for h in INTERNAL_FORMS
    ]
    for source in sources:
        if editing:
            _form(c, f"/mirrors/{target}", source=source, channel=c.channel)
            assert c.live.admin.get(f"{API}/mirrors/{target}").json()["source"] == FAR
        else:
            name = new_name()
            answer = _form(c, "/mirrors", name=name, source=source, channel=c.channel)
            assert 400 <= answer.status_code < 500, answer.status_code
            assert not _exists(c, name), source
    proxy = f"http://bob:{SECRET}@proxy.example.invalid:3128"
    if editing:
        answer = _form(c, f"/mirrors/{target}", source=FAR, proxy=proxy, channel=c.channel)
    else:
        target = new_name()
        answer = _form(c, "/mirrors", name=target, source=FAR, proxy=proxy, channel=c.channel)
    assert _exists(c, target), answer.text
    page = c.live.client().get(f"/mirrors/{target}")
    shown_nowhere(c.live, SECRET, page, c.web.get(f"/mirrors/{target}"), c.web.get("/mirrors"))


# ------------------------------------------------------------------------------ feeds, webhooks


def drive_feed(c: Ctx, method: str) -> None:
    admin = c.live.admin
    name = new_name("feed")
    keyed = f"https://nvd.example.invalid/feed.json?apiKey={SECRET}"
    body = {"name": name, "url": keyed, "format": "nvd", "check": False}  # no such host
    made = admin.post(f"{API}/cve/feeds", json=body)
    assert made.status_code == 201, made.text
    checked = admin.post(f"{API}/cve/feeds", json={**body, "name": new_name("feed"), "check": True})
    assert checked.status_code == 422, checked.text  # the source check names the URL redacted
    if method == "PATCH":
        made = admin.patch(f"{API}/cve/feeds/{name}", json={"url": keyed + "&x=1", "check": False})
        assert made.status_code == 200, made.text
    shown_nowhere(c.live, SECRET, made, checked, admin.get(f"{API}/cve/feeds"))

    # a plain user cannot name a server file in any spelling; nobody names another scheme
    def send(client: httpx.Client, url: str) -> httpx.Response:
        if method == "POST":
            body = {"name": new_name("feed"), "url": url, "format": "osv"}
            return client.post(f"{API}/cve/feeds", json=body)
        return client.patch(f"{API}/cve/feeds/{name}", json={"url": url})

    for url in ("FILE:///etc/passwd", "file:///etc/passwd"):
        assert send(c.api, url).status_code in (403, 404)
    for url in ("ftp://feeds.example.invalid/x.json", "HTTPS://u:p@[::1/x", "gopher://x"):
        answer = send(admin, url)
        assert answer.status_code == 422, answer.text


def _hooks(c: Ctx) -> str:
    return f"{API}/channels/{c.channel}/webhooks"


def drive_webhook(c: Ctx, method: str) -> None:
    hook_id = None
    if method == "PATCH":
        made = c.api.post(_hooks(c), json={"url": "https://hooks.example.invalid/h"})
        assert made.status_code == 201, made.text
        hook_id = made.json()["id"]

    def send(**body: Any) -> httpx.Response:
        if hook_id is None:
            return c.api.post(_hooks(c), json=body)
        return c.api.patch(f"{_hooks(c)}/{hook_id}", json=body)

    for host in INTERNAL_FORMS:
        problem(send(url=f"HtTp://{host}:{c.port}/h"), 422, "webhook:refused-destination")
    for url in (
        "FILE:///etc/passwd",
        "gopher://x.example.invalid/",
        "http://u:p@h.example.invalid/",
    ):
        problem(send(url=url), 422, "webhook:bad-url")
    secret = "whsec-" + SECRET
    made = send(url="https://hooks.example.invalid/ok", secret=secret)
    assert made.status_code in (200, 201), made.text
    assert made.json().get("secret") == secret  # shown once, to whoever set it
    shown_nowhere(c.live, secret, c.api.get(_hooks(c)), c.live.admin.get(_hooks(c)))


# ------------------------------------------------------------------------------ feeds, webhooks (forms)


def _admin_web(c: Ctx) -> httpx.Client:
    web = c.live.client()
    assert sign_in(web, "admin", ADMIN_PASSWORD).status_code == 303
    return web


def _page_form(web: httpx.Client, page: str, path: str, **fields: Any) -> httpx.Response:
    return web.post(path, data={**fields, "csrf_token": csrf_of(web.get(page).text)})


def drive_webhook_form(c: Ctx, method: str, path: str) -> None:
    """The webhook pages: the same destination rules as the API, the secret shown once."""
    assert method == "POST"
    hook_id = None
    if path != "/admin/webhooks":
        made = c.api.post(_hooks(c), json={"url": "https://hooks.example.invalid/h"})
        assert made.status_code == 201, made.text
        hook_id = made.json()["id"]

    def send(url: str, **more: str) -> httpx.Response:
        fields = {"url": url, "events": "vulnerability.matched", "enabled": "yes", **more}
        if hook_id is None:
            return _page_form(c.web, "/admin/webhooks", path, channel=c.channel, **fields)
        page = f"/admin/webhooks/{hook_id}"
        return _page_form(c.web, page, page, **fields)

    before = len(c.api.get(_hooks(c)).json())
    bad = [f"HtTp://{h}:{c.port}/h" for h in INTERNAL_FORMS]
    for url in [*bad, "FILE:///etc/passwd", "gopher://x.example.invalid/", "http://u:p@h.invalid/"]:
        answer = send(url)
        assert 400 <= answer.status_code < 500, (url, answer.status_code)
        assert "u:p@" not in answer.text
    hooks = c.api.get(_hooks(c)).json()
    assert len(hooks) == before, hooks
    if hook_id is not None:
        assert [h["url"] for h in hooks if h["id"] == hook_id] == [
            "https://hooks.example.invalid/h"
        ]
    secret = "whsec-" + SECRET
    made = send("https://hooks.example.invalid/ok", secret=secret)
    assert made.status_code in (200, 201), made.text
    pages = [c.web.get("/admin/webhooks"), c.api.get(_hooks(c))]
    pages += [c.web.get(f"/admin/webhooks/{h['id']}") for h in c.api.get(_hooks(c)).json()]
    shown_nowhere(c.live, secret, *pages)


def drive_feed_form(c: Ctx, method: str, path: str) -> None:
    """The CVE feed pages: a key in the URL never shown back; no scheme but the feed ones."""
    assert method == "POST"
    web = _admin_web(c)
    name = new_name("feed")
    keyed = f"https://nvd.example.invalid/feed.json?apiKey={SECRET}"
    if path == "/admin/cve-feeds":
        made = _page_form(
            web, "/admin/cve-feeds", path, name=name, url=keyed, format="nvd", no_check="yes"
        )
    else:
        body = {"name": name, "url": "https://nvd.example.invalid/f.json", "format": "nvd"}
        assert c.live.admin.post(f"{API}/cve/feeds", json={**body, "check": False}).is_success
        page = f"/admin/cve-feeds/{name}"
        made = _page_form(web, page, page, url=keyed, format="nvd", no_check="yes")
    assert made.status_code in (200, 303), made.text
    assert c.live.admin.get(f"{API}/cve/feeds/{name}").status_code == 200
    checked = _page_form(  # the source check fails and says so, the key redacted
        web, "/admin/cve-feeds", "/admin/cve-feeds", name=new_name("feed"), url=keyed, format="nvd"
    )
    assert 400 <= checked.status_code < 500, checked.status_code
    shown = [made, checked, web.get("/admin/cve-feeds"), web.get(f"/admin/cve-feeds/{name}")]
    shown_nowhere(c.live, SECRET, *shown)
    for url in ("ftp://feeds.example.invalid/x.json", "gopher://x", "HTTPS://u:p@[::1/x"):
        fields = {"url": url, "format": "osv", "no_check": "yes"}
        if path == "/admin/cve-feeds":
            answer = _page_form(web, path, path, name=new_name("feed"), **fields)
        else:
            answer = _page_form(
                web, f"/admin/cve-feeds/{name}", f"/admin/cve-feeds/{name}", **fields
            )
        assert 400 <= answer.status_code < 500, (url, answer.status_code)
    assert c.live.admin.get(f"{API}/cve/feeds/{name}").json()["url"] != "gopher://x"
    # a plain user (channel manager, no cve:manage) cannot add or change a feed at all
    refused = _page_form(
        c.web, "/admin/webhooks", path, name=new_name("feed"), url="file:///etc", format="osv"
    )
    assert refused.status_code in (403, 404), refused.status_code


# ------------------------------------------------------------------------------ names, passwords


def drive_copy(c: Ctx, method: str) -> None:
    for source in ("FILE:///etc", f"http://127.0.0.1:{c.port}/x"):
        body = {"source": source, "target": c.channel, "files": ["noarch/x-1-0.conda"]}
        answer = c.api.post(f"{API}/copy", json=body)
        assert 400 <= answer.status_code < 500, answer.text


def drive_scan_rules(c: Ctx, method: str) -> None:
    """``source`` is YARA rule text, never fetched: a URL there is text that does not compile
    (and a user without security:manage is refused before it is read)."""
    for source in ("FILE:///etc/passwd", f"http://127.0.0.1:{c.port}/rules.yar"):
        body = {"name": new_name("r"), "source": source}
        refused = c.api.post(f"{API}/scan-rules", json=body)
        assert refused.status_code == 403, refused.text
        answer = c.live.admin.post(f"{API}/scan-rules", json=body)
        assert answer.status_code == 422 and answer.json()["code"] == "scan-rule:invalid"


def drive_password(c: Ctx, method: str, path: str) -> None:
    """A secret that is never sent anywhere: it must not come back nor reach the audit log."""
    user, secret = new_name("u"), "pw-" + SECRET
    admin_web = c.live.client()
    assert sign_in(admin_web, "admin", ADMIN_PASSWORD).status_code == 303
    token = csrf_of(admin_web.get("/admin/users").text)
    answers: list[httpx.Response] = []
    if path == f"{API}/users":
        answers.append(c.live.admin.post(path, json={"username": user, "password": secret}))
    elif path == f"{API}/users/{{username}}":
        c.live.admin.post(f"{API}/users", json={"username": user, "password": PASSWORD})
        answers.append(c.live.admin.patch(f"{API}/users/{user}", json={"password": secret}))
    elif path == "/admin/users":
        data = {"username": user, "password": secret, "csrf_token": token}
        answers.append(admin_web.post(path, data=data))
    elif path == "/admin/users/{name}/password":
        c.live.admin.post(f"{API}/users", json={"username": user, "password": PASSWORD})
        data = {"password": secret, "csrf_token": token}
        answers.append(admin_web.post(f"/admin/users/{user}/password", data=data))
    elif path == "/account/password":
        c.live.admin.post(f"{API}/users", json={"username": user, "password": PASSWORD})
        web = c.live.client()
        assert sign_in(web, user, PASSWORD).status_code == 303
        data = {
            "current_password": PASSWORD,
            "new_password": secret,
            "confirm_password": secret,
            "csrf_token": csrf_of(web.get("/account").text),
        }
        answers.append(web.post(path, data=data))
    else:  # /login: a wrong password, and where it sends you afterwards
        web = c.live.client()
        token = csrf_of(web.get("/login").text)
        answers.append(
            web.post(path, data={"username": user, "password": secret, "csrf_token": token})
        )
        for target in (
            "HTTPS://evil.example",
            "//evil.example",
            "/\\evil.example",
            "http:evil.example",
        ):
            web = c.live.client()
            assert sign_in_to(web, c.alice, target).headers["location"].startswith("/")
    shown_nowhere(c.live, secret, *answers)


def sign_in_to(client: httpx.Client, username: str, target: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    data = {"username": username, "password": PASSWORD, "csrf_token": token, "next": target}
    return client.post("/login", data=data)


# ------------------------------------------------------------------------------ the table

Driver = Callable[[Ctx, str, str], None]
KNOWN: dict[str, Driver] = {
    "POST /api/v1/mirrors": lambda c, m, p: drive_mirror_api(c, m),
    "PATCH /api/v1/mirrors/{name}": lambda c, m, p: drive_mirror_api(c, m),
    "POST /mirrors": drive_mirror_form,
    "POST /mirrors/{name}": drive_mirror_form,
    "POST /api/v1/cve/feeds": lambda c, m, p: drive_feed(c, m),
    "PATCH /api/v1/cve/feeds/{name}": lambda c, m, p: drive_feed(c, m),
    "POST /api/v1/channels/{channel:path}/webhooks": lambda c, m, p: drive_webhook(c, m),
    "PATCH /api/v1/channels/{channel:path}/webhooks/{webhook_id}": lambda c, m, p: drive_webhook(
        c, m
    ),
    "POST /admin/webhooks": drive_webhook_form,
    "POST /admin/webhooks/{webhook_id}": drive_webhook_form,
    "POST /admin/cve-feeds": drive_feed_form,
    "POST /admin/cve-feeds/{name}": drive_feed_form,
    "POST /api/v1/copy": lambda c, m, p: drive_copy(c, m),
    "POST /api/v1/scan-rules": lambda c, m, p: drive_scan_rules(c, m),
    "POST /api/v1/users": drive_password,
    "PATCH /api/v1/users/{username}": drive_password,
    "POST /admin/users": drive_password,
    "POST /admin/users/{name}/password": drive_password,
    "POST /account/password": drive_password,
    "POST /login": drive_password,
}


def test_every_url_or_secret_route_is_driven() -> None:
    """A new route taking a URL or a secret fails here until it has a driver in KNOWN."""
    assert set(url_or_secret_routes()) == set(KNOWN)


@pytest.mark.parametrize("route", sorted(KNOWN))
def test_attack_classes_on(route: str, ctx: Ctx) -> None:
    method, path = route.split(" ", 1)
    KNOWN[route](ctx, method, path)


def test_stolen_token_is_not_sent_to_the_new_origin(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Item 2, end to end: a channel manager moves an admin's mirror to her own server and runs
    it; her server never sees the admin's token. (This server allows loopback: both upstreams
    are local.)"""
    from tests.support.mirror_api import start_run, wait_run
    from tests.support.mirror_data import R_LINUX_64, build_channel

    channel = build_channel(R_LINUX_64, tmp_path / "up", limit=5)
    token = "stk-admin-upstream-0123456789"
    alice = new_name("alice")
    live_server.admin.post(f"{API}/users", json={"username": alice, "password": PASSWORD})
    target = live_server.new_channel(prefix="stolen")
    grant = {"user": alice, "level": "manage"}
    live_server.admin.put(f"{API}/channels/{target}/members", json=grant)
    with Upstream(channel.root, require_token=token) as real, Upstream(channel.root) as hers:
        name = new_name()
        body = _mirror_body(real.url, name=name, channel=target, token=token)
        body["subdirs"] = ["linux-64"]
        assert live_server.admin.post(f"{API}/mirrors", json=body).status_code == 201
        moved = live_server.client(auth=(alice, PASSWORD)).patch(
            f"{API}/mirrors/{name}", json={"source": hers.url}
        )
        assert moved.status_code == 200 and moved.json()["has_token"] is False, moved.text
        wait_run(live_server, start_run(live_server, name)["id"])
        assert hers.requests, "the run did not reach the new source"
        for request in hers.requests:
            assert "authorization" not in {k.lower() for k in request.headers}
            assert token not in str(request.headers)
