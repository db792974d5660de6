"""No read path bypasses the one ``servable`` rule (SPEC §8, ARCHITECTURE "one rule out").

Every function in ``src/stockade`` that queries the ``artifacts`` table (``select(...)`` naming
``Artifact`` or joining it) either filters on the rule (``Artifact.servable`` or
``listed_clause()``) or sits in a module listed below as internal, with the reason it may see
held and quarantined artifacts. A new query of artifacts fails this test until it is one or the
other. The route-level proof (quarantined files refused by every endpoint, for anonymous users,
owners and admins) is ``tests/functional/test_quarantine_http.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stockade

SRC = Path(stockade.__file__).parent

# Modules whose queries see every artifact on purpose, and why.
INTERNAL: dict[str, str] = {
    "channels/intake.py": "the door in: inserts rows and looks up their ids",
    "channels/scanstate.py": "computes the rule itself",
    "channels/lockorder.py": "locks the subdirs of files being written, whatever their state",
    "channels/publication_exports.py": "run_exports of contents, keyed by the servable files' sha256",
    "channels/upload.py": "replacing a file by name, whatever its state",
    "channels/publication_state.py": "counts held files to say a subdir is pending",
    "channels/service.py": "channel statistics and deletion, not contents",
    "channels/artifacts.py::_exists": "a copy must not clash with a held file of the same name",
    "scanning/": "the scanners and the quarantine queue work on held files",
    "mirroring/": "a mirror run compares its channel's rows with upstream, held ones included",
    "vulns/matcher.py": "matching runs on every artifact (a held one is released later)",
    "vulns/store.py": "names of matched artifacts for feed bookkeeping",
    "vulns/summaries.py": "per-artifact summaries are written for every artifact",
    "vulns/lookup.py": "the policy engine asks about versions, not files to serve",
    "vulns/aliases.py": "recounts stored summaries",
    "vulns/enrich.py": "enrichment of stored matches",
    "vulns/advisory_queries.py::check_known_version": "a curation names a package, not a file",
    "channels/publication.py::_run_exports": "reads run_exports of the files the build chose",
}
RULE_WORDS = ("servable", "listed_clause")


def _mentions_artifact(node: ast.AST) -> bool:
    return any(isinstance(sub, ast.Name) and sub.id == "Artifact" for sub in ast.walk(node))


def _queries_artifacts(func: ast.AST) -> bool:
    for sub in ast.walk(func):
        if not isinstance(sub, ast.Call):
            continue
        name = sub.func.attr if isinstance(sub.func, ast.Attribute) else getattr(sub.func, "id", "")
        if name in {"select", "join", "outerjoin", "get", "scalar"} and any(
            _mentions_artifact(arg) for arg in sub.args
        ):
            return True
    return False


def _functions(tree: ast.AST) -> list[ast.FunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]


def _internal(relative: str, function: str) -> bool:
    return any(
        relative.startswith(key)
        if key.endswith("/")
        else key in (relative, f"{relative}::{function}")
        for key in INTERNAL
    )


def test_every_query_of_artifacts_asks_the_servable_rule_or_is_internal() -> None:
    offenders: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("migrations/"):
            continue
        source = path.read_text()
        if "Artifact" not in source:
            continue
        for func in _functions(ast.parse(source)):
            if not _queries_artifacts(func) or _internal(relative, func.name):
                continue
            body = ast.get_source_segment(source, func) or ""
            if not any(word in body for word in RULE_WORDS):
                offenders.append(f"{relative}::{func.name} (line {func.lineno})")
    assert offenders == [], (
        "these read artifacts without the servable rule: filter on Artifact.servable, or add "
        "the module to INTERNAL with the reason\n" + "\n".join(offenders)
    )


def test_the_internal_list_names_real_places() -> None:
    for key in INTERNAL:
        module = key.split("::")[0]
        assert (SRC / module).exists(), key
