"""Analysis specifications: TOML files in ``models/``, read safely and checked key by key."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError

KINDS = ("mortality", "biomarkers")
SECTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "analysis": {"name": str, "kind": str, "title": str, "description": str},
    "data": {"partitions": dict, "exclude_studies": list, "attribution": str, "correlation": float,
             "missing_dispersion": str, "primary_only": bool},
    "model": {"covariates": list, "reference": dict},
    "priors": {"mu": dict, "tau": dict, "beta": dict},
    "sampling": {"draws": int, "tune": int, "chains": int, "seed": int, "sampler": str, "target_accept": float},
    "comparison": {"covariate_sets": list},
    "sensitivity": {},
}
REQUIRED = {"analysis": ("name", "kind")}


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    kind: str
    title: str
    raw: dict[str, Any] = field(repr=False)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.raw.get(name, {}))

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.raw.get(section, {}).get(key, default)


def load_spec(path: str | Path) -> Spec:
    """Read a spec; unknown sections/keys, wrong types and missing keys raise :class:`SpecError`."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise SpecError(name, "-", "spec file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(name, "-", f"not valid TOML: {exc}") from None
    for section, body in raw.items():
        if section not in SECTIONS:
            raise SpecError(name, section, f"unknown section; expected one of {', '.join(SECTIONS)}")
        if not isinstance(body, dict):
            raise SpecError(name, section, "must be a table")
        allowed = SECTIONS[section]
        if section == "sensitivity":
            continue
        for key, value in body.items():
            if key not in allowed:
                raise SpecError(name, f"{section}.{key}", f"unknown key; expected one of {', '.join(allowed)}")
            want = allowed[key]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                body[key] = value
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise SpecError(name, f"{section}.{key}", f"must be of type {getattr(want, '__name__', want)}, got {value!r}")
    for section, keys in REQUIRED.items():
        for key in keys:
            if key not in raw.get(section, {}):
                raise SpecError(name, f"{section}.{key}", "is required")
    kind = raw["analysis"]["kind"]
    if kind not in KINDS:
        raise SpecError(name, "analysis.kind", f"unknown kind '{kind}'; expected one of {', '.join(KINDS)}")
    spec_name = raw["analysis"]["name"]
    if not spec_name.replace("_", "").replace("-", "").isalnum():
        raise SpecError(name, "analysis.name", "use letters, digits, - and _ only (it names the results folder)")
    return Spec(path, spec_name, kind, raw["analysis"].get("title", spec_name), raw)


def bundled_specs_dir() -> Path:
    here = Path(__file__).resolve()
    for c in (here.parent / "_bundled" / "models", here.parents[2] / "models"):
        if c.is_dir():
            return c
    raise FileNotFoundError("bundled analysis specifications not found; reinstall hlh-meta")
