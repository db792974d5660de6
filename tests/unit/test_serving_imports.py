"""What a serving process loads and builds (issue 18 target 6): each route is built once, and
the CLI-only extras that libraries import when they can (Rich, Pygments, httpx's command line)
stay out of it, while the CLI can still import them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route
from stockade.asgi import app

application = app()
inner = application
while not hasattr(inner, "openapi"):
    inner = inner.app
kinds = sorted({type(r).__name__ for r in inner.router.routes})
loaded = sorted(m for m in ("rich", "pygments", "httpx._main") if sys.modules.get(m) is not None)
import rich.progress  # the CLI's progress bars: hidden only while structlog was imported
print(json.dumps({
    "kinds": kinds,
    "api_routes": sum(isinstance(r, APIRoute) for r in inner.router.routes),
    "paths": [r.path for r in inner.router.routes if isinstance(r, APIRoute)],
    "loaded": loaded,
}))
"""


def probe(tmp_path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    env["STOCKADE_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_routes_are_on_the_application_as_built_and_extras_stay_out(tmp_path: Path) -> None:
    found = probe(tmp_path)
    # include_router would leave an inclusion whose routes FastAPI builds a second time
    assert found["kinds"] == ["APIRoute", "Mount", "Route"], found["kinds"]
    paths = found["paths"]
    assert isinstance(paths, list)
    assert len(paths) > 200  # every API and page route, each once
    for path in ("/api/v1/whoami", "/api/v1/channels", "/readyz", "/metrics", "/login"):
        assert path in paths, path
    assert not any(p.startswith("/api/v1/api/v1") for p in paths)
    assert found["loaded"] == [], found["loaded"]
