"""A user's package spec matched against upstream records (explain, exceptions)."""

from __future__ import annotations

from typing import Any

from rattler import BuildString, MatchSpec, PackageRecord

from stockade.core.errors import InvalidInputError


class SpecMatcher:
    """A user's MatchSpec (``numpy 1.26.4``, ``numpy >=1.26``, ``numpy=1.26.4=py311*``)."""

    def __init__(self, text: str) -> None:
        try:
            self.spec = MatchSpec(text.strip(), strict=False, exact_names_only=False)
        except Exception as exc:  # noqa: BLE001  (rattler raises several types; all mean "bad spec")
            raise InvalidInputError(
                f"not a package spec: {text!r} ({exc})", code="policy:bad-spec", field="spec"
            ) from None
        pkg = self.spec.name.as_package_name()
        self.name = pkg.normalized if pkg is not None else None

    def matches(self, rec: dict[str, Any], subdir: str) -> bool:
        if self.name is not None and rec.get("name") != self.name:
            return False
        try:
            return bool(
                self.spec.matches(
                    PackageRecord(
                        name=str(rec.get("name", "")),
                        version=str(rec.get("version", "0")),
                        build=BuildString(str(rec.get("build", ""))),
                        build_number=int(rec.get("build_number", 0) or 0),
                        subdir=str(rec.get("subdir") or subdir),
                    )
                )
            )
        except Exception:  # noqa: BLE001  (a record rattler cannot represent does not match)
            return False
