"""``stockade config check``: the effective settings as TOML, each with where it came from."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stockade.settings import Settings, config_file_values, config_path

ENV_PREFIX = "STOCKADE_"
HIDDEN = "***"
# names whose values are secrets even when their type does not say so
SECRET_NAME = re.compile(r"password|secret|credential|(^|_)(key|token)$", re.IGNORECASE)
# user:password@ in URLs (database, Redis, proxies)
# A scheme where a word starts, bounded: linear in the value (as ``core.logging.SCHEME``).
URL_PASSWORD = re.compile(
    r"(?P<head>(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://[^/@:\s]{0,256}):[^/@\s]{1,1024}@",
    re.IGNORECASE,
)


def render(settings: Settings) -> str:
    """TOML of the effective settings: scalars first, then one [table] per section; unset
    values as comments; every line says ``# file``, ``# env STOCKADE_…``, ``# default`` or
    ``# derived``; secrets shown as ***."""
    path = config_path()
    header = f"# file: {path.resolve()}" if path else "# no file: defaults and environment only"
    lines = [f"# Stockade settings, as the server would use them ({header[2:]})"]
    file_values = config_file_values()
    lines += _table(settings, (), file_values)
    lines += _sections(settings, (), file_values)
    return "\n".join(lines) + "\n"


def _sections(
    model: BaseModel, where: tuple[str, ...], file_values: Mapping[str, Any]
) -> list[str]:
    """One ``[table]`` per nested section, and its own nested ones (``[storage.s3]``)."""
    lines: list[str] = []
    for name, value in model:
        if isinstance(value, BaseModel):
            key = (*where, name)
            lines += ["", f"[{'.'.join(key)}]", *_table(value, key, file_values)]
            lines += _sections(value, key, file_values)
    return lines


def _table(model: BaseModel, where: tuple[str, ...], file_values: Mapping[str, Any]) -> list[str]:
    dumped = model.model_dump(mode="json")
    rows: list[tuple[str, str]] = []
    for name, value in model:
        if isinstance(value, BaseModel):
            continue
        field = type(model).model_fields[name]
        shown = _redact(name, dumped[name])
        line = f"# {name} = (not set)" if shown is None else f"{name} = {_toml(shown)}"
        origin = _origin((*where, name), file_values)
        if origin == "default" and value != field.get_default(call_default_factory=True):
            origin = "derived from other settings"
        rows.append((line, origin))
    width = max((len(line) for line, _ in rows), default=0)
    return [f"{line.ljust(width)}  # {origin}" for line, origin in rows]


def _origin(key: tuple[str, ...], file_values: Mapping[str, Any]) -> str:
    """env beats the file (``Settings.settings_customise_sources``); a section may be set whole."""
    for depth in range(len(key), 0, -1):
        name = ENV_PREFIX + "__".join(key[:depth]).upper()
        if any(k.upper() == name for k in os.environ):
            return f"env {name}"
    values: Any = file_values
    for part in key:
        if not isinstance(values, Mapping) or part not in values:
            return "default"
        values = values[part]
    return "file"


def _redact(name: str, value: Any) -> Any:
    if value is None:
        return None
    if value == "**********" or (SECRET_NAME.search(name) and value not in ("", [], {})):
        return HIDDEN
    if isinstance(value, str):
        return URL_PASSWORD.sub(rf"\g<head>:{HIDDEN}@", value)
    if isinstance(value, list):
        return [_redact(name, v) for v in value]
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    return value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_key(k)} = {_toml(v)}" for k, v in value.items() if v is not None)
        inner = ", ".join(pairs)
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(str(value))


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)
