"""The policy editor's form: every criterion of SPEC §6 as form fields, and back.

The form posts plain fields (checkboxes, one MatchSpec a line, dates as ``YYYY-MM-DD``);
:func:`definition_of` turns them into the JSON shape of a policy definition (the shape
``policy-preview.js`` builds in the browser for the API's dry run, and the one the policy service
stores), and :func:`form_of` turns a stored definition into the form again. The policy model
checks the values themselves; errors name the field.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Any

from fastapi import Form
from pydantic import BaseModel

from stockade.core.errors import InvalidInputError
from stockade.mirroring.preview import MirrorPreview
from stockade.policies.model import CVE_STATUSES, DEFAULT_CVE_STATUSES, LicenseFamily
from stockade.web.ui.forms import clean
from stockade.web.ui.mirror_common import whole_number

LICENSE_FAMILIES = tuple(f.value for f in LicenseFamily)
STATUSES = ("active", "reported", "mitigated", "cleared", "disputed")
assert set(STATUSES) == CVE_STATUSES
SET_MODES = (("in", "in"), ("not_in", "not in"))
OPERATORS = (">=", ">")
FLAGS = (
    ("uncurated_cves", "Drop records with a vulnerability still being curated (reported)"),
    (
        "signed_only",
        "Keep only records whose upstream signature verifies against the mirror's trusted "
        "root (a mirror without one keeps nothing)",
    ),
    ("no_link_scripts", "Drop packages with pre-link, post-link or pre-unlink scripts"),
    ("include_dependencies", "With “only specs”: also keep the dependencies they need"),
    ("prune_unsatisfiable", "Drop records whose dependencies no kept record satisfies"),
)
SPEC_FIELDS = ("only_specs", "exclude_specs", "exceptions")
# How the editor names the fields the policy model's messages start with.
FIELD_LABELS = {
    "cve_score.threshold": "CVE score threshold",
    "cve_score.operator": "CVE score comparison",
    "cve_score.statuses": "CVE statuses counted",
    "platforms_mode": "Platforms (in / not in)",
    "licenses_mode": "Licence families (in / not in)",
    "platforms": "Platforms",
    "licenses": "Licence families",
    "only_specs": "Only these specs",
    "exclude_specs": "Exclude these specs",
    "exceptions": "Exceptions",
    "date_from": "Published from",
    "date_to": "Published until",
    "cooldown_days": "Cooldown (days)",
    "keep_latest": "Keep the latest N versions",
}
MAX_SPECS = 10_000


class PolicyForm(BaseModel):
    """The editor as posted (blank fields: criterion not applied)."""

    name: str = ""
    description: str = ""
    platforms: str = ""
    platforms_mode: str = "in"
    licenses: list[str] = []
    licenses_mode: str = "not_in"
    only_specs: str = ""
    exclude_specs: str = ""
    exceptions: str = ""
    date_from: str = ""
    date_to: str = ""
    cooldown_days: str = ""
    cve_threshold: str = ""
    cve_operator: str = ">="
    cve_statuses: list[str] = sorted(DEFAULT_CVE_STATUSES)
    uncurated_cves: str = ""
    signed_only: str = ""
    no_link_scripts: str = ""
    include_dependencies: str = ""
    prune_unsatisfiable: str = ""
    keep_latest: str = ""
    preview_channel: str = ""
    action: str = "save"
    csrf_token: str = ""


PolicyFields = Annotated[PolicyForm, Form()]


def _mode(value: str, field: str) -> str:
    if value not in ("in", "not_in"):
        raise InvalidInputError(f"{field}: choose 'in' or 'not in'", field=field)
    return value


def spec_lines(text: str) -> list[str]:
    lines = [clean(line, 1000) for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")][:MAX_SPECS]


def _day(value: str, field: str, *, end: bool = False) -> str | None:
    text = value.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        raise InvalidInputError(f"{field}: write a date as YYYY-MM-DD", field=field) from None
    return f"{day.isoformat()}T{'23:59:59' if end else '00:00:00'}+00:00"


def _number(value: str, field: str, *, high: float) -> float | None:
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise InvalidInputError(f"{field}: write a number", field=field) from None
    if not math.isfinite(number) or not 0 <= number <= high:
        raise InvalidInputError(f"{field}: a number from 0 to {high:g}", field=field)
    return int(number) if number.is_integer() else number


def definition_of(form: PolicyForm) -> dict[str, Any]:
    """The policy definition the form says (only the criteria that are set)."""
    found: dict[str, Any] = {}
    platforms = [p.strip() for p in form.platforms.replace("\n", ",").split(",") if p.strip()]
    if platforms:
        found["platforms"] = platforms[:64]
        found["platforms_mode"] = _mode(form.platforms_mode, "platforms_mode")
    if form.licenses:
        found["licenses"] = sorted(set(form.licenses))[:32]
        found["licenses_mode"] = _mode(form.licenses_mode, "licenses_mode")
    for key in SPEC_FIELDS:
        lines = spec_lines(getattr(form, key))
        if lines:
            found[key] = lines
    for key, end in (("date_from", False), ("date_to", True)):
        day = _day(getattr(form, key), key, end=end)
        if day:
            found[key] = day
    cooldown = _number(form.cooldown_days, "cooldown_days", high=36_500)
    if cooldown is not None:
        found["cooldown_days"] = cooldown
    threshold = _number(form.cve_threshold, "cve_score.threshold", high=10)
    if threshold is not None:
        found["cve_score"] = {
            "threshold": threshold,
            "operator": form.cve_operator,
            "statuses": sorted(set(form.cve_statuses)),
        }
    for key, _label in FLAGS:
        if getattr(form, key) == "yes":
            found[key] = True
    keep = whole_number(form.keep_latest, "keep_latest", low=1, high=100_000)
    if keep is not None:
        found["keep_latest"] = keep
    return found


def labelled(message: str) -> str:
    """A model message (``exclude_specs: invalid MatchSpec …``) with the field named as on the
    form (``Exclude these specs: invalid MatchSpec …``)."""
    for key, label in FIELD_LABELS.items():
        if message.lower().startswith(key + ":"):
            return label + message[len(key) :]
    return message


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def form_of(name: str, description: str, definition: dict[str, Any]) -> PolicyForm:
    """The editor filled with a stored policy."""
    cve = definition.get("cve_score") or {}
    flags = {key: "yes" if definition.get(key) else "" for key, _label in FLAGS}
    return PolicyForm(
        name=name,
        description=description,
        platforms=", ".join(definition.get("platforms") or []),
        platforms_mode=str(definition.get("platforms_mode", "in")),
        licenses=sorted(definition.get("licenses") or []),
        licenses_mode=str(definition.get("licenses_mode", "not_in")),
        **{key: "\n".join(definition.get(key) or []) for key in SPEC_FIELDS},
        date_from=_text(definition.get("date_from"))[:10],
        date_to=_text(definition.get("date_to"))[:10],
        cooldown_days=_text(definition.get("cooldown_days")),
        cve_threshold=_text(cve.get("threshold")),
        cve_operator=str(cve.get("operator", ">=")),
        cve_statuses=sorted(cve.get("statuses") or DEFAULT_CVE_STATUSES),
        keep_latest=_text(definition.get("keep_latest")),
        **flags,
    )


def _some(values: list[str], limit: int = 3) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def summary_of(definition: dict[str, Any]) -> list[str]:  # one line per criterion
    """A line per criterion that is set, for the list of policies."""
    d = definition
    lines: list[str] = []
    if d.get("platforms"):
        mode = "not in" if d.get("platforms_mode") == "not_in" else "in"
        lines.append(f"platforms {mode} {_some(d['platforms'])}")
    if d.get("licenses"):
        mode = "in" if d.get("licenses_mode") == "in" else "not in"
        lines.append(f"licences {mode} {_some(sorted(d['licenses']), 5)}")
    if d.get("only_specs"):
        lines.append(f"only {_some(d['only_specs'])}")
    if d.get("exclude_specs"):
        lines.append(f"exclude {_some(d['exclude_specs'])}")
    if d.get("date_from") or d.get("date_to"):
        since, until = _text(d.get("date_from"))[:10], _text(d.get("date_to"))[:10]
        lines.append(f"published {since or '…'} to {until or '…'}")
    if d.get("cooldown_days") is not None:
        lines.append(f"cooldown {_text(d['cooldown_days'])} days")
    if d.get("cve_score"):
        cve = d["cve_score"]
        lines.append(f"CVE score {cve.get('operator', '>=')} {_text(cve.get('threshold'))}")
    lines.extend(label for key, label in SHORT_FLAGS if d.get(key))
    if d.get("keep_latest"):
        lines.append(f"latest {d['keep_latest']} versions")
    if d.get("exceptions"):
        lines.append(f"except {_some(d['exceptions'])}")
    return lines


SHORT_FLAGS = (
    ("uncurated_cves", "no uncurated CVEs"),
    ("signed_only", "signed only"),
    ("no_link_scripts", "no link scripts"),
    ("include_dependencies", "with dependencies"),
    ("prune_unsatisfiable", "prune unsatisfiable"),
)


def preview_view(previews: list[MirrorPreview]) -> list[dict[str, Any]]:
    """What the preview shows of each mirror (the JSON shape of the API's dry run)."""
    return [
        {
            "mirror": p.mirror,
            "policies": p.policies,
            "totals": p.totals(),
            "notes": p.notes,
            "samples": _samples(p),
            "add_samples": [f"{s.subdir}/{f}" for s in p.subdirs for f in s.add_samples][:10],
            "remove_samples": [f"{s.subdir}/{f}" for s in p.subdirs for f in s.remove_samples][:10],
        }
        for p in previews
    ]


def _samples(preview: MirrorPreview) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for sd in preview.subdirs:
        for key, names in sd.samples.items():
            bucket = found.setdefault(key, [])
            bucket.extend(f"{sd.subdir}/{n}" for n in names)
    return {key: names[:5] for key, names in found.items()}
