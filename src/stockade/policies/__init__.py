"""Policies (SPEC §6): which upstream records a mirror keeps, and why the others are excluded."""
