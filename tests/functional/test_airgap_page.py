"""Issue 15: the Air-gap admin page (``/admin/airgap``, SPEC §9) in Chromium and over HTTP.

One server (SQLite). A zip that is no bundle is refused by the run of an ``airgap:`` mirror (the
reason on the page, the row marked refused, its mirror and run linked); then a package bundle
waits in the folder (its kind, id, channel and parent read from its manifest). The page shows
both at desktop and at phone width without scrolling sideways; it needs ``mirror:read``.
"""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import own_server
from tests.functional.test_responsive_pages import OVERFLOW_JS
from tests.functional.test_ui import assert_html, browser, new_user, sign_in
from tests.support.mirror_api import make_mirror, run_mirror
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("airgap-page")]
__all__ = ["browser"]

VIEWPORTS = {"phone": (390, 844), "desktop": (1280, 900)}
BUNDLE_ID = "20261207T010203Z-0123456789ab"
PARENT_ID = "20261201T010203Z-ba9876543210"


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with own_server("sqlite", tmp_path_factory, "airgap-page", airgap={"settle_s": 0}) as server:
        yield server


@pytest.fixture(scope="module")
def world(live: LiveServer) -> dict[str, Any]:
    folder = live.settings.airgap.folder_in(live.settings.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    channel = f"gap-{uuid.uuid4().hex[:8]}"
    refused = f"not-a-bundle-{uuid.uuid4().hex[:6]}.zip"
    (folder / refused).write_bytes(zip_bytes({"hello.txt": b"hi"}))
    mirror = make_mirror(live, source=f"airgap:{channel}", mode="active", subdirs=["noarch"])
    run = run_mirror(live, mirror["name"], expect="failed")
    # a package bundle of a channel no mirror reads: it waits
    waiting = f"conda_{channel}-other_airgap_{BUNDLE_ID}.zip"
    manifest = {
        "format": "stockade-airgap-bundle",
        "bundle_id": BUNDLE_ID,
        "parent_id": PARENT_ID,
        "channel": f"{channel}-other",
        "files": {},
    }
    (folder / waiting).write_bytes(zip_bytes({"manifest.json": orjson.dumps(manifest)}))
    return {"mirror": mirror["name"], "run": run["id"], "refused": refused, "waiting": waiting}


def test_the_page_over_http_and_who_may_see_it(live: LiveServer, world: dict[str, Any]) -> None:
    admin = live.client()
    assert sign_in(admin, "admin", ADMIN_PASSWORD).status_code == 303
    index = admin.get("/admin")
    assert_html(index, 200)
    assert 'href="/admin/airgap"' in index.text
    page = admin.get("/admin/airgap")
    assert_html(page, 200)
    text = page.text
    assert str(live.settings.airgap.folder_in(live.settings.data_dir)) in text
    assert f'data-file="{world["waiting"]}"' in text and BUNDLE_ID in text and PARENT_ID in text
    assert 'class="import-refused"' in text and world["refused"] in text
    assert "no manifest.json" in text and "airgap:" in text
    assert f'href="/mirrors/{world["mirror"]}/runs/{world["run"]}"' in text

    username, password = new_user(live)
    plain = live.client()
    assert sign_in(plain, username, password).status_code == 303
    denied = plain.get("/admin/airgap")
    assert_html(denied, 403)
    assert world["refused"] not in denied.text
    anonymous = live.client().get("/admin/airgap")
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]


@pytest.mark.browser
@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_the_page_in_chromium(
    live: LiveServer, world: dict[str, Any], browser: object, viewport: str, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    width, height = VIEWPORTS[viewport]
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{live.url}/login")
        page.fill("#username", "admin")
        page.fill("#password", ADMIN_PASSWORD)
        page.click("form.stack button[type=submit]")
        expect(page.locator(".who .user")).to_have_text("admin")
        page.goto(f"{live.url}/admin/airgap")
        expect(page.locator("h1")).to_have_text("Air-gap")
        waiting = page.locator(f'#waiting tr[data-file="{world["waiting"]}"]')
        expect(waiting).to_contain_text("packages")
        expect(waiting).to_contain_text(BUNDLE_ID)
        refused = page.locator(f'#history tr[data-file="{world["refused"]}"]')
        expect(refused).to_have_class("import-refused")
        expect(refused).to_contain_text("refused")
        expect(refused).to_contain_text("no manifest.json")
        expect(page.locator("#airgap-mirrors")).to_contain_text(world["mirror"])
        root = os.environ.get("STOCKADE_TEST_ARTIFACTS_DIR")
        shots = Path(root) / "airgap" if root else tmp_path
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / f"airgap-{viewport}.png"), full_page=True)
        layout = page.evaluate(OVERFLOW_JS)
        assert layout["scroll"] <= layout["inner"], (viewport, layout)
        assert not layout["out"], (viewport, layout)
        page.click(f'#airgap-mirrors a[href="/mirrors/{world["mirror"]}/runs/{world["run"]}"]')
        expect(page.locator("#run-state")).to_have_text("failed")
    finally:
        context.close()


def test_the_api_status_lists_the_airgap_mirror(live: LiveServer, world: dict[str, Any]) -> None:
    """What the page reads is what ``GET /api/v1/airgap`` serves (both need mirror:read)."""
    status = live.admin.get("/api/v1/airgap").json()
    assert world["waiting"] in {w["file_name"] for w in status["waiting"]}
    refused = [h for h in status["history"] if h["file_name"] == world["refused"]]
    assert refused and refused[0]["state"] == "refused" and refused[0]["reason"]
