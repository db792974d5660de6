"""Content-trust benchmark (issue 14): what signing costs a publication, and signing from scratch.

One fresh SQLite database (``stockade.db.migrate.upgrade``) holds two public channels with the
same ``--records`` synthetic records in ``linux-64`` (made as ``bench_publication.py`` makes them,
inserted through SQLAlchemy Core, servable): ``plain`` (not signed) and ``signed``
(``channels.sign``). A root → key_mgr → pkg_mgr chain is made with ``signing.builders.new_chain``
and installed with ``signing.chain.install``; the pkg_mgr key file goes to ``DATA_DIR/keys``, where
the server's ``RecordSigner`` finds it (``signing.keys_dir`` default).

1. Publication of one upload: a real ``.conda`` goes through the real upload path
   (``validate_upload``, blob store, ``UploadService.record``, commit; both channels
   ``scan_uploads: serve-first`` so no scanner runs) and ``PublicationService.run_pending()``
   publishes it. Figure: commit -> the subdir's new index switched in (``on_published``), and the
   whole ``run_pending``. Rounds alternate the two channels (which one first flips every round);
   the target is signed within 1.2x of unsigned, same run. One more signed round runs with a new
   ``RecordSigner`` (empty memory: the signatures of unchanged records are read back from
   ``record_signatures``, as in the first publication after a restart).
2. Signing from scratch: the first publication of each channel (the signed one signs every
   record), then ``RecordSigner.sign_records`` alone over the subdir's records with
   ``record_signatures`` emptied (canonical bytes, ed25519, storing the rows in batches), side by
   side with bare ``Ed25519PrivateKey.sign`` over the same canonical bytes in a loop, and the
   canonical serialization (``signing.format.record_bytes``) alone.

    .venv/bin/python benchmarks/bench_signing.py              # 100,000 records per channel
    .venv/bin/python benchmarks/bench_signing.py --quick      # 10,000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_PASSWORD,
    SyntheticPackage,
    banner,
    bench_dir,
    command_line,
    conda_bytes,
    machine,
    package_names,
    synthetic_packages,
)
from bench_publication import _rows  # the same synthetic rows as the publication benchmark

PLAIN, SIGNED = "plain", "signed"
SUBDIR = "linux-64"
NAMES = 3_500
BATCH = 5_000
TARGET = 1.2


# --------------------------------------------------------------------------- database and keys


def _build(data_dir: Path) -> tuple[Any, dict[str, int]]:
    from stockade.channels.models import Channel
    from stockade.container import Container
    from stockade.db.engine import transaction
    from stockade.db.migrate import upgrade
    from stockade.settings import load_settings

    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    settings = load_settings(data_dir=data_dir, admin_password=ADMIN_PASSWORD)
    upgrade(settings.db_url)
    container = Container.build(settings)
    container.bootstrap()
    ids = {}
    with transaction(container.factory) as session:
        for name in (PLAIN, SIGNED):
            channel = Channel(
                name=name, privacy="public", scan_uploads="serve-first", sign=name == SIGNED
            )
            session.add(channel)
            session.flush()
            ids[name] = channel.id
    return container, ids


def _insert(container: Any, pkgs: list[SyntheticPackage], channel_id: int, contents: bool) -> None:
    from sqlalchemy import insert

    from stockade.channels.models import Artifact, PackageContent
    from stockade.channels.publishing import request_publication
    from stockade.db.engine import transaction

    for start in range(0, len(pkgs), BATCH):
        artifacts, package_contents = _rows(pkgs[start : start + BATCH], channel_id)
        for row in artifacts:
            row.update(scan_status="clean", servable=True)
        with transaction(container.factory) as session:
            if contents:  # the same archives in both channels: one content row per sha256
                session.execute(insert(PackageContent), package_contents)
            session.execute(insert(Artifact), artifacts)
    with transaction(container.factory) as session:
        request_publication(session, channel_id, SUBDIR)


def _set_up_keys(container: Any, data_dir: Path) -> Any:
    """A new chain installed in the database; the pkg_mgr key file in DATA_DIR/keys."""
    from stockade.core.clock import utcnow
    from stockade.db.engine import transaction
    from stockade.signing.builders import new_chain
    from stockade.signing.chain import install
    from stockade.signing.keys import generate, public_hex, write_key

    root, key_mgr, pkg_mgr = generate(), generate(), generate()
    root_env, key_mgr_env = new_chain(root, key_mgr, public_hex(pkg_mgr), utcnow())
    with transaction(container.factory) as session:
        install(session, [root_env], key_mgr_env)
    keys = data_dir / "keys"
    keys.mkdir(mode=0o700)
    write_key(keys / f"pkg_mgr-{public_hex(pkg_mgr)[:12]}.key", pkg_mgr, None)
    return pkg_mgr


# --------------------------------------------------------------------------- publication


def _publish(container: Any) -> tuple[float, float]:
    """Run the pending publications: (index switched, run_pending done), perf_counter times."""
    switched: list[float] = []
    hook: Callable[[int, str], None] | None = container.publisher.on_published

    def on_published(channel_id: int, subdir: str) -> None:
        switched.append(time.perf_counter())
        if hook is not None:
            hook(channel_id, subdir)

    container.publisher.on_published = on_published
    try:
        container.publisher.run_pending()
    finally:
        container.publisher.on_published = hook
    assert len(switched) == 1, switched
    return switched[0], time.perf_counter()


def _upload(container: Any, channel: str, package: Path) -> float:
    """The real upload path for one file; returns the time of the commit (perf_counter)."""
    from stockade.auth.service import UserService
    from stockade.channels.upload import UploadService, validate_upload
    from stockade.db.engine import transaction
    from stockade.storage.staging import stage_stream

    with package.open("rb") as fh:
        staged = stage_stream(fh, container.blobs.staging_dir(), package.name, max_size=1 << 30)
    upload = validate_upload(staged, container.limits)
    container.blobs.put_file(staged.path, staged.sha256)
    with transaction(container.factory) as session:
        users = UserService(session)
        principal = users.principal_for(users.get_by_name("admin"), via="password")
        UploadService(session, container.blobs).record_all(
            principal, channel, [upload], force=False
        )
    return time.perf_counter()


def _measure_upload(
    container: Any, ids: dict[str, int], channel: str, workdir: Path, tag: str
) -> tuple[float, float]:
    """(commit -> index switched, commit -> run_pending done) for one upload into ``channel``."""
    pkg = SyntheticPackage("bench-new", f"99.{tag}", f"h{tag}_0", 0, SUBDIR, ("python >=3.11",))
    package = workdir / pkg.filename
    package.write_bytes(conda_bytes(pkg.index()))
    committed = _upload(container, channel, package)
    switched, done = _publish(container)
    _check(container, ids[channel], package.name, signed=channel == SIGNED)
    return switched - committed, done - committed


def _check(container: Any, channel_id: int, filename: str, *, signed: bool) -> None:
    from stockade.conda.repodata import decode_record

    pointer = container.locator.index(channel_id, SUBDIR)
    document = decode_record(container.blobs.read_bytes(pointer.repodata))
    assert filename in document["packages.conda"], f"{filename} is not in the new repodata.json"
    assert (filename in document.get("signatures", {})) == signed, "signatures not as expected"


# --------------------------------------------------------------------------- signing alone


def _served_records(container: Any, channel_id: int) -> list[tuple[str, bytes]]:
    from sqlalchemy import select

    from stockade.channels.models import Artifact
    from stockade.db.engine import transaction

    with transaction(container.factory) as session:
        rows = session.execute(
            select(Artifact.filename, Artifact.record_json).where(
                Artifact.channel_id == channel_id,
                Artifact.subdir == SUBDIR,
                Artifact.servable.is_(True),
            )
        ).all()
    return sorted((fn, bytes(rec)) for fn, rec in rows)


def _signing_alone(container: Any, channel_id: int, pkg_mgr: Any) -> dict[str, float]:
    """Seconds: RecordSigner from scratch, bare ed25519, canonical bytes alone."""
    from sqlalchemy import delete

    from stockade.db.engine import transaction
    from stockade.signing.format import record_bytes
    from stockade.signing.models import RecordSignature
    from stockade.signing.records import RecordSigner

    records = _served_records(container, channel_id)
    started = time.perf_counter()
    canonical = [record_bytes(rec) for _, rec in records]
    serialize = time.perf_counter() - started
    sign = pkg_mgr.sign
    started = time.perf_counter()
    bare = [sign(item).hex() for item in canonical]
    ed25519 = time.perf_counter() - started
    with transaction(container.factory) as session:
        session.execute(delete(RecordSignature))
    settings = container.settings
    signer = RecordSigner(container.factory, settings.signing, settings.data_dir)
    started = time.perf_counter()
    ours = signer.sign_records(records)
    scratch = time.perf_counter() - started
    assert len(ours) == len(records)
    first = records[0][0]
    assert next(iter(ours[first].values()))["signature"] == bare[0], "signatures differ"
    return {"records": len(records), "signer": scratch, "bare": ed25519, "canonical": serialize}


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 records instead of 100,000")
    parser.add_argument("--records", type=int, help="records in each channel's linux-64")
    parser.add_argument("--rounds", type=int, default=5, help="uploads into each channel")
    args = parser.parse_args()
    records = args.records or (10_000 if args.quick else 100_000)
    banner(f"signing: one upload into a signed and an unsigned subdir of {records:,} records")
    print(f"machine: {machine()}")
    from stockade.core.logging import configure_logging

    configure_logging("warning")
    data_dir = bench_dir("signing", "stockade")
    workdir = bench_dir("signing", "uploads")
    container, ids = _build(data_dir)
    pkg_mgr = _set_up_keys(container, data_dir)
    pkgs = synthetic_packages(records, package_names(NAMES), SUBDIR)
    first: dict[str, tuple[float, float]] = {}
    for channel in (PLAIN, SIGNED):
        started = time.perf_counter()
        _insert(container, pkgs, ids[channel], contents=channel == PLAIN)
        print(f"  {channel}: inserted {records:,} rows in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        switched, done = _publish(container)
        first[channel] = (switched - started, done - started)
        print(
            f"  {channel}: first publication, index switched {first[channel][0]:.2f}s,"
            f" run_pending {first[channel][1]:.2f}s",
            flush=True,
        )
    runs: dict[str, list[tuple[float, float]]] = {PLAIN: [], SIGNED: []}
    for i in range(args.rounds):
        order = (PLAIN, SIGNED) if i % 2 == 0 else (SIGNED, PLAIN)
        for channel in order:
            runs[channel].append(_measure_upload(container, ids, channel, workdir, f"{i}{channel}"))
            switch, total = runs[channel][-1]
            print(
                f"  round {i}: {channel:<6} commit -> index switched {switch:6.3f}s"
                f"   run_pending {total:6.3f}s",
                flush=True,
            )
    settings = container.settings
    from stockade.signing.records import RecordSigner

    container.publisher.signer = RecordSigner(
        container.factory, settings.signing, settings.data_dir
    )
    cold = _measure_upload(container, ids, SIGNED, workdir, "cold")
    print(f"  signed, new RecordSigner (signatures read back): {cold[0]:.3f}s", flush=True)
    alone = _signing_alone(container, ids[SIGNED], pkg_mgr)
    container.close()
    _summary(records, first, runs, cold, alone)


def _summary(
    records: int,
    first: dict[str, tuple[float, float]],
    runs: dict[str, list[tuple[float, float]]],
    cold: tuple[float, float],
    alone: dict[str, float],
) -> None:
    banner("summary (medians)")
    plain = statistics.median(r[0] for r in runs[PLAIN])
    signed = statistics.median(r[0] for r in runs[SIGNED])
    ratio = signed / plain
    verdict = "MET" if ratio <= TARGET else "NOT met"
    print(
        f"  one upload, {records:,}-record subdir, commit -> index switched:"
        f" unsigned {plain:.3f}s, signed {signed:.3f}s = {ratio:.2f}x"
        f"  target <= {TARGET}x: {verdict}"
    )
    print(
        f"  run_pending total: unsigned {statistics.median(r[1] for r in runs[PLAIN]):.3f}s,"
        f" signed {statistics.median(r[1] for r in runs[SIGNED]):.3f}s"
    )
    print(f"  signed, first publication after a restart (new RecordSigner): {cold[0]:.3f}s")
    print(
        f"  first publication of the whole subdir: unsigned {first[PLAIN][0]:.2f}s,"
        f" signed (every record signed) {first[SIGNED][0]:.2f}s"
    )
    n = alone["records"]
    print(
        f"  signing {n:,} records from scratch (RecordSigner.sign_records):"
        f" {alone['signer']:.2f}s = {n / alone['signer']:,.0f} records/s"
    )
    print(
        f"  bare ed25519 over the same canonical bytes: {alone['bare']:.2f}s ="
        f" {n / alone['bare']:,.0f} records/s; canonical bytes alone {alone['canonical']:.2f}s"
    )
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
