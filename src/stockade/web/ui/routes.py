"""Server-rendered pages (filled in by the UI module)."""

from __future__ import annotations

from fastapi import FastAPI


def install_ui(app: FastAPI) -> None:
    return None
