"""An attacker's review of scanning and quarantine (SPEC §8, issue 13): every way a held or
not-yet-judged file could still reach a client, and every way someone who may not could act on
the quarantine queue. Each test names the attack; the ones that found a hole say what it was."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import zstandard
from sqlalchemy import select, update

from stockade.auth.authenticator import Credentials
from stockade.channels.artifacts import ArtifactService, Selection
from stockade.channels.intake import ScanReason, admit
from stockade.channels.models import Artifact, Channel, ScanRequest
from stockade.channels.scanstate import ArtifactSource, ScanStatus, set_status
from stockade.conda.package import ValidationLimits
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.scanning.models import ArtifactScan
from stockade.scanning.service import ScanRunner
from tests.factories.packages import PackageSpec, build_conda
from tests.support.eventually import AUTH_BOUND_S, SERVING_BOUND_S, eventually
from tests.support.hostile import HOSTILE, HostileCase
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("quarantine")]

PASSWORD = "a-long-password-for-tests"
CLEAN = Path(__file__).parents[1] / "data" / "channels" / "test-recipes" / "noarch"


def _case() -> HostileCase:
    return next(
        c
        for c in HOSTILE
        if c.scanner == "link-script" and c.verdict == "malicious" and not c.known_names
    )


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _user(live: LiveServer, *, scopes: list[str] | None = None) -> tuple[str, str]:
    """A new user and a token of theirs (a scoped one when ``scopes``)."""
    name = _unique("u")
    created = live.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = {"name": "t", "expires_in_days": 1}
    if scopes is not None:
        body |= {"kind": "scope", "scopes": scopes}
    token = httpx.post(f"{live.url}/api/v1/tokens", json=body, auth=(name, PASSWORD))
    assert token.status_code == 201, token.text
    return name, str(token.json()["token"])


def _grant(live: LiveServer, channel: str, user: str, level: str) -> None:
    r = live.admin.put(f"/api/v1/channels/{channel}/members", json={"user": user, "level": level})
    assert r.status_code in (200, 201), r.text


def _wait_status(live: LiveServer, artifact_id: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with live.container.factory() as session:
            status = session.scalar(select(Artifact.scan_status).where(Artifact.id == artifact_id))
        if status not in (ScanStatus.PENDING, None):
            return str(status)
        time.sleep(0.1)
    raise AssertionError(f"artifact {artifact_id} has no verdict after {timeout}s")


def _artifact_id(live: LiveServer, channel: str, filename: str) -> int:
    with live.container.factory() as session:
        found = session.scalar(
            select(Artifact.id)
            .join(Channel, Channel.id == Artifact.channel_id)
            .where(Artifact.filename == filename, Channel.name == channel)
        )
    assert found is not None
    return int(found)


def _index_texts(client: httpx.Client, base: str, subdir: str) -> list[bytes]:
    """Every index form a client can read for ``subdir``, decoded."""
    texts: list[bytes] = []
    for name in ("repodata.json", "repodata.json.zst", "repodata.json.bz2", "run_exports.json"):
        r = client.get(f"{base}/{subdir}/{name}")
        if r.status_code != 200:
            continue
        data = r.content
        if name.endswith(".zst"):
            data = zstandard.ZstdDecompressor().decompress(data, max_output_size=2**26)
        elif name.endswith(".bz2"):
            import bz2

            data = bz2.decompress(data)
        texts.append(data)
    shard_index = client.get(f"{base}/{subdir}/repodata_shards.msgpack.zst")
    if shard_index.status_code == 200:
        raw = zstandard.ZstdDecompressor().decompress(shard_index.content, max_output_size=2**26)
        index = msgpack.unpackb(raw)
        texts.append(raw)
        for digest in index.get("shards", {}).values():
            shard = client.get(f"{base}/{subdir}/shards/{bytes(digest).hex()}.msgpack.zst")
            assert shard.status_code == 200, shard.text
            texts.append(
                zstandard.ZstdDecompressor().decompress(shard.content, max_output_size=2**26)
            )
    root = client.get(f"{base}/channeldata.json")
    if root.status_code == 200:
        texts.append(root.content)
    return texts


def _channeldata_names(client: httpx.Client, base: str, name: str, wait_s: float = 15) -> set[str]:
    """The package names of channeldata.json, waiting (up to ``wait_s``) for ``name`` to leave
    it: it is rebuilt after the indexes, rate-limited per channel (a small channel at once)."""
    deadline = time.monotonic() + wait_s
    while True:
        r = client.get(f"{base}/channeldata.json")
        names = set(r.json().get("packages", {})) if r.status_code == 200 else set()
        if name not in names or time.monotonic() > deadline:
            return names
        time.sleep(0.2)


def _refused_everywhere(
    live: LiveServer, channel: str, subdir: str, filename: str, name: str, tokens: dict[str, str]
) -> None:
    """No conda form serves or names ``filename``, for anonymous callers and each token."""
    callers: dict[str, tuple[httpx.Client, str]] = {"anonymous": (live.client(), "/conda")}
    for who, token in tokens.items():
        callers[f"{who} bearer"] = (live.client(token), "/conda")
        callers[f"{who} /t/ prefix"] = (live.client(), f"/t/{token}/conda")
        callers[f"{who} /conda/t/"] = (live.client(), f"/conda/t/{token}")
    for who, (client, prefix) in callers.items():
        base = f"{prefix}/{channel}"
        url = f"{base}/{subdir}/{filename}"
        for method, headers in (
            ("GET", {}),
            ("HEAD", {}),
            ("GET", {"range": "bytes=0-99"}),
            ("GET", {"range": "bytes=-10"}),
        ):
            r = client.request(method, url, headers=headers)
            assert r.status_code == 404, (who, method, headers, r.status_code)
        assert client.get(f"{base}/{subdir}/current_repodata.json").status_code == 404
        for text in _index_texts(client, base, subdir):
            assert filename.encode() not in text, who
            assert f'"name":"{name}"'.encode() not in text.replace(b" ", b""), who
        assert name not in _channeldata_names(client, base, name), who


def test_a_quarantined_file_is_refused_by_every_conda_form_and_credential(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """GET, HEAD and Range requests; bearer, /t/TOKEN/conda and /conda/t/TOKEN; repodata and its
    .zst and .bz2, run_exports, the shard index and every shard, channeldata: held."""
    case = _case()
    channel = live_server.new_channel(prefix="qa-forms")
    owner, owner_token = _user(live_server)
    _grant(live_server, channel, owner, "manage")
    hostile = case.build(tmp_path)
    clean = CLEAN / "dependency-1.0-0.conda"
    assert live_server.upload(channel, hostile, clean).status_code == 201
    artifact_id = _artifact_id(live_server, channel, hostile.name)
    assert _wait_status(live_server, artifact_id) == ScanStatus.MALICIOUS
    live_server.wait_published(channel)
    subdir = live_server.admin.get(f"/api/v1/quarantine/{artifact_id}").json()["subdir"]
    tokens = {"owner": owner_token, "admin": live_server.admin_token}
    _refused_everywhere(live_server, channel, subdir, hostile.name, case.name, tokens)
    for token in (owner_token, live_server.admin_token):
        client = live_server.client(token)
        assert (
            client.get(f"/api/v1/channels/{channel}/files/{subdir}/{hostile.name}").status_code
            == 404
        )
        listed = client.get(f"/api/v1/channels/{channel}/files").json()
        assert hostile.name not in {f["filename"] for f in listed}
        copied = client.post(
            "/api/v1/copy",
            json={
                "source": channel,
                "target": channel + "-x",
                "files": [f"{subdir}/{hostile.name}"],
            },
        )
        assert copied.status_code in (404, 422), copied.text
        sbom = client.get(f"/api/v1/channels/{channel}/packages/{case.name}/sbom")
        assert sbom.status_code == 404 or hostile.name not in sbom.text
        tree = client.get(f"/api/v1/channels/{channel}/packages/{case.name}/tree")
        assert tree.status_code == 404 or hostile.name not in tree.text
        page = client.get(f"/channels/{channel}/packages/{case.name}")
        assert hostile.name not in page.text
        found = client.get("/search", params={"q": case.name})
        assert channel not in found.text


def _hold_pending(live: LiveServer, artifact_id: int) -> None:
    """Put an artifact back to "waiting for its verdict", its scan taken by another replica."""
    with transaction(live.container.factory) as session:
        artifact = session.get(Artifact, artifact_id)
        assert artifact is not None
        set_status(session, artifact, ScanStatus.PENDING)
        session.merge(
            ScanRequest(
                artifact_id=artifact_id,
                reason="manual",
                # held longer than the publisher waits for verdicts (SCAN_SETTLE): the index is
                # republished without it now, as it is once a stuck scan has waited that long
                requested_at=utcnow() - timedelta(minutes=5),
                attempts=0,
                leased_until=utcnow() + timedelta(hours=1),
                lease_owner="another-replica",
            )
        )


def _wait_unlisted(live: LiveServer, channel: str, subdir: str, filename: str) -> None:
    """Until the published index no longer names ``filename`` (a subdir with a file waiting for
    its verdict stays "pending", so ``wait_published`` would wait for the verdict)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = live.admin.get(f"/conda/{channel}/{subdir}/repodata.json")
        if r.status_code == 200 and filename not in r.text:
            return
        time.sleep(0.1)
    raise AssertionError(f"{filename} is still in the index of {channel}/{subdir}")


