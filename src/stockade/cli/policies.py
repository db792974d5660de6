"""policy create|update|list|show|delete|assign|unassign|dry-run|explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from stockade.cli.client import client, fail
from stockade.cli.output import AsJson, key_values, out, print_json, table
from stockade.cli.text import shorten

policy_app = typer.Typer(
    help="Policies: which upstream records mirrors keep.", no_args_is_help=True
)

SPEC_HELP = "a conda MatchSpec; repeat the option for more"


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _cve(value: str | None, statuses: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = value.strip()
    operator = ">=" if text.startswith(">=") else ">" if text.startswith(">") else ">="
    number = text.removeprefix(">=").removeprefix(">").strip()
    try:
        threshold = float(number)
    except ValueError:
        fail(f"--cve-score: {value!r} is not a score like '>=7.0' or '9'")
    cve: dict[str, Any] = {"threshold": threshold, "operator": operator}
    if statuses:
        cve["statuses"] = _csv(statuses)
    return cve


#: Criteria given as on/off switches: an unset switch leaves the criterion as it is.
FLAGS = (
    "uncurated_cves",
    "signed_only",
    "no_link_scripts",
    "include_dependencies",
    "prune_unsatisfiable",
)


def _definition(o: dict[str, Any]) -> dict[str, Any]:
    """The policy definition the criterion options of ``create``/``update`` (``o``) describe."""
    data: dict[str, Any] = {}
    file: Path | None = o["file"]
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            fail(f"{file}: cannot read a JSON policy definition ({exc})")
        if not isinstance(loaded, dict):
            fail(f"{file}: a policy definition is a JSON object")
        data.update(loaded)
    for key in ("platforms", "licenses"):
        kept, dropped = o[key], o[f"{key}_not"]
        if kept and dropped:
            fail(f"give --{key} or --{key}-not, not both")
        if kept or dropped:
            data[key] = _csv(kept or dropped)
            data[f"{key}_mode"] = "in" if kept else "not_in"
    for key, option in (
        ("only_specs", "only_spec"),
        ("exclude_specs", "exclude_spec"),
        ("exceptions", "except_"),
    ):
        if o[option]:
            data[key] = o[option]
    for key in ("date_from", "date_to", "cooldown_days", "keep_latest"):
        if o[key] is not None:
            data[key] = o[key]
    cve = _cve(o["cve_score"], o["cve_statuses"])
    if cve is not None:
        data["cve_score"] = cve
    data.update({k: o[k] for k in FLAGS if o[k] is not None})
    return data


FILE = typer.Option(None, "--file", help="a JSON policy definition (options add to it)")
PLATFORMS = typer.Option(None, "--platforms", help="keep only these subdirs (comma-separated)")
PLATFORMS_NOT = typer.Option(None, "--platforms-not", help="drop these subdirs")
LICENSES = typer.Option(None, "--licenses", help="keep only these license families")
LICENSES_NOT = typer.Option(
    None, "--licenses-not", help="drop these license families (gpl3,agpl,…)"
)
ONLY = typer.Option(None, "--only-spec", help=f"keep only what matches; {SPEC_HELP}")
EXCLUDE = typer.Option(None, "--exclude-spec", help=f"drop what matches; {SPEC_HELP}")
EXCEPT = typer.Option(None, "--except", help=f"keep whatever the criteria say; {SPEC_HELP}")
DATE_FROM = typer.Option(None, "--date-from", help="ISO date: drop records published before")
DATE_TO = typer.Option(None, "--date-to", help="ISO date: drop records published after")
COOLDOWN = typer.Option(None, "--cooldown-days", min=0, help="drop records newer than N days")
CVE = typer.Option(None, "--cve-score", help="drop records with a CVSS score like '>=7.0'")
CVE_STATUSES = typer.Option(
    None, "--cve-statuses", help="statuses counted (default active,reported)"
)
UNCURATED = typer.Option(
    None, "--uncurated-cves/--no-uncurated-cves", help="drop records with reported CVEs"
)
SIGNED = typer.Option(
    None,
    "--signed-only/--no-signed-only",
    help="keep only records whose upstream signature verifies against the mirror's trusted "
    "root (`mirror update --trusted-root`); a mirror without one keeps nothing",
)
LINKS = typer.Option(
    None, "--no-link-scripts/--allow-link-scripts", help="drop packages with link scripts"
)
KEEP = typer.Option(None, "--keep-latest", min=1, help="keep the newest N versions of each name")
DEPS = typer.Option(None, "--include-dependencies/--no-include-dependencies")
PRUNE = typer.Option(None, "--prune-unsatisfiable/--no-prune-unsatisfiable")


@policy_app.command("create")
def create(
    name: str,
    description: str = typer.Option("", help="what the policy is for"),
    file: Path | None = FILE,
    platforms: str | None = PLATFORMS,
    platforms_not: str | None = PLATFORMS_NOT,
    licenses: str | None = LICENSES,
    licenses_not: str | None = LICENSES_NOT,
    only_spec: list[str] | None = ONLY,
    exclude_spec: list[str] | None = EXCLUDE,
    except_: list[str] | None = EXCEPT,
    date_from: str | None = DATE_FROM,
    date_to: str | None = DATE_TO,
    cooldown_days: float | None = COOLDOWN,
    cve_score: str | None = CVE,
    cve_statuses: str | None = CVE_STATUSES,
    uncurated_cves: bool | None = UNCURATED,
    signed_only: bool | None = SIGNED,
    no_link_scripts: bool | None = LINKS,
    keep_latest: int | None = KEEP,
    include_dependencies: bool | None = DEPS,
    prune_unsatisfiable: bool | None = PRUNE,
) -> None:
    """Create a policy. It applies once assigned to a channel or a mirror (`policy assign`)."""
    definition = _definition(locals())
    data = client().post(
        "/policies", json={"name": name, "description": description, "definition": definition}
    )
    out.print(f"policy [bold]{data['name']}[/bold] created: {_summary(data['definition'])}")


@policy_app.command("update")
def update(
    name: str,
    description: str | None = typer.Option(None),
    replace: bool = typer.Option(False, "--replace", help="replace the definition, not merge"),
    clear: list[str] | None = typer.Option(None, "--clear", help="remove a criterion by name"),
    file: Path | None = FILE,
    platforms: str | None = PLATFORMS,
    platforms_not: str | None = PLATFORMS_NOT,
    licenses: str | None = LICENSES,
    licenses_not: str | None = LICENSES_NOT,
    only_spec: list[str] | None = ONLY,
    exclude_spec: list[str] | None = EXCLUDE,
    except_: list[str] | None = EXCEPT,
    date_from: str | None = DATE_FROM,
    date_to: str | None = DATE_TO,
    cooldown_days: float | None = COOLDOWN,
    cve_score: str | None = CVE,
    cve_statuses: str | None = CVE_STATUSES,
    uncurated_cves: bool | None = UNCURATED,
    signed_only: bool | None = SIGNED,
    no_link_scripts: bool | None = LINKS,
    keep_latest: int | None = KEEP,
    include_dependencies: bool | None = DEPS,
    prune_unsatisfiable: bool | None = PRUNE,
) -> None:
    """Change a policy: the options given are merged into its definition (or replace it)."""
    changes = _definition(locals())
    api = client()
    definition = {} if replace else dict(api.get(f"/policies/{name}")["definition"])
    definition.update(changes)
    for key in clear or []:
        definition.pop(key.replace("-", "_"), None)
    body: dict[str, Any] = {"definition": definition}
    if description is not None:
        body["description"] = description
    data = api.patch(f"/policies/{name}", json=body)
    out.print(f"policy [bold]{data['name']}[/bold] updated: {_summary(data['definition'])}")


@policy_app.command("list")
def list_(as_json: AsJson = False) -> None:
    """List policies and where they apply."""
    data = client().get("/policies")
    if as_json:
        print_json(data)
        return
    grid = table("name", "criteria", "assigned to", "description")
    for p in data:
        grid.add_row(
            p["name"],
            _summary(p["definition"]),
            _where(p["assignments"]),
            shorten(p["description"], 40),
        )
    out.print(grid)


@policy_app.command("show")
def show(name: str, as_json: AsJson = False) -> None:
    """A policy: its criteria, one per line, and where it is assigned."""
    data = client().get(f"/policies/{name}")
    if as_json:
        print_json(data)
        return
    criteria = [(key, _criterion(value)) for key, value in sorted(data["definition"].items())]
    key_values(
        data["name"],
        [
            ("description", data["description"] or None),
            ("assigned to", _where(data["assignments"]) or "nothing yet"),
            *(criteria or [("criteria", "none (keeps everything)")]),
        ],
    )


@policy_app.command("delete")
def delete(name: str) -> None:
    """Delete a policy (and its assignments)."""
    client().delete(f"/policies/{name}")
    out.print(f"policy [bold]{name}[/bold] deleted")


@policy_app.command("assign")
def assign(
    name: str,
    channel: str | None = typer.Option(None, help="bound every mirror of this channel"),
    mirror: str | None = typer.Option(None, help="apply to this mirror only"),
) -> None:
    """Apply a policy to a channel or one mirror (from the next run)."""
    client().post(f"/policies/{name}/assignments", json={"channel": channel, "mirror": mirror})
    target = f"channel {channel}" if channel else f"mirror {mirror}"
    out.print(f"policy [bold]{name}[/bold] assigned to {target}")


@policy_app.command("unassign")
def unassign(
    name: str, channel: str | None = typer.Option(None), mirror: str | None = typer.Option(None)
) -> None:
    """Stop applying a policy to a channel or mirror."""
    params = {k: v for k, v in (("channel", channel), ("mirror", mirror)) if v}
    client().delete(f"/policies/{name}/assignments", params=params)
    out.print(f"policy [bold]{name}[/bold] unassigned")


@policy_app.command("dry-run")
def dry_run(
    name: str,
    channel: str = typer.Option(..., help="the channel whose mirrors to evaluate"),
    mirror: str | None = typer.Option(None, help="only this mirror of the channel"),
    as_json: AsJson = False,
) -> None:
    """What the channel would hold with this policy: counts per reason, would add/remove.

    Reads the upstream records of each mirror's last run (never the upstream): a mirror that has
    not run yet has no snapshot. Records whose link scripts only a download tells are counted as
    undecided."""
    data = client().post(f"/policies/{name}/dry-run", json={"channel": channel, "mirror": mirror})
    if as_json:
        print_json(data)
        return
    for preview in data["mirrors"]:
        totals = preview["totals"]
        out.print(
            f"[bold]{preview['mirror']}[/bold] (policies: {', '.join(preview['policies'])}): "
            f"{totals['kept']} of {totals['upstream']} kept, {totals['excluded']} excluded; "
            f"would add {totals['would_add']}, would remove {totals['would_remove']}"
            + (f"; {totals['undecided']} undecided" if totals.get("undecided") else "")
        )
        for note in preview.get("notes", []):
            out.print(f"  note: {note}", highlight=False)
        table = Table("excluded by", "records", "for example")
        samples: dict[str, list[str]] = {}
        for sd in preview["subdirs"]:
            for key, files in sd["samples"].items():
                samples.setdefault(key, []).extend(files)
        for reason, n in totals["by_reason"].items():
            table.add_row(reason, str(n), ", ".join(samples.get(reason, [])[:2]))
        out.print(table)


@policy_app.command("explain")
def explain(
    spec: str = typer.Argument(..., help="e.g. 'numpy 1.26.4' or 'numpy >=1.26'"),
    channel: str = typer.Option(..., help="the channel to ask about"),
    subdir: str | None = typer.Option(None),
    as_json: AsJson = False,
) -> None:
    """Why records matching SPEC are, or are not, in the channel: the reasons the mirrors' last
    run stored (nothing is fetched; before a first run there is no snapshot)."""
    params = {"channel": channel, "spec": spec}
    if subdir:
        params["subdir"] = subdir
    data = client().get("/policies/explain", params=params)
    if as_json:
        print_json(data)
        return
    if not data:
        out.print(f"no upstream record of {channel!r}'s mirrors matches {spec!r}")
        return
    for e in data:
        state = "[green]kept[/green]" if e["kept"] else "[red]excluded[/red]"
        if e["in_channel"]:
            present = "in the channel"
        else:
            present = "not in the channel yet (next run)" if e["kept"] else "not in the channel"
        out.print(f"{e['subdir']}/{e['filename']} ({e['mirror']}): {state}, {present}")
        for r in e["reasons"]:
            out.print(f"    {r['policy']}: {r['criterion']}: {r['detail']}", highlight=False)
        for exception in e.get("exceptions", []):
            out.print(f"    kept by the exception {exception}", highlight=False)
        for note in e.get("notes", []):
            out.print(f"    note: {note}", highlight=False)


def _criterion(value: object) -> str:
    """A criterion's setting: text as is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))


def _summary(definition: dict[str, Any]) -> str:
    return ", ".join(sorted(definition)) or "no criteria (keeps everything)"


def _where(assignments: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"channel {a['channel']}" if a["channel"] else f"mirror {a['mirror']}" for a in assignments
    )
