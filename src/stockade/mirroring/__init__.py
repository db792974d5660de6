"""Mirroring upstream conda channels through policies (SPEC §5)."""
