"""How ``stockade upload`` packs files into requests (no server: sizes on disk only)."""

from __future__ import annotations

from pathlib import Path

from stockade.cli.upload_batches import plan


def _files(tmp_path: Path, sizes: list[int]) -> list[Path]:
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"f{i}.conda"
        path.write_bytes(b"x" * size)
        paths.append(path)
    return paths


def test_batches_keep_the_order_and_the_file_count(tmp_path: Path) -> None:
    files = _files(tmp_path, [10] * 7)
    assert plan(files, max_files=3, max_bytes=1000) == [files[0:3], files[3:6], files[6:7]]


def test_a_batch_stops_before_its_byte_budget_and_a_big_file_goes_alone(tmp_path: Path) -> None:
    files = _files(tmp_path, [40, 40, 40, 500, 10])
    assert (
        plan(files, max_files=50, max_bytes=100)
        == [
            files[0:2],
            files[2:3],
            files[3:4],  # over the budget on its own: a batch of one, streamed
            files[4:5],
        ]
    )


def test_no_files_no_batches() -> None:
    assert plan([]) == []
