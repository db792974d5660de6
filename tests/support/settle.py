"""Without the background threads: scan what was admitted, then publish (what serve does)."""

from __future__ import annotations

from stockade.container import Container


def scan_all(container: Container) -> int:
    scanned = 0
    while found := container.scans.run_pending():
        scanned += found
    return scanned


def settle(container: Container) -> int:
    """Scan every requested artifact, then publish every due subdir; returns publications."""
    scan_all(container)
    return container.publisher.run_pending()
