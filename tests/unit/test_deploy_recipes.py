"""The deployment recipes (deploy/systemd, deploy/compose; docs/deployment.md) as far as this
machine can test them without a Docker engine or a systemd to start them in: every
``STOCKADE_…`` name is a real setting and every value validates, every command line parses with
the real CLI, the compose file is consistent, ``systemd-analyze verify`` accepts the units and
``nginx -t`` the compose front's configuration."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel
from typer._click.core import Command, Context  # typer's own click
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from stockade.cli.main import app
from stockade.core.errors import ConfigurationError
from stockade.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
COMPOSE = ROOT / "deploy" / "compose"
UNITS = sorted(SYSTEMD.glob("*.service"))
ENV_EXAMPLE = SYSTEMD / "stockade.env.example"
BINARY = "/opt/stockade/venv/bin/stockade"
# Environment variables Stockade reads that are not settings.
NOT_SETTINGS = {"STOCKADE_CONFIG", "STOCKADE_SIGNING_PASSPHRASE"}
STOCKADE_IMAGE = "stockade:local"


# --------------------------------------------------------------------------- reading the recipes


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an environment file (systemd's EnvironmentFile, compose's .env)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def unit_directives(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def unit_environment(path: Path, instance: str = "8001") -> dict[str, str]:
    values = {}
    for key, value in unit_directives(path):
        if key == "Environment":
            name, _, setting = value.partition("=")
            values[name] = setting.replace("%i", instance)
    return values


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return loaded


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:?message}`` and ``${NAME:-default}``; ``$$`` is ``$``."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if variables.get(name):
            return variables[name]
        assert op == ":-", f"${{{name}}} is not set in env.example"
        return rest or ""

    substituted = re.sub(r"\$\{([A-Z0-9_]+)(?:(:\?|:-)([^}]*))?\}", one, value)
    return substituted.replace("$$", "$")


def compose_environments() -> Iterator[tuple[str, dict[str, str]]]:
    variables = env_file(COMPOSE / "env.example")
    for name, service in compose()["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        yield name, {k: interpolate(str(v), variables) for k, v in environment.items()}


def stockade_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if s.get("image") == STOCKADE_IMAGE}


# --------------------------------------------------------------------------- settings


def setting_path(name: str) -> list[str] | None:
    """``STOCKADE_STORAGE__S3__BUCKET`` -> ["storage", "s3", "bucket"] if that is a setting."""
    parts = name.removeprefix("STOCKADE_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif i != len(parts) - 1:
            return None
    return parts


def all_environments() -> Iterator[tuple[str, dict[str, str]]]:
    yield ENV_EXAMPLE.name, env_file(ENV_EXAMPLE)
    for unit in UNITS:
        yield unit.name, unit_environment(unit)
    yield from compose_environments()
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    yield "Dockerfile", dict(re.findall(r"(STOCKADE_[A-Z0-9_]+)=(\S+)", dockerfile))


def test_setting_path_knows_real_and_unknown_names() -> None:
    assert setting_path("STOCKADE_STORAGE__S3__BUCKET") == ["storage", "s3", "bucket"]
    assert setting_path("STOCKADE_EMBEDDED_WORKER") == ["embedded_worker"]
    assert setting_path("STOCKADE_STORAGE__S3__BUCKETS") is None
    assert setting_path("STOCKADE_JOBS__REDIS_URL__X") is None
    assert setting_path("STOCKADE_EMBEDDED_WORKERS") is None
    assert setting_path("STOCKADE_STORAGE") is not None  # a section: allowed as JSON


def test_every_stockade_variable_is_a_setting() -> None:
    unknown = [
        f"{where}: {name}"
        for where, environment in all_environments()
        for name in environment
        if name.startswith("STOCKADE_") and name not in NOT_SETTINGS and not setting_path(name)
    ]
    assert not unknown
    names = {n for _, env in all_environments() for n in env}
    assert {"STOCKADE_DATABASE_URL", "STOCKADE_SECRET_KEY", "STOCKADE_JOBS__REDIS_URL"} <= names
    assert "STOCKADE_STORAGE__S3__SECRET_ACCESS_KEY" in names


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith("STOCKADE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stockade.toml found by accident
    return monkeypatch


def settings_from(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Settings:
    with monkeypatch.context() as patch:
        for name, value in environment.items():
            if name.startswith("STOCKADE_"):
                patch.setenv(name, value)
        patch.setenv("STOCKADE_DATA_DIR", "data")  # the recipes' folders need not exist here
        return load_settings()


def test_env_example_and_units_make_valid_cluster_settings(clean_env: pytest.MonkeyPatch) -> None:
    base = env_file(ENV_EXAMPLE)
    replica = unit_environment(SYSTEMD / "stockade@.service")
    settings = settings_from(clean_env, base | replica)
    assert settings.embedded_worker is False
    assert settings.storage.backend == "s3" and settings.storage.s3.bucket
    assert settings.jobs.redis_url and settings.secret_key is not None
    assert settings.db_url.startswith("postgresql+psycopg://")
    assert settings.server.trusted_proxies == ["127.0.0.1", "10.0.0.5"]
    worker = settings_from(clean_env, base | unit_environment(SYSTEMD / "stockade-worker@.service"))
    assert worker.embedded_worker is True


def test_compose_environments_make_valid_settings(clean_env: pytest.MonkeyPatch) -> None:
    checked = 0
    for name, environment in compose_environments():
        if not any(k.startswith("STOCKADE_") for k in environment):
            continue
        settings = settings_from(clean_env, environment)
        assert settings.storage.backend == "s3", name
        assert settings.jobs.redis_url == "redis://:CHANGE-ME-redis@redis:6379/0", name
        expected_embedded = not name.startswith("stockade-")
        assert settings.embedded_worker is expected_embedded, name
        checked += 1
    assert checked == len(stockade_services()) == 4  # migrate, two replicas, worker


# --------------------------------------------------------------------------- command lines


def parse_command_line(args: list[str]) -> tuple[Command, dict[str, Any]]:
    """Parse ``args`` (after ``stockade``) as the real CLI would, without running anything:
    groups resolve their subcommand as they do when run (the lazy top level imports it).
    Returns the command and its parsed options."""
    command: Command = typer.main.get_command(app)
    context = Context(command, info_name="stockade")
    rest = list(args)
    while isinstance(command, TyperGroup):
        name, sub, rest = command.resolve_command(context, rest)
        assert sub is not None and name is not None, f"no command {args}"
        command = sub
        context = Context(command, info_name=name, parent=context)
    with command.make_context(command.name or "stockade", rest, parent=context.parent) as ctx:
        return command, dict(ctx.params)  # types, ranges, unknown options checked


def recipe_command_lines() -> Iterator[tuple[str, list[str]]]:
    for unit in UNITS:
        for key, value in unit_directives(unit):
            if key.startswith("Exec"):
                words = value.replace("%i", "8001").split()
                assert words[0] == BINARY, f"{unit.name}: {value}"
                yield unit.name, words[1:]
    for name, service in stockade_services().items():
        command = service.get("command")
        assert isinstance(command, list) and command[0] == "stockade", name
        yield name, command[1:]
    cmd = re.search(r"^CMD (\[.*\])$", (COMPOSE / "Dockerfile").read_text(), re.M)
    assert cmd is not None
    yield "Dockerfile", yaml.safe_load(cmd.group(1))[1:]


def test_every_command_line_parses_with_the_real_cli(clean_env: pytest.MonkeyPatch) -> None:
    seen = set()
    for where, args in recipe_command_lines():
        command, params = parse_command_line(args)
        seen.add(command.name)
        assert command.name in {"serve", "worker", "upgrade"}, where
        if command.name == "serve":  # --host/--port become settings (validated there)
            overrides = {k: params[k] for k in ("host", "port") if params[k] is not None}
            clean_env.setenv("STOCKADE_DATA_DIR", "data")
            load_settings(**overrides)
    assert seen == {"serve", "worker", "upgrade"}


def test_parse_command_line_refuses_what_the_cli_refuses() -> None:
    for args in (["serve", "--port", "http"], ["serve", "--replicas", "2"], ["worker", "-x"]):
        with pytest.raises(UsageError):
            parse_command_line(args)
    assert parse_command_line(["serve", "--port", "80000"])[1]["port"] == 80000
    with pytest.raises(ConfigurationError, match="port"):  # the range is the setting's
        load_settings(port=80000)
    with pytest.raises(UsageError, match="No such command"):
        parse_command_line(["db", "downgrade"])


# --------------------------------------------------------------------------- compose structure


def test_compose_topology() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for needed, condition in (service.get("depends_on") or {}).items():
            assert needed in services, f"{name} depends on unknown {needed}"
            target = services[needed]
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {needed}'s health check"
            if condition["condition"] == "service_completed_successfully":
                assert target.get("restart") == "no", needed
    replicas = [n for n, s in stockade_services().items() if s["command"][1] == "serve"]
    assert replicas == ["stockade-1", "stockade-2"]
    for name in replicas:
        service = services[name]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["migrate"]["command"] == ["stockade", "db", "upgrade"]
    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--appendfsync always" in redis
    template = (COMPOSE / "nginx.conf.template").read_text()
    upstream = re.findall(r"^\s*server (stockade-\d):8000", template, re.M)
    assert upstream == replicas
    nginx = services["nginx"]
    proxies = services["stockade-1"]["environment"]["STOCKADE_SERVER__TRUSTED_PROXIES"]
    assert yaml.safe_load(proxies) == [nginx["networks"]["default"]["ipv4_address"]]
    assert any("/etc/nginx/templates/" in v for v in nginx["volumes"])


# --------------------------------------------------------------------------- real tools


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    stockade = str(Path(sys.executable).parent / "stockade")  # the venv's script
    for unit in UNITS:
        text = unit.read_text().replace(BINARY, stockade)
        text = text.replace("/etc/stockade/stockade.env", str(ENV_EXAMPLE))
        (tmp_path / unit.name).write_text(text)
    names = [u.name.replace("@.", "@8001.") for u in UNITS]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in names)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    ours = [line for line in done.stderr.splitlines() if "stockade" in line]
    assert done.returncode == 0 and not ours, done.stderr


def nginx_binary() -> str | None:
    return os.environ.get("STOCKADE_TEST_NGINX") or shutil.which("nginx")


def self_signed(folder: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conda.example.org")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.skipif(not nginx_binary(), reason="nginx not installed")
def test_nginx_accepts_the_compose_front(tmp_path: Path) -> None:
    nginx = nginx_binary()
    assert nginx
    self_signed(tmp_path)
    variables = env_file(COMPOSE / "env.example")
    text = (COMPOSE / "nginx.conf.template").read_text()
    for name in ("CONDA_HOSTNAME", "BLOBS_HOSTNAME"):  # what the image's envsubst does
        text = text.replace("${" + name + "}", variables[name])
    # The compose host names resolve inside Docker only; the image's paths are folders here.
    text = re.sub(r"server (stockade-\d|minio):\d+", "server 127.0.0.1:9", text)
    text = text.replace("/etc/nginx/tls/", f"{tmp_path}/").replace(
        "/var/log/nginx/", f"{tmp_path}/"
    )
    version = subprocess.run([nginx, "-v"], check=False, capture_output=True, text=True).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    if found and tuple(map(int, found.groups())) < (1, 25, 1):
        text = text.replace("    http2 on;\n", "")  # `http2 on` is nginx 1.25.1+ (image: 1.27)
    (tmp_path / "front.conf").write_text(text)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  include {tmp_path}/front.conf;\n}}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "[warn]" not in done.stderr and "[emerg]" not in done.stderr, done.stderr


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_deployment_doc_links_and_names_every_recipe() -> None:
    docs = ROOT / "docs"
    text = (docs / "deployment.md").read_text()
    for target, anchor in re.findall(r"\]\(([\w\-./]+\.md)(?:#([\w\-]+))?\)", text):
        assert (docs / target).is_file(), target
        if anchor:
            assert anchor in anchors((docs / target).read_text()), f"{target}#{anchor}"
    for recipe in [*SYSTEMD.iterdir(), *COMPOSE.iterdir()]:
        assert recipe.name in text, f"docs/deployment.md does not name {recipe.name}"
