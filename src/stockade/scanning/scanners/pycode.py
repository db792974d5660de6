"""What a piece of Python does, judged from its syntax tree (and by patterns when it does not parse).

Used by the Python scanner on ``.pth`` import lines, ``sitecustomize.py`` and package
``__init__.py`` files. Calls are resolved through the file's imports (``from base64 import
b64decode as d``; ``__import__('base64').b64decode``), and sorted into capabilities:

- ``exec``: ``exec``/``eval``/``compile``/``execfile``, ``__import__`` of a computed name,
  ``pickle``/``marshal`` loads (they run or build code);
- ``decode``: base64/base32/base85, hex, zlib/bz2/lzma/gzip, ``codecs.decode`` (rot13), marshal;
- ``network``: urllib, http.client, requests, httpx, urllib3, sockets, ftplib;
- ``process``: ``os.system``/``popen``/``exec*``/``spawn*``, ``subprocess``, ``pty``.

``exec_decoded`` is an ``exec`` whose argument contains a decode call, or a name bound (anywhere
in the same scope list) to an expression containing one.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Final

MAX_PARSE_BYTES: Final = 1024 * 1024

_EXEC_NAMES: Final = frozenset({"exec", "eval", "compile", "execfile"})
_EXEC_QUALIFIED: Final = frozenset(
    {
        "builtins.exec",
        "builtins.eval",
        "builtins.compile",
        "__builtins__.exec",
        "__builtins__.eval",
        "types.FunctionType",
        "types.CodeType",
        "marshal.loads",
        "pickle.loads",
        "cPickle.loads",
        "_pickle.loads",
        "dill.loads",
        "runpy.run_path",
    }
)
_DECODE_LEAVES: Final = frozenset(
    {
        "b64decode",
        "b32decode",
        "b16decode",
        "b85decode",
        "a85decode",
        "decodebytes",
        "decodestring",
        "standard_b64decode",
        "urlsafe_b64decode",
        "unhexlify",
        "a2b_base64",
        "a2b_hex",
        "fromhex",
        "decompress",
    }
)
_DECODE_QUALIFIED: Final = frozenset({"codecs.decode", "marshal.loads", "zlib.decompressobj"})
# Calls that reach the network (not every call into a network module: ``socket.gethostname()``
# and ``requests.Session()`` at import are common and harmless).
_NETWORK_QUALIFIED: Final = re.compile(
    r"^(?:urllib\.request\.(?:urlopen|urlretrieve|build_opener)|"
    r"urllib2\.urlopen|urllib\.urlopen|urllib\.urlretrieve|"
    r"requests\.(?:get|post|put|patch|delete|head|options|request)|"
    r"httpx\.(?:get|post|put|patch|delete|head|request|stream)|"
    r"(?:http\.client|httplib)\.HTTPS?Connection|socket\.(?:create_connection|socket)|"
    r"ftplib\.FTP\w*|telnetlib\.Telnet|urllib3\.(?:request|PoolManager)|aiohttp\.request|"
    r"smtplib\.SMTP\w*|xmlrpc\.client\.ServerProxy)$"
)
_NETWORK_LEAVES: Final = frozenset({"urlopen", "urlretrieve", "create_connection"})
_PROCESS_QUALIFIED: Final = re.compile(
    r"^(?:os\.(?:system|popen|exec\w*|spawn\w*|posix_spawn\w*|startfile)|subprocess\.\w+|"
    r"pty\.spawn|commands\.\w+|ctypes\.\w+)$"
)
# The same capabilities by patterns, for text that does not parse.
# "Runs decoded data" is an exec call followed, on the same line, by a decode call: two searches,
# so that a hostile line of many ``exec(`` stays linear.
REGEX_EXEC_CALL: Final = re.compile(r"\b(?:exec|eval|compile)\s*\(")
REGEX_DECODE_CALL: Final = re.compile(
    r"(?:b64decode|b32decode|b85decode|decodebytes|unhexlify|fromhex|decompress|marshal\.loads|"
    r"codecs\.decode)\s*\("
)
REGEX_LOADS_CODE: Final = re.compile(r"\b(?:marshal|pickle)\.loads\s*\(")
REGEX_NETWORK: Final = re.compile(
    r"\b(?:urlopen|urlretrieve|requests\.(?:get|post|put|request)|httpx\.(?:get|post|request)|"
    r"socket\.(?:socket|create_connection)|HTTPS?Connection)\s*\("
)
REGEX_EXEC: Final = re.compile(r"\b(?:exec|eval|compile|execfile)\s*\(|__import__\s*\(\s*[^'\")]")
REGEX_PROCESS: Final = re.compile(
    r"\b(?:os\.(?:system|popen|exec\w*|spawn\w*)|subprocess\.\w+)\s*\("
)


@dataclass
class Capabilities:
    """What the code was seen to do, with the first call of each kind as evidence."""

    exec_decoded: str = ""
    network: str = ""
    exec: str = ""
    process: str = ""
    decode: str = ""

    def any_code(self) -> str:
        return self.exec_decoded or self.network or self.exec or self.process or self.decode


def _aliases(tree: ast.AST) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def qualified(node: ast.AST, aliases: dict[str, str]) -> str:
    """The dotted name ``node`` refers to, through imports, or "" when it cannot be told."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = qualified(node.value, aliases)
        return f"{base}.{node.attr}" if base else f"?.{node.attr}"
    if isinstance(node, ast.Call):
        callee = qualified(node.func, aliases)
        first = node.args[0] if node.args else None
        if callee in ("__import__", "importlib.import_module") and isinstance(first, ast.Constant):
            return str(first.value)
        if callee == "getattr" and len(node.args) >= 2:
            attr = node.args[1]
            if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                return f"{qualified(node.args[0], aliases)}.{attr.value}"
            return "getattr(?)"
    return ""