def _release_pending(live: LiveServer, artifact_id: int) -> None:
    with transaction(live.container.factory) as session:
        session.execute(
            update(ScanRequest)
            .where(ScanRequest.artifact_id == artifact_id)
            .values(leased_until=None, lease_owner=None)
        )


def test_a_pending_upload_in_a_hold_channel_is_served_nowhere(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Hold until clean: while a file waits for its verdict no conda form serves or names it,
    for anyone; only the channel's managers see it listed (it is theirs, and copyable)."""
    channel = live_server.new_channel(prefix="qa-pending")
    reader, reader_token = _user(live_server)
    manager, manager_token = _user(live_server)
    _grant(live_server, channel, manager, "manage")
    path = CLEAN / "dependency-2.0-0.conda"
    assert live_server.upload(channel, path).status_code == 201
    artifact_id = _artifact_id(live_server, channel, path.name)
    _wait_status(live_server, artifact_id)
    _hold_pending(live_server, artifact_id)
    try:
        _wait_unlisted(live_server, channel, "noarch", path.name)
        tokens = {
            "reader": reader_token,
            "manager": manager_token,
            "admin": live_server.admin_token,
        }
        # at once on the replica that published, within the serving bound on the others
        eventually(
            lambda: _refused_everywhere(
                live_server, channel, "noarch", path.name, "dependency", tokens
            ),
            within=SERVING_BOUND_S,
        )
        shown = f"/api/v1/channels/{channel}/files/noarch/{path.name}"
        for client in (live_server.client(), live_server.client(reader_token)):
            assert client.get(shown).status_code == 404
            listed = client.get(f"/api/v1/channels/{channel}/files").json()
            assert path.name not in {f["filename"] for f in listed}
        # A reader cannot take the unjudged file out through a copy into a channel of theirs.
        mine = live_server.new_channel(prefix="qa-readers-own")
        _grant(live_server, mine, reader, "manage")

        as_reader = live_server.client(reader_token)  # one connection: one replica

        def copied() -> httpx.Response:
            taken = as_reader.post(
                "/api/v1/copy",
                json={"source": channel, "target": mine, "files": [f"noarch/{path.name}"]},
            )
            assert taken.status_code != 403, taken.text  # the grant: within a second on replicas
            return taken

        taken = eventually(copied, within=AUTH_BOUND_S)
        assert taken.status_code == 404, taken.text
        by_name = as_reader.post(
            "/api/v1/copy", json={"source": channel, "target": mine, "name": "dependency"}
        )
        assert by_name.status_code in (200, 201) and by_name.json()["artifacts"] == []
        for client in (live_server.client(), live_server.client(reader_token)):
            found = client.get("/search", params={"q": "dependency"})
            assert channel not in found.text
        manager_view = live_server.client(manager_token).get(shown)
        assert manager_view.status_code == 200 and manager_view.json()["scan_status"] == "pending"
    finally:
        _release_pending(live_server, artifact_id)


def test_a_copy_into_a_serve_first_channel_waits_for_its_verdict(live_server: LiveServer) -> None:
    """Hole found: "serve-first" served a copy at once, so a file still waiting for its verdict
    (or one released in another channel only) was served, unjudged, by any channel whose
    managers chose serve-first for their own CI uploads. Serve-first is for uploads only now."""
    source = live_server.new_channel(prefix="qa-copy-src")
    target = live_server.new_channel(prefix="qa-copy-dst")
    patched = live_server.admin.patch(
        f"/api/v1/channels/{target}", json={"scan_uploads": "serve-first"}
    )
    assert patched.status_code == 200, patched.text
    path = CLEAN / "dependency-1.0-0.conda"
    assert live_server.upload(source, path).status_code == 201
    source_id = _artifact_id(live_server, source, path.name)
    _wait_status(live_server, source_id)
    _hold_pending(live_server, source_id)  # the source still waits for its verdict
    try:
        admin = live_server.container.authenticator.authenticate(
            Credentials(token=live_server.admin_token)
        )
        with transaction(live_server.container.factory) as session:
            result = ArtifactService(session).copy(
                admin, source, target, Selection(files=[f"noarch/{path.name}"])
            )
            (clone,) = result.artifacts
            # Checked before the commit: no scanner can have judged it yet.
            assert clone.scan_status == ScanStatus.PENDING
            assert clone.servable is False
        # An upload to the same channel is still served at once (trusted CI).
        other = CLEAN / "dependency-2.0-0.conda"
        assert live_server.upload(target, other).status_code == 201
    finally:
        _release_pending(live_server, source_id)


def test_who_may_not_act_on_the_queue(live_server: LiveServer, tmp_path: Path) -> None:
    """A security reader, an artifacts-scoped token of an admin, and a channel owner may not
    release, delete or fetch a held file, nor change the rules."""
    case = _case()
    channel = live_server.new_channel(prefix="qa-perm")
    hostile = case.build(tmp_path)
    assert live_server.upload(channel, hostile).status_code == 201
    artifact_id = _artifact_id(live_server, channel, hostile.name)
    assert _wait_status(live_server, artifact_id) == ScanStatus.MALICIOUS
    reader, reader_token = _user(live_server)
    role = _unique("sec-read")
    made = live_server.admin.post(
        "/api/v1/roles", json={"name": role, "permissions": {"security": "read"}}
    )
    assert made.status_code == 201, made.text
    assigned = live_server.admin.post(f"/api/v1/roles/{role}/assignments", json={"user": reader})
    assert assigned.status_code == 200, assigned.text
    owner, owner_token = _user(live_server)
    _grant(live_server, channel, owner, "manage")
    scoped = httpx.post(
        f"{live_server.url}/api/v1/tokens",
        json={"name": "ci", "expires_in_days": 1, "kind": "scope", "scopes": ["artifacts:read"]},
        auth=("admin", ADMIN_PASSWORD),
    )
    assert scoped.status_code == 201, scoped.text
    scoped_token = scoped.json()["token"]
    reader_client = live_server.client(reader_token)
    assert reader_client.get(f"/api/v1/quarantine/{artifact_id}").status_code == 200
    for token in (reader_token, owner_token, scoped_token):
        client = live_server.client(token)
        acts = [
            client.post(f"/api/v1/quarantine/{artifact_id}/release", json={"note": "mine"}),
            client.delete(f"/api/v1/quarantine/{artifact_id}"),
            client.get(f"/api/v1/quarantine/{artifact_id}/file"),
            client.post("/api/v1/scans", json={"all": True}),
            client.post(
                "/api/v1/scan-rules",
                json={"name": _unique("r"), "source": "rule x { condition: true }"},
            ),
            client.delete("/api/v1/scan-rules/anything"),
            client.delete(f"/api/v1/channels/{channel}/files/linux-64/{hostile.name}"),
        ]
        removed = client.post(f"/api/v1/channels/{channel}/remove", json={"name": case.name})
        assert removed.status_code in (403, 404) or removed.json()["artifacts"] == []
        for response in acts:
            assert response.status_code in (403, 404), (
                token == scoped_token,
                response.request.url,
                response.text,
            )
            assert response.headers["content-type"].startswith("application/problem+json")
        if token != reader_token:
            assert client.get("/api/v1/quarantine").status_code == 403
    # Hole found: deleting the channel erased its quarantined files and their findings.
    gone = live_server.client(owner_token).delete(f"/api/v1/channels/{channel}")
    assert gone.status_code == 409, gone.text
    assert gone.json()["code"] == "channel:holds-quarantined"
    shown = live_server.admin.get(f"/api/v1/quarantine/{artifact_id}").json()
    assert shown["status"] == "malicious" and shown["servable"] is False


def test_a_forced_replacement_while_scanned_gets_no_verdict_of_the_old_bytes(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A file replaced (``force``) while its scan runs: the verdict of the old bytes is not
    recorded on the new ones (the verdict is bound to the sha256 that was scanned)."""
    from stockade.scanning.engine import ScanReport
    from stockade.scanning.recording import record_report

    case = _case()
    channel = live_server.new_channel(prefix="qa-force")
    hostile = case.build(tmp_path)
    assert live_server.upload(channel, hostile).status_code == 201
    old_id = _artifact_id(live_server, channel, hostile.name)
    assert _wait_status(live_server, old_id) == ScanStatus.MALICIOUS
    old_sha = hashlib.sha256(hostile.read_bytes()).hexdigest()
    # The "old" bytes are judged clean by a slow scan that finishes after the replacement.
    with transaction(live_server.container.factory) as session:
        artifact = session.get(Artifact, old_id)
        scan = session.get(ArtifactScan, old_id)
        assert artifact is not None and scan is not None
        # Replaced under the same id (SQLite reuses the highest id), the new bytes judged
        # already, held as pending (say, waiting on a rescan) when the old scan finishes.
        artifact.sha256 = scan.sha256 = "0" * 64
        set_status(session, artifact, ScanStatus.PENDING)
    try:
        with transaction(live_server.container.factory) as session:
            recorded = record_report(
                session,
                old_id,
                old_sha,
                ScanReport(),
                live_server.container.scanners.current(),
                duration_ms=1,
            )
        assert recorded is False
        with live_server.container.factory() as session:
            artifact = session.get(Artifact, old_id)
            assert artifact is not None and artifact.scan_status == ScanStatus.PENDING
            assert artifact.servable is False
            kept = session.get(ArtifactScan, old_id)  # the new bytes' result is untouched
            assert kept is not None and kept.sha256 == "0" * 64 and kept.verdict == "malicious"
    finally:
        with transaction(live_server.container.factory) as session:
            artifact = session.get(Artifact, old_id)
            scan = session.get(ArtifactScan, old_id)
            assert artifact is not None and scan is not None
            artifact.sha256 = scan.sha256 = old_sha
            set_status(session, artifact, ScanStatus.MALICIOUS)


def test_a_verdict_is_not_lent_to_the_same_bytes_under_another_name(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Hole found: a verdict was reused for the same bytes whatever they were scanned as. The
    name checks judge the name a file is recorded under (a mirrored record's name is upstream's
    repodata's, and only mirrored files are checked against internal names), so bytes uploaded
    clean as ``harmless-tool`` lent their verdict to a mirrored record naming them
    ``acme-billing-clent``, one letter from an internal package."""
    case = next(c for c in HOSTILE if c.rule == "names:lookalike-internal")
    internal = live_server.new_channel(prefix="qa-internal")
    for known in sorted(case.known_names):
        spec = PackageSpec(name=known, version="1.0", build="0", subdir="noarch")
        folder = tmp_path / known
        folder.mkdir()
        assert live_server.upload(internal, build_conda(folder, spec)).status_code == 201
    uploaded = live_server.new_channel(prefix="qa-harmless")
    spec = PackageSpec(name=_unique("harmless"), version="1.0", build="0", subdir="noarch")
    (tmp_path / "h").mkdir()
    harmless = build_conda(tmp_path / "h", spec)
    assert live_server.upload(uploaded, harmless).status_code == 201
    upload_id = _artifact_id(live_server, uploaded, harmless.name)
    assert _wait_status(live_server, upload_id) == ScanStatus.CLEAN
    mirror = live_server.new_channel(prefix="qa-mirrored")
    with transaction(live_server.container.factory) as session:
        source = session.get(Artifact, upload_id)
        target = session.scalar(select(Channel).where(Channel.name == mirror))
        assert source is not None and target is not None
        columns = {
            c.key: getattr(source, c.key)
            for c in Artifact.__table__.columns
            if c.key not in ("id", "channel_id", "created_at", "source", "scan_status", "servable")
        }
        columns["name"] = case.name  # what the upstream record calls it
        target.kind = "mirror"  # as a mirror's channel is (its names are not internal ones)
        mirrored = admit(
            session,
            Artifact(**columns, source=ArtifactSource.MIRROR),
            target,
            reason=ScanReason.MIRROR,
        )
        mirrored_id = mirrored.id
    live_server.container.scans._names_at = -1e9  # the internal names, read afresh
    assert _wait_status(live_server, mirrored_id) == case.verdict
    shown = live_server.admin.get(f"/api/v1/quarantine/{mirrored_id}").json()
    assert case.rule in {f["rule"] for f in shown["scan"]["findings"]}


def test_a_channel_manager_cannot_erase_a_quarantined_file_by_uploading_over_it(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Hole found: a forced upload of the same file name replaced any row "whatever its state",
    so a channel manager (no ``security:manage``) deleted a quarantined file, its findings and
    its place in the queue, by uploading something else under its name."""
    case = _case()
    channel = live_server.new_channel(prefix="qa-overwrite")
    manager, manager_token = _user(live_server)
    _grant(live_server, channel, manager, "manage")
    hostile = case.build(tmp_path)
    assert live_server.upload(channel, hostile, token=manager_token).status_code == 201
    artifact_id = _artifact_id(live_server, channel, hostile.name)
    assert _wait_status(live_server, artifact_id) == ScanStatus.MALICIOUS
    for token in (manager_token, live_server.admin_token):
        replaced = live_server.client(token).post(
            f"/api/v1/channels/{channel}/files",
            params={"force": "true"},
            files=[("files", (hostile.name, hostile.read_bytes(), "application/octet-stream"))],
        )
        assert replaced.status_code == 409, replaced.text
        assert replaced.json()["code"] == "artifact:held"
    shown = live_server.admin.get(f"/api/v1/quarantine/{artifact_id}")
    assert shown.status_code == 200 and shown.json()["status"] == "malicious"


def test_a_pending_copy_stays_held_when_its_channel_turns_serve_first(
    live_server: LiveServer,
) -> None:
    """Toggling scan_uploads (hold, serve-first, hold, serve-first) re-derives servability in
    bulk (``refresh_channel``): a copy still waiting for its verdict is not served by it."""
    source = live_server.new_channel(prefix="qa-toggle-src")
    target = live_server.new_channel(prefix="qa-toggle-dst")
    path = CLEAN / "dependency-1.0-0.conda"
    assert live_server.upload(source, path).status_code == 201
    source_id = _artifact_id(live_server, source, path.name)
    _wait_status(live_server, source_id)
    copied = live_server.admin.post(
        "/api/v1/copy", json={"source": source, "target": target, "files": [f"noarch/{path.name}"]}
    )
    assert copied.status_code in (200, 201), copied.text
    clone_id = _artifact_id(live_server, target, path.name)
    _wait_status(live_server, clone_id)
    _hold_pending(live_server, clone_id)
    try:
        for mode in ("serve-first", "hold", "serve-first"):
            patched = live_server.admin.patch(
                f"/api/v1/channels/{target}", json={"scan_uploads": mode}
            )
            assert patched.status_code == 200, patched.text
            with live_server.container.factory() as session:
                clone = session.get(Artifact, clone_id)
                assert clone is not None and clone.servable is False, mode
        _wait_unlisted(live_server, target, "noarch", path.name)
    finally:
        _release_pending(live_server, clone_id)


def test_a_release_does_not_travel_with_a_copy(live_server: LiveServer, tmp_path: Path) -> None:
    """A file released in one channel and copied to another is judged again there: the reused
    verdict is malicious and the release (one channel's decision) stays behind."""
    case = _case()
    source = live_server.new_channel(prefix="qa-rel-src")
    target = live_server.new_channel(prefix="qa-rel-dst")
    hostile = case.build(tmp_path)
    assert live_server.upload(source, hostile).status_code == 201
    held_id = _artifact_id(live_server, source, hostile.name)
    assert _wait_status(live_server, held_id) == ScanStatus.MALICIOUS
    released = live_server.admin.post(
        f"/api/v1/quarantine/{held_id}/release", json={"note": "reviewed for channel A only"}
    )
    assert released.status_code == 200, released.text
    subdir = released.json()["subdir"]
    copied = live_server.admin.post(
        "/api/v1/copy",
        json={"source": source, "target": target, "files": [f"{subdir}/{hostile.name}"]},
    )
    assert copied.status_code in (200, 201), copied.text
    clone_id = _artifact_id(live_server, target, hostile.name)
    assert _wait_status(live_server, clone_id) == ScanStatus.MALICIOUS
    assert live_server.client().get(f"/conda/{target}/{subdir}/{hostile.name}").status_code == 404
    assert live_server.client().get(f"/conda/{source}/{subdir}/{hostile.name}").status_code == 200


def test_two_replicas_never_scan_one_request_at_once(live_server: LiveServer) -> None:
    """Two scan runners on one database (two replicas): a request is claimed by one of them;
    the other gets it only once the lease runs out."""
    channel = live_server.new_channel(prefix="qa-replicas")
    path = CLEAN / "dependency-1.0-0.conda"
    assert live_server.upload(channel, path).status_code == 201
    artifact_id = _artifact_id(live_server, channel, path.name)
    _wait_status(live_server, artifact_id)
    container = live_server.container
    replicas = [
        ScanRunner(
            container.factory,
            container.blobs,
            container.scanners.current,
            limits=ValidationLimits(),
            lease_s=1,
        )
        for _ in range(2)
    ]
    try:
        won = False
        for _ in range(20):  # the live server's runner is a third replica and may win a round
            with transaction(container.factory) as session:
                session.merge(
                    ScanRequest(
                        artifact_id=artifact_id,
                        reason="manual",
                        requested_at=utcnow(),
                        attempts=0,
                        leased_until=None,
                        lease_owner=None,
                    )
                )
            claims = [r._claim_one(artifact_id) for r in replicas]
            assert sum(claims) <= 1, claims  # never both
            if sum(claims) == 1:
                won = True
                break
            _wait_status(live_server, artifact_id)
        assert won, "one of the two replicas should have claimed the request"
        with container.factory() as session:
            request = session.get(ScanRequest, artifact_id)
            assert request is not None and request.lease_owner == replicas[0].owner
    finally:
        for replica in replicas:
            replica.close()
        _release_pending(live_server, artifact_id)


def test_a_file_served_before_its_verdict_is_not_cacheable(live_server: LiveServer) -> None:
    """Hole found: serve-first uploads were served, before their verdict, as ``public,
    max-age=31536000, immutable``: a proxy or client cache kept a file that was quarantined
    minutes later, for a year. Unjudged files are ``no-store``; judged ones stay immutable."""
    channel = live_server.new_channel(prefix="qa-cache")
    patched = live_server.admin.patch(
        f"/api/v1/channels/{channel}", json={"scan_uploads": "serve-first"}
    )
    assert patched.status_code == 200, patched.text
    path = CLEAN / "dependency-1.0-0.conda"
    assert live_server.upload(channel, path).status_code == 201
    artifact_id = _artifact_id(live_server, channel, path.name)
    _wait_status(live_server, artifact_id)
    url = f"/conda/{channel}/noarch/{path.name}"
    judged = live_server.client().get(url)
    assert judged.status_code == 200 and "immutable" in judged.headers["cache-control"]
    _hold_pending(live_server, artifact_id)  # as it was before its verdict
    try:
        for method in ("GET", "HEAD"):
            unjudged = live_server.client().request(method, url)
            assert unjudged.status_code == 200, unjudged.text
            assert unjudged.headers["cache-control"] == "no-store", method
    finally:
        _release_pending(live_server, artifact_id)
