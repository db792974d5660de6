"""Which routes take a URL or a secret, read from the application's route table.

:func:`url_or_secret_routes` walks every route of the offline app (API and web forms), opens the
body models (nested ones too) and returns ``"METHOD path" -> field names`` for each route whose
body has a field named like a URL or a secret. tests/functional/test_security_urls.py keeps an
explicit table of them and fails when a new one appears that it does not drive.
"""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel

from tests.support.offline_app import flat_routes, offline_app

URLISH = re.compile(
    r"(?i)^(url|uri|.*_url|.*_uri|source|proxy|issuer|.*endpoint|server|host|ca_bundle"
    r"|token|.*_token|secret|.*_secret|password|.*_password|key|.*_key)$"
)
NOT_A_SECRET = {"csrf_token"}  # the form's anti-forgery value, not a credential


def _fields(annotation: Any, depth: int = 0) -> set[str]:
    found: set[str] = set()
    if depth > 5:
        return found
    for arg in typing.get_args(annotation):
        found |= _fields(arg, depth + 1)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            found.add(name)
            found |= {f"{name}.{inner}" for inner in _fields(info.annotation, depth + 1)}
    return found


def _body_fields(route: Any) -> set[str]:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return set()
    names: set[str] = set()
    for param in dependant.body_params:
        names.add(param.name)
        names |= _fields(param.field_info.annotation)
    return names


def url_or_secret_routes() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    with offline_app() as app:
        for route in flat_routes(app.routes):
            names = {
                n
                for n in _body_fields(route)
                if URLISH.match(n.rsplit(".", 1)[-1]) and n.rsplit(".", 1)[-1] not in NOT_A_SECRET
            }
            if names:
                for method in sorted(getattr(route, "methods", ()) or ()):
                    found[f"{method} {route.path}"] = names
    return found