def _is_decode(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in _DECODE_LEAVES or name in _DECODE_QUALIFIED


def _is_network(name: str) -> bool:
    if name.rsplit(".", 1)[-1] in _NETWORK_LEAVES:
        return True
    return _NETWORK_QUALIFIED.match(name) is not None


def _is_exec(name: str, call: ast.Call) -> bool:
    if name in _EXEC_NAMES or name in _EXEC_QUALIFIED or name == "getattr(?)":
        return True
    if name in ("__import__", "importlib.import_module"):
        return not (call.args and isinstance(call.args[0], ast.Constant))
    return name.endswith((".exec", ".eval")) and name.split(".", 1)[0] in ("builtins", "?")


def _contains_decode(node: ast.AST, aliases: dict[str, str], tainted: set[str]) -> bool:
    for child in ast.walk(node):
        if isinstance(child, ast.Call) and _is_decode(qualified(child.func, aliases)):
            return True
        if isinstance(child, ast.Name) and child.id in tainted:
            return True
    return False


def _tainted_names(tree: ast.AST, aliases: dict[str, str]) -> set[str]:
    tainted: set[str] = set()
    for _ in range(3):  # a = decode(...); b = a + x; exec(b)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _contains_decode(node.value, aliases, tainted):
                tainted.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return tainted


def _calls(tree: ast.AST, module_level_only: bool) -> list[ast.Call]:
    if not module_level_only:
        return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    calls: list[ast.Call] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue  # code that runs only when called is not import-time code
        if isinstance(node, ast.Call):
            calls.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return calls


def analyze_tree(tree: ast.AST, source: str, *, module_level_only: bool = False) -> Capabilities:
    """The capabilities of the calls in ``tree`` (only those run at import, when asked)."""
    aliases = _aliases(tree)
    tainted = _tainted_names(tree, aliases)
    found = Capabilities()
    for call in _calls(tree, module_level_only):
        name = qualified(call.func, aliases)
        excerpt = ast.get_source_segment(source, call) or name
        if _is_exec(name, call):
            if not found.exec_decoded and any(
                _contains_decode(arg, aliases, tainted) for arg in call.args
            ):
                found.exec_decoded = excerpt
            found.exec = found.exec or excerpt
        elif _is_network(name):
            found.network = found.network or excerpt
        elif _PROCESS_QUALIFIED.match(name):
            found.process = found.process or excerpt
        elif _is_decode(name):
            found.decode = found.decode or excerpt
    return found


def _runs_decoded(line: str) -> bool:
    call = REGEX_EXEC_CALL.search(line)
    if call is not None and REGEX_DECODE_CALL.search(line, call.end()) is not None:
        return True
    return REGEX_LOADS_CODE.search(line) is not None


def analyze_text(text: str, *, module_level_only: bool = False) -> Capabilities:
    """Capabilities by patterns, line by line, for code that does not parse (or is too large).

    With ``module_level_only``, only lines that start in the first column count (a payload in an
    indented block at module level is not seen this way: a limit of the fallback).
    """
    found = Capabilities()
    for line in text.splitlines():
        if module_level_only and (not line or line[0].isspace()):
            continue
        if not found.exec_decoded and _runs_decoded(line):
            found.exec_decoded = line
        for attribute, pattern in (
            ("network", REGEX_NETWORK),
            ("exec", REGEX_EXEC),
            ("process", REGEX_PROCESS),
        ):
            if not getattr(found, attribute) and pattern.search(line):
                setattr(found, attribute, line)
    return found


def analyze(source: str, *, module_level_only: bool = False) -> Capabilities:
    """The capabilities of ``source``: by its syntax tree when it parses, else by patterns."""
    if len(source) <= MAX_PARSE_BYTES:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
        else:
            return analyze_tree(tree, source, module_level_only=module_level_only)
    return analyze_text(source, module_level_only=module_level_only)
