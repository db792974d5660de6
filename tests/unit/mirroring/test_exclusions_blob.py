"""The exclusions blob of a mirror's subdir (what dry runs and ``explain`` read): the reasons of
each excluded record, round-tripped, in the format blobs already stored were written in."""

from __future__ import annotations

import msgpack
import zstandard

from stockade.mirroring.inputs import pack_exclusions, unpack_exclusions
from stockade.policies.engine import Reason


def test_packed_reasons_round_trip_in_the_stored_format() -> None:
    shared = Reason("block-gpl", "license", "GPL-3.0-only")
    excluded = {
        "a-1.0-h0_0.conda": [shared],
        "b-2.0-h1_0.tar.bz2": [shared, Reason("latest", "keep_latest", "3 newer builds")],
        "c-0.1-0.conda": [],
    }
    blob = pack_exclusions(excluded)
    assert unpack_exclusions(blob) == excluded
    # the layout of blobs written before: filename -> [[policy, criterion, detail], ...]
    raw = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(blob))
    assert raw["b-2.0-h1_0.tar.bz2"] == [
        ["block-gpl", "license", "GPL-3.0-only"],
        ["latest", "keep_latest", "3 newer builds"],
    ]
    before = {fn: [[r.policy, r.criterion, r.detail] for r in rs] for fn, rs in excluded.items()}
    assert zstandard.ZstdDecompressor().decompress(blob) == msgpack.packb(before)
