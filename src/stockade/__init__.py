"""Stockade: a secure, on-premise conda package repository."""

import sys as _sys

# httpx imports its own command line with itself when it can, and with it Rich, Pygments and
# click; nothing here runs it (core/imports.py). Set before any module of ours imports httpx.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
