"""Analysis specifications: TOML files in ``models/``, read safely and checked key by key.

Every key a spec accepts is declared once in :data:`SECTIONS` with its type and its
default; :meth:`Spec.get` returns the default of a key the file leaves out, so no caller
repeats a default. Which of those keys a kind reads is declared by its analysis type
(``AnalysisType.spec_keys``); :func:`refuse_unread` refuses a key the spec's kind does not read.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError, plain


@dataclass(frozen=True)
class Key:
    """One spec key: its type and its default (``REQUIRED``: the file must give it)."""

    type: type | tuple[type, ...]
    default: Any = None
    doc: str = ""


REQUIRED = object()

SECTIONS: dict[str, dict[str, Key]] = {
    "analysis": {
        "name": Key(str, REQUIRED, "names the results folder"),
        "kind": Key(str, REQUIRED, "analysis type (mortality, biomarkers, comparison)"),
        "title": Key(str, None, "report title (default: the name)"),
        "description": Key(str, "", "a paragraph shown under the report title"),
    },
    "data": {
        "partitions": Key(dict, {}, "study id -> partition used"),
        "exclude_studies": Key(list, [], "study ids left out"),
        "attribution": Key(str, "primary", "death attribution: primary or alternative"),
        "correlation": Key(float, 0.5, "pre/post correlation r of the paired variance, where a row does not "
                                       "allow it to be estimated"),
        "correlation_range": Key(list, [0.3, 0.7], "plausible range of the assumed r: its ends are the "
                                                   "'correlation' sensitivity variants"),
        "judgements": Key(dict, {}, "judgement id -> alternative reading used instead of the value entered "
                                    "(judgements.csv)"),
        "within_study_correlation": Key(float, 0.0, "biomarkers: correlation of the estimates of two biomarkers "
                                                    "of one study, in the likelihood (block-diagonal covariance)"),
        "missing_dispersion": Key(str, "impute_cv", "impute_cv or exclude"),
        "primary_only": Key(bool, True, "use only studies with include_primary = true"),
        "overlap": Key(str, "exclude_secondary", "studies that may share patients: exclude_secondary or include"),
        "covid19": Key(str, "exclude", "COVID-19-triggered series: exclude or include"),
    },
    "model": {
        "covariates": Key(list, [], "covariates of the model"),
        "reference": Key(dict, {}, "covariate -> reference level (default: the level with most patients)"),
        "likelihood": Key(str, "mixture", "strata that mix categories: mixture or linear"),
        "composition": Key(str, "sources", "priors of unknown trigger mixes: sources (what a source says: excluded "
                                           "triggers, known counts) or flat (a flat Dirichlet over every trigger)"),
        "coding": Key(str, "exchangeable", "prior coding of categorical covariates: exchangeable (no level's estimate "
                                           "depends on the reference) or treatment"),
        "multivariate": Key(str, "auto", "biomarkers: correlate the study effects across biomarkers (LKJ): auto (only "
                                         "when two or more studies report one same pair), always or never"),
    },
    "priors": {"mu": Key(dict), "tau": Key(dict), "beta": Key(dict)},
    "sampling": {
        "draws": Key(int), "tune": Key(int), "chains": Key(int), "seed": Key(int),
        "sampler": Key(str), "target_accept": Key(float),
    },
    "comparison": {"covariate_sets": Key(list, [], "covariate sets compared by cross-validation")},
    "report": {
        "group_by": Key(str, None, "column of data_used that groups the forest plot's rows (default: the analysis "
                                   "type's, e.g. trigger)"),
        "threshold": Key(float, None, "clinical decision threshold for imprecision in the summary of findings, "
                                             "in the outcome's reported unit (mortality %, % reduction, odds ratio)"),
        "population": Key(list, ["paediatric", "adult"], "age groups the question covers; indirectness is serious "
                                                          "when no included study is known to include one of them"),
    },
    "sensitivity": {
        "families": Key(list, None, "variant families (default: all of the analysis type)"),
        "draws": Key(int, 500, "draws per chain of each variant's fit (the primary analysis keeps [sampling])"),
        "tune": Key(int, 300, "tuning steps per chain of each variant's fit"),
    },
}


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    kind: str
    title: str
    raw: dict[str, Any] = field(repr=False)

    def section(self, name: str) -> dict[str, Any]:
        """The keys the file gives in a section (no defaults filled in)."""
        return copy.deepcopy(dict(self.raw.get(name, {})))

    def get(self, section: str, key: str) -> Any:
        """The value of ``[section] key``, or its declared default."""
        if key in self.raw.get(section, {}):
            return copy.deepcopy(self.raw[section][key])
        default = SECTIONS[section][key].default
        return copy.deepcopy(default) if default is not REQUIRED else None

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(str(self.path), key, message)

    def patched(self, patch: dict[str, dict[str, Any]]) -> "Spec":
        """A copy with ``{section: {key: value}}`` merged in (sensitivity variants)."""
        raw = copy.deepcopy(self.raw)
        for section, values in patch.items():
            raw.setdefault(section, {}).update(copy.deepcopy(values))
        return Spec(self.path, self.name, self.kind, self.title, raw)


def _check(name: str, raw: dict) -> None:
    for section, body in raw.items():
        if section not in SECTIONS:
            raise SpecError(name, section, f"unknown section; expected one of {', '.join(SECTIONS)}")
        if not isinstance(body, dict):
            raise SpecError(name, section, "must be a table")
        allowed = SECTIONS[section]
        for key, value in body.items():
            if key not in allowed:
                raise SpecError(name, f"{section}.{key}", f"unknown key; expected one of {', '.join(allowed)}")
            want = allowed[key].type
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = body[key] = float(value)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                shown = repr(value) if isinstance(value, float) else plain(value)     # 1.0 as written, not 1
                hint = (f" (a whole number is written without a decimal point: {int(value)})"
                        if want is int and isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else "")
                raise SpecError(name, f"{section}.{key}",
                                f"must be of type {getattr(want, '__name__', want)}, got {shown}{hint}")
    for section, keys in SECTIONS.items():
        for key, k in keys.items():
            if k.default is REQUIRED and key not in raw.get(section, {}):
                raise SpecError(name, f"{section}.{key}", "is required")


def _words(names: list[str]) -> str:
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def refuse_unread(spec: Spec, accepted: Mapping[str, Mapping[str, Collection[str]]]) -> None:
    """Refuse a key that the spec's kind does not read, naming the kinds that do
    (``accepted``: kind -> section -> the keys that kind reads)."""
    mine = accepted.get(spec.kind, {})
    for section, body in spec.raw.items():
        for key in body:
            if key in mine.get(section, ()):
                continue
            others = [kind for kind, keys in accepted.items() if key in keys.get(section, ())]
            where = f"it applies to {_words(others)}" if others else "no analysis kind reads it"
            raise spec.error(f"{section}.{key}", f"not read by a {spec.kind} analysis; {where}")


def read_spec(path: str | Path, kinds: tuple[str, ...]) -> Spec:
    """Read a spec; unknown sections/keys, wrong types, missing keys and a kind not in
    ``kinds`` raise :class:`SpecError`. (``hlh_meta.analyses.load_spec`` passes the
    registered analysis kinds.)"""
    path = Path(path)
    name = str(path)
    if path.is_dir():
        raise SpecError(name, "-", "is a folder, not a spec file: give a TOML file such as models/mortality.toml")
    if not path.is_file():
        raise SpecError(name, "-", "spec file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(name, "-", f"not valid TOML: {exc}") from None
    _check(name, raw)
    kind = raw["analysis"]["kind"]
    if kind not in kinds:
        raise SpecError(name, "analysis.kind", f"unknown kind '{kind}'; expected one of {', '.join(kinds)}")
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
