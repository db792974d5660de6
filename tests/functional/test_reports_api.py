"""Vulnerability reports over HTTP and the CLI: environments, package trees, channels, SBOMs.

Packages are built in the test: ``app`` depends on ``mid``, ``mid`` on ``aiohttp 3.7.3``, which the
real OSV PyPI advisory ``PYSEC-2021-76`` of ``tests/data/vulns/osv-pypi`` affects (introduced
0, fixed 3.7.4). The OSV folder is synced as a feed, so the match is the product's own. Each input
kind (specs, ``environment.yml``, an explicit URL list, a conda-lock v1 file, a pixi.lock v6) is
reported through the API and through the CLI; the finding's path must be ``app -> mid -> aiohttp``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cyclonedx
import httpx
import jsonschema_rs
import pytest
import yaml
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
from typer.testing import CliRunner

from tests.conftest import PG_URL, backends
from tests.factories.packages import PackageSpec
from tests.functional.test_identity_api import is_problem, make_user, token_for
from tests.support.cves import cli_for, osv_folder, sync_osv_folder, unique, upload_package
from tests.support.cves import run_cli as run
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("reports-api")]

ADVISORY = "PYSEC-2021-76"  # aiohttp: introduced 0, fixed 3.7.4
PATH = ["app", "mid", "aiohttp"]
PACKAGES = (
    PackageSpec(name="app", version="1.0", build="0", depends=("mid",)),
    PackageSpec(name="mid", version="1.0", build="0", depends=("aiohttp 3.7.3",)),
    PackageSpec(name="aiohttp", version="3.7.3", build="0"),
    PackageSpec(name="aiohttp", version="3.7.4", build="0"),
    PackageSpec(name="lonely", version="1.0", build="0", depends=("missing-dep",)),
)


CYCLONEDX_SCHEMAS = Path(cyclonedx.__file__).parent / "schema" / "_res"


def cyclonedx_errors(text: str) -> list[str]:
    """Errors of a CycloneDX 1.6 JSON document against the schema cyclonedx-python-lib ships.

    (Its own ``JsonStrictValidator`` needs the ``json-validation`` extra, i.e. ``jsonschema``,
    which is not installed; ``jsonschema_rs`` is, through schemathesis.)
    """

    def retrieve(uri: str) -> Any:
        return json.loads((CYCLONEDX_SCHEMAS / uri.rsplit("/", 1)[-1]).read_text())

    schema = json.loads((CYCLONEDX_SCHEMAS / "bom-1.6.SNAPSHOT.schema.json").read_text())
    validator = jsonschema_rs.validator_for(schema, retriever=retrieve)
    return [e.message for e in validator.iter_errors(json.loads(text))]


@dataclass
class Built:
    filename: str
    sha256: str
    md5: str


@dataclass
class World:
    live: LiveServer
    open: str
    secret: str
    built: dict[str, Built]  # name-version -> file
    stranger: str  # signed in, no grant on the private channel
    tmp: Path

    def url(self, key: str, channel: str | None = None) -> str:
        return f"{self.live.url}/conda/{channel or self.open}/noarch/{self.built[key].filename}"


@pytest.fixture(scope="module", params=backends())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp(f"reports-{request.param}")
    tmp = tmp_path_factory.mktemp("reports-work")
    folder = osv_folder(tmp, "aiohttp")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url) as live,
    ):
        open_, secret = live.new_channel("public", "rep-open"), live.new_channel("private", "rep-x")
        built: dict[str, Built] = {}
        for spec in PACKAGES:
            path = upload_package(live, open_, tmp, spec)
            data = path.read_bytes()
            built[f"{spec.name}-{spec.version}"] = Built(
                path.name, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()
            )
        upload_package(live, secret, tmp, PackageSpec(name="hidden", version="1.0", build="0"))
        sync_osv_folder(live, folder)
        stranger = token_for(live, make_user(live))
        yield World(live, open_, secret, built, stranger, tmp)


# --------------------------------------------------------------------------- input files


def environment_yml(w: World) -> bytes:
    doc = {
        "name": "demo",
        "channels": [f"{w.live.url}/conda/{w.open}", "conda-forge"],
        "dependencies": ["app", {"pip": ["requests"]}],
    }
    return yaml.safe_dump(doc).encode()


def explicit(w: World) -> bytes:
    lines = ["# platform: linux-64", "@EXPLICIT"]
    for key in ("app-1.0", "mid-1.0", "aiohttp-3.7.3"):
        lines.append(f"{w.url(key)}#{w.built[key].md5}")
    return ("\n".join(lines) + "\n").encode()


def conda_lock(w: World) -> bytes:
    deps = {"app-1.0": {"mid": ""}, "mid-1.0": {"aiohttp": "3.7.3"}, "aiohttp-3.7.3": {}}
    packages = [
        {
            "name": key.rsplit("-", 1)[0],
            "version": key.rsplit("-", 1)[1],
            "manager": "conda",
            "platform": "linux-64",
            "dependencies": dep,
            "url": w.url(key),
            "hash": {"md5": w.built[key].md5, "sha256": w.built[key].sha256},
            "category": "main",
            "optional": False,
        }
        for key, dep in deps.items()
    ]
    packages.append(
        {
            "name": "elsewhere",
            "version": "2.0",
            "manager": "conda",
            "platform": "linux-64",
            "dependencies": {},
            "url": "https://conda.anaconda.org/conda-forge/linux-64/elsewhere-2.0-h0_0.conda",
            "hash": {"md5": "0" * 32, "sha256": "1" * 64},
            "category": "main",
            "optional": False,
        }
    )
    doc = {
        "version": 1,
        "metadata": {
            "content_hash": {"linux-64": "0" * 64},
            "channels": [{"url": f"{w.live.url}/conda/{w.open}", "used_env_vars": []}],
            "platforms": ["linux-64"],
            "sources": ["environment.yml"],
        },
        "package": packages,
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def pixi_lock(w: World) -> bytes:
    keys = ("app-1.0", "mid-1.0", "aiohttp-3.7.3")
    depends = {"app-1.0": ["mid"], "mid-1.0": ["aiohttp 3.7.3"], "aiohttp-3.7.3": []}
    doc = {
        "version": 6,
        "environments": {
            "default": {
                "channels": [{"url": f"{w.live.url}/conda/{w.open}/"}],
                "packages": {
                    "linux-64": [{"conda": w.url(k)} for k in keys]
                    + [{"pypi": "https://files.pythonhosted.org/packages/x/click-8.1.7.whl"}]
                },
            }
        },
        "packages": [
            {
                "pypi": "https://files.pythonhosted.org/packages/x/click-8.1.7.whl",
                "name": "click",
                "version": "8.1.7",
                "sha256": "2" * 64,
            },
        ]
        + [
            {
                "conda": w.url(k),
                "sha256": w.built[k].sha256,
                "md5": w.built[k].md5,
                "depends": depends[k],
                "license": "MIT",
                "size": 1000,
                "timestamp": 1700000000000,
            }
            for k in keys
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


FILES = {
    "environment": ("environment.yml", environment_yml),
    "explicit": ("explicit.txt", explicit),
    "conda-lock": ("conda-lock.yml", conda_lock),
    "pixi": ("pixi.lock", pixi_lock),
}


def post_file(client: httpx.Client, name: str, data: bytes, **params: Any) -> httpx.Response:
    files = {"file": (name, data, "application/octet-stream")}
    return client.post("/api/v1/reports/env", params=params, files=files)


def finding(report: dict[str, Any], vuln: str = ADVISORY) -> dict[str, Any]:
    found = [f for f in report["findings"] if f["vuln_id"] == vuln]
    assert found, report["findings"]
    return found[0]


# ---------------------------------------------------------------------------------- API


def test_specs_report_names_the_path(world: World) -> None:
    body = {"specs": ["app"], "channels": [world.open], "platform": "linux-64"}
    r = world.live.client().post("/api/v1/reports/env", json=body)  # anonymous: public channel
    assert r.status_code == 200, r.text
    report = r.json()
    hit = finding(report)
    assert hit["path"] == PATH
    assert (hit["package"], hit["version"], hit["channel"]) == ("aiohttp", "3.7.3", world.open)
    assert hit["status"] == "reported" and hit["counts"] is True
    assert isinstance(hit["aliases"], list) and hit["aliases"] and "kev" in hit
    scored = [f for f in report["findings"] if f["score"] is not None]
    assert scored and all(f["severity"] and f["cvss_version"] for f in scored)
    assert all(f["path"] == PATH for f in report["findings"])
    assert report["roots"] == ["app"]
    assert {p["name"] for p in report["packages"]} == set(PATH)
    app_entry = next(p for p in report["packages"] if p["name"] == "app")
    assert app_entry["score"] is None
    assert app_entry["reachable"]["path"] == PATH
    assert app_entry["reachable"]["vuln_id"] in {f["vuln_id"] for f in report["findings"]}
    assert report["summary"]["highest"]["path"] == PATH
    assert report["summary"]["by_status"]["reported"] >= 1


def test_specs_are_read_as_conda_reads_them(world: World) -> None:
    """``name version`` (a space, no operator) and ``name=version`` are what people type."""
    for spec in ("app 1.0", "app=1.0", "app ==1.0 0"):
        body = {"specs": [spec], "channels": [world.open]}
        r = world.live.client().post("/api/v1/reports/env", json=body)
        assert r.status_code == 200, (spec, r.text)
        assert finding(r.json())["path"] == PATH


@pytest.mark.parametrize("kind", sorted(FILES))
def test_file_reports_name_the_path(world: World, kind: str) -> None:
    name, make = FILES[kind]
    r = post_file(world.live.client(), name, make(world))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["kind"] == kind
    assert finding(report)["path"] == PATH
    if kind == "environment":
        assert report["ignored_channels"] == ["conda-forge"]
        assert report["name"] == "demo" and any("pip" in n for n in report["notes"])
    if kind == "conda-lock":
        unknown = next(p for p in report["packages"] if p["name"] == "elsewhere")
        assert unknown["known"] is False and unknown["channel"] is None
        assert report["summary"]["unknown"] == 1


def test_csv_and_sboms(world: World) -> None:
    client = world.live.client()
    name, make = FILES["conda-lock"]
    r = post_file(client, name, make(world), format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    lines = r.text.splitlines()
    assert lines[0].startswith("vuln_id,")
    assert any(ADVISORY in ln and "app -> mid -> aiohttp" in ln for ln in lines)
    assert any(",unknown," in ln and "elsewhere" in ln for ln in lines)
    r = post_file(client, name, make(world), format="cyclonedx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    assert cyclonedx_errors(r.text) == []
    bom = r.json()
    purls = {c["purl"] for c in bom["components"]}
    assert any(p.startswith("pkg:conda/aiohttp@3.7.3?") and "channel=" in p for p in purls)
    assert ADVISORY in {v["id"] for v in bom["vulnerabilities"]}
    depends = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    app_ref = next(c["bom-ref"] for c in bom["components"] if c["name"] == "app")
    assert [r.split("@")[0] for r in depends[app_ref]] == ["pkg:conda/mid"]
    r = post_file(client, name, make(world), format="spdx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/spdx+json")
    path = world.tmp / f"{unique('sbom')}.spdx.json"
    path.write_bytes(r.content)
    document = parse_file(str(path))
    assert validate_full_spdx_document(document) == []
    assert {p.name for p in document.packages} >= {"app", "mid", "aiohttp", "elsewhere"}


def test_package_tree_and_sbom(world: World) -> None:
    client = world.live.client()
    params = {"version": "1.0", "build": "0", "subdir": "noarch"}
    r = client.get(f"/api/v1/channels/{world.open}/packages/app/tree", params=params)
    assert r.status_code == 200, r.text
    tree = r.json()
    assert tree["score"] is None and tree["solve_error"] is None
    assert tree["reachable"]["path"] == PATH and tree["reachable"]["score"] is not None
    r = client.get(
        f"/api/v1/channels/{world.open}/packages/aiohttp/tree",
        params={**params, "version": "3.7.3"},
    )
    own = r.json()
    assert own["score"] is not None and own["reachable"]["path"] == ["aiohttp"]
    r = client.get(
        f"/api/v1/channels/{world.open}/packages/lonely/tree", params=params
    )  # its dependency is nowhere: the tree is the package alone, and says why
    assert r.status_code == 200 and "missing-dep" in r.json()["solve_error"]
    r = client.get(
        f"/api/v1/channels/{world.open}/packages/app/sbom", params={**params, "format": "spdx"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/spdx+json")
    r = client.get(f"/api/v1/channels/{world.open}/packages/app/sbom", params=params)
    assert cyclonedx_errors(r.text) == []


def test_channel_report(world: World) -> None:
    client = world.live.client()
    r = client.get(f"/api/v1/channels/{world.open}/vulnerabilities")
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert {(x["package"], x["version"]) for x in rows} == {("aiohttp", "3.7.3")} | {
        ("aiohttp", "3.7.4") for x in rows if x["version"] == "3.7.4"
    }
    assert ADVISORY in {x["vuln_id"] for x in rows if x["version"] == "3.7.3"}
    assert ADVISORY not in {x["vuln_id"] for x in rows if x["version"] == "3.7.4"}
    r = client.get(f"/api/v1/channels/{world.open}/vulnerabilities", params={"format": "csv"})
    assert r.status_code == 200 and r.text.startswith("channel,subdir,filename")
    assert "status" in r.text.splitlines()[0]
    # the route is ours, not the channel catch-all
    assert "rows" not in client.get(f"/api/v1/channels/{world.open}").text


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_are_problems(world: World) -> None:
    client = world.live.client()
    admin = world.live.admin
    before = admin.get(f"/api/v1/channels/{world.open}/vulnerabilities").json()["rows"]
    is_problem(post_file(client, "environment.yml", b"\x00\x01garbage"), 422, "report:bad-file")
    is_problem(post_file(client, "environment.yml", b"name: x\n: [\n"), 422, "report:bad-file")
    is_problem(post_file(client, "stuff.bin", b"what is this?!\n{{"), 422, "report:bad-file")
    is_problem(post_file(client, "pixi.lock", b"version: 99\n"), 422, "report:bad-file")
    is_problem(
        post_file(client, "conda-lock.yml", b"version: 1\npackage: [{name: x}]\n"),
        422,
        "report:bad-file",
    )
    bad_kind = client.post(
        "/api/v1/reports/env",
        files={"file": ("e.yml", environment_yml(world), "text/plain")},
        data={"kind": "rpm"},
    )
    is_problem(bad_kind, 422, "report:bad-file")
    body = {"specs": ["app >=9"], "channels": [world.open]}
    r = client.post("/api/v1/reports/env", json=body)
    is_problem(r, 422, "report:unsatisfiable")
    assert "app" in r.json()["detail"]
    is_problem(client.post("/api/v1/reports/env", json={"specs": ["app"]}), 422)
    is_problem(client.post("/api/v1/reports/env", json={"specs": ["a b c >>= 1"]}), 422)
    is_problem(
        client.post("/api/v1/reports/env", content=b"x", headers={"content-type": "x/y"}), 415
    )
    is_problem(client.post("/api/v1/reports/env", json={"specs": []}), 422)
    hidden = {"specs": ["hidden"], "channels": [world.secret]}
    is_problem(client.post("/api/v1/reports/env", json=hidden), 401)
    stranger = world.live.client(world.stranger)
    r = stranger.post("/api/v1/reports/env", json=hidden)
    is_problem(r, 404)
    assert "hidden" not in r.text
    is_problem(stranger.get(f"/api/v1/channels/{world.secret}/vulnerabilities"), 404)
    is_problem(
        stranger.get(
            f"/api/v1/channels/{world.secret}/packages/hidden/tree",
            params={"version": "1.0", "build": "0"},
        ),
        404,
    )
    is_problem(
        client.get(
            f"/api/v1/channels/{world.open}/packages/nope/tree",
            params={"version": "1.0", "build": "0"},
        ),
        404,
    )
    too_big = b"# " + b"x" * (5 * 1024 * 1024 + 10)
    is_problem(post_file(client, "explicit.txt", too_big), 413)
    assert admin.get(f"/api/v1/channels/{world.open}/vulnerabilities").json()["rows"] == before
    assert admin.get(f"/api/v1/channels/{world.secret}").status_code == 200


# ------------------------------------------------------------------------------------ CLI


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return cli_for(monkeypatch, tmp_path, world.live)


def test_the_cli(world: World, cli: CliRunner, tmp_path: Path) -> None:
    out = run(cli, "report", "env", "--spec", "app", "--channel", world.open, "--json")
    assert finding(json.loads(out))["path"] == PATH
    for kind, (name, make) in sorted(FILES.items()):
        path = tmp_path / name
        path.write_bytes(make(world))
        out = run(
            cli, "report", "env", str(path), "-c", world.open, "--platform", "linux-64", "--json"
        )
        report = json.loads(out)
        assert report["kind"] == kind and finding(report)["path"] == PATH, kind
    target = tmp_path / "out.cdx.json"
    run(
        cli,
        "report",
        "env",
        "--spec",
        "app",
        "-c",
        world.open,
        "-f",
        "cyclonedx",
        "-o",
        str(target),
    )
    assert cyclonedx_errors(target.read_text()) == []
    csv_out = run(cli, "report", "channel", world.open, "--format", "csv")
    assert ADVISORY in csv_out
    package = ("report", "package", world.open, "app", "--version", "1.0", "--build", "0")
    tree = json.loads(run(cli, *package, "--json"))
    assert tree["reachable"]["path"] == PATH
    bad = tmp_path / "bad.yml"
    bad.write_bytes(b"nothing: here\n")
    out = " ".join(run(cli, "report", "env", str(bad), code=1).split())
    assert out.startswith("error:") and "HTTP 422" in out
    out = " ".join(run(cli, "report", "env", "--spec", "app >=9", "-c", world.open, code=1).split())
    assert "report:unsatisfiable" in out
    out = " ".join(run(cli, "report", "env", code=1).split())
    assert out.startswith("error:")


# ----------------------------------------------------------------------------- web page

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]*)"')


def test_the_report_page(world: World) -> None:
    """Anonymous: the form lists only public channels; specs and files give the path or a download."""
    with httpx.Client(base_url=world.live.url, timeout=120) as anon:
        form = anon.get("/reports/env")
        assert form.status_code == 200
        assert f'value="{world.open}"' in form.text
        assert world.secret not in form.text
        shown = anon.post(
            "/reports/env",
            data={"specs": "app\n", "channel": world.open, "format": "page"},
            files={"file": ("", b"", "application/octet-stream")},
        )
        assert shown.status_code == 200, shown.text
        assert "app → mid → aiohttp" in shown.text
        assert f'data-id="{ADVISORY}"' in shown.text
        name, make = FILES["pixi"]
        download = anon.post(
            "/reports/env",
            data={"channel": world.open, "format": "cyclonedx"},
            files={"file": (name, make(world), "application/octet-stream")},
        )
        assert download.status_code == 200, download.text
        assert "attachment" in download.headers["content-disposition"]
        assert cyclonedx_errors(download.text) == []
        empty = anon.post("/reports/env", data={"channel": world.open}, files={"file": ("", b"")})
        assert empty.status_code == 400
        assert 'id="form-error"' in empty.text
        assert "type at least one spec" in empty.text
        hidden = anon.post(
            "/reports/env",
            data={"specs": "hidden", "channel": world.secret},
            files={"file": ("", b"")},
        )
        assert hidden.status_code == 303  # sign in first, as on every page
        assert hidden.headers["location"].startswith("/login")
        assert "hidden" not in hidden.text
        garbage = anon.post(
            "/reports/env",
            data={"channel": world.open},
            files={"file": ("environment.yml", b"\x00\xff not yaml: [", "text/plain")},
        )
        assert garbage.status_code == 400
        assert 'id="form-error"' in garbage.text


def test_the_report_page_needs_the_csrf_token_when_signed_in(world: World) -> None:
    with httpx.Client(base_url=world.live.url, timeout=120) as client:
        login = CSRF_RE.search(client.get("/login").text)
        assert login is not None
        data = {"username": "admin", "password": ADMIN_PASSWORD, "next": "/"}
        signed = client.post("/login", data={**data, "csrf_token": login.group(1)})
        assert signed.status_code == 303, signed.text
        page = client.get("/reports/env")
        token = CSRF_RE.search(page.text)
        assert token is not None
        assert token.group(1), "a signed-in form carries the session's token"
        assert f'value="{world.secret}"' in page.text  # the admin reads the private channel
        body = {"specs": "app", "channel": world.open}
        refused = client.post("/reports/env", data=body, files={"file": ("", b"")})
        assert refused.status_code == 403
        ok = client.post(
            "/reports/env", data={**body, "csrf_token": token.group(1)}, files={"file": ("", b"")}
        )
        assert ok.status_code == 200, ok.text
        assert "app → mid → aiohttp" in ok.text


def test_the_package_tab_shows_the_score_reachable_through_dependencies(world: World) -> None:
    page = world.live.admin.get(f"/channels/{world.open}/packages/app/vulnerabilities")
    assert page.status_code == 200, page.text
    cell = re.search(r'<td class="reachable" data-build="0">(.*?)</td>', page.text, re.S)
    assert cell is not None, page.text
    tree = world.live.admin.get(
        f"/api/v1/channels/{world.open}/packages/app/tree", params={"version": "1.0", "build": "0"}
    ).json()
    assert tree["reachable"]["path"] == PATH
    assert f'href="/cves/{tree["reachable"]["vuln_id"]}"' in cell.group(1)  # the highest one
    assert "app → mid → aiohttp" in cell.group(1)
    own = world.live.admin.get(f"/channels/{world.open}/packages/lonely/vulnerabilities")
    assert own.status_code == 200
    assert "cannot resolve" in own.text  # ``missing-dep`` is nowhere: shown, not an error page
