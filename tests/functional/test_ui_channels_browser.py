"""Channel work in Debian's Chromium: drag-and-drop upload with a progress bar per file
(``static/upload.js``), then copy, freeze, a patch and a notice through the pages.

The drop is a real ``drop`` event whose ``DataTransfer`` carries the bytes of real packages from
``tests/data/channels/test-recipes``; the page sends them to the REST API one request per file
and draws each one's progress and answer. A refused file (a corrupt archive) shows the server's
reason next to it while the good ones are stored. Where the result is not on the page, it is read
back through the REST API.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.test_ui import CHROMIUM_ARGS
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("ui-channels")]

RECIPES = Path(__file__).parents[1] / "data" / "channels" / "test-recipes" / "noarch"
GOOD = ("dependency-1.0-0.conda", "dependent-1.0-0.conda")
BAD = Path(__file__).parents[1] / "data" / "bad" / "bad_package.tar.bz2"
DROP = """([zone, files]) => {
  const transfer = new DataTransfer();
  for (const [name, data] of files) {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, {type: "application/octet-stream"}));
  }
  const target = document.querySelector(zone);
  for (const type of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
  }
}"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = os.environ.get("STOCKADE_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(f"Chromium not found at {executable} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _dropped(*paths: Path) -> list[list[str]]:
    return [[p.name, base64.b64encode(p.read_bytes()).decode()] for p in paths]


@pytest.mark.browser
def test_drag_and_drop_upload_then_copy_freeze_patch_notice(
    live_server: LiveServer, chromium: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    errors: list[str] = []
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    # the refusals the test asks for are logged as failed loads; anything else is a fault
    expected = "Failed to load resource: the server responded with a status of 4"
    page.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and not m.text.startswith(expected) else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("form.stack button[type=submit]")

    # create two channels through the form
    names = [f"uib-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        page.goto(f"{live_server.url}/")
        page.click("#new-channel-link")
        page.fill("#channel-name", name)
        page.fill("#channel-description", "made in Chromium")
        page.click("#create-form button[type=submit]")
        expect(page.locator("#notice")).to_contain_text("created")
    target, source = names  # the page is the last one's: drop onto it

    # drop two good packages and a corrupt one onto the drop zone
    page.click("#files-link")
    expect(page.locator("#dropzone")).to_have_class("dropzone dropzone-active")
    page.evaluate(DROP, ["#dropzone", _dropped(*(RECIPES / n for n in GOOD), BAD)])
    items = page.locator("#upload-list .upload-item")
    expect(items).to_have_count(3)
    for name in GOOD:
        row = page.locator(".upload-item", has_text=name)
        expect(row.locator(".upload-state")).to_have_text("uploaded")
        expect(row.locator("progress")).to_have_attribute("aria-label", f"Upload of {name}")
        assert row.locator("progress").evaluate("bar => bar.value") == 100
    refused = page.locator(".upload-item", has_text=BAD.name).locator(".upload-state")
    expect(refused).to_contain_text("refused: ")
    page.screenshot(path="/tmp/ui-channel-upload.png", full_page=True)
    page.click("#upload-reload")
    expect(page.locator("#notice")).to_contain_text("uploaded")
    expect(page.locator("#files tbody tr")).to_have_count(2)

    # copy one to the other channel
    page.check(f"input[value='noarch/{GOOD[0]}']")
    page.select_option("#copy-target", target)
    page.click("#copy-button")
    expect(page.locator("#notice")).to_contain_text("copied")
    copied = live_server.admin.get(f"/api/v1/channels/{target}/files").json()
    assert [f["filename"] for f in copied] == [GOOD[0]]

    # freeze and unfreeze from the channel page
    page.goto(f"{live_server.url}/channels/{source}")
    page.click("#freeze-form button")
    expect(page.locator("#notice")).to_contain_text("frozen")
    expect(page.locator("h1 .badge-frozen")).to_be_visible()
    page.click("#freeze-form button")
    expect(page.locator("#notice")).to_contain_text("unfrozen")

    # a patch, with a mistake first (the form keeps what was typed)
    page.click("#patches-link")
    page.fill("#patch-filename", GOOD[0])
    page.fill("#patch-changes", "{not json")
    page.click("#patch-form button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("not JSON")
    expect(page.locator("#patch-filename")).to_have_value(GOOD[0])
    page.fill("#patch-changes", '{"license": "Patched"}')
    page.click("#patch-form button[type=submit]")
    expect(page.locator(f"tr[data-patch='noarch/{GOOD[0]}']")).to_contain_text("Patched")

    # a notice
    page.goto(f"{live_server.url}/channels/{source}/notices")
    page.fill("#notice-message", "Read me")
    page.select_option("#notice-level", "critical")
    page.click("#notice-form button[type=submit]")
    expect(page.locator("#notices")).to_contain_text("Read me")
    expect(page.locator("#notices")).to_contain_text("critical")
    page.screenshot(path="/tmp/ui-channel-notices.png", full_page=True)
    page.close()
    assert errors == [], errors  # no script errors, no CSP violations
