"""Variant families and their expansion into named variants.

A variant changes one thing of the primary analysis: a spec patch (priors, attribution,
partition, correlation, dispersion handling), a set of studies given weight 0, or the
counts of one stratum. Names are stable and readable, e.g. ``leave out eloseily2020``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..data import Dataset
from ..effects.mortality import resolve_mortality
from ..errors import SpecError
from ..models.priors import describe
from ..spec import Spec

FAMILIES = {
    "mortality": ("priors", "leave_one_out", "exclude_high_risk", "exclude_case_reports", "exclude_overlap",
                  "attribution", "count_alternatives", "fixed_effect", "partition"),
    "biomarkers": ("priors", "leave_one_out", "exclude_high_risk", "exclude_case_reports", "exclude_overlap",
                   "correlation", "missing_dispersion", "fixed_effect"),
}
PRIOR_SETS = {
    "mortality": [("tau", {"dist": "HalfNormal", "sigma": 0.5}), ("tau", {"dist": "HalfNormal", "sigma": 2.0}),
                  ("tau", {"dist": "HalfCauchy", "beta": 1.0}), ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 3.0}),
                  ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 0.75}), ("beta", {"dist": "Normal", "mu": 0.0, "sigma": 2.0}),
                  ("beta", {"dist": "Normal", "mu": 0.0, "sigma": 0.5})],
    "biomarkers": [("tau", {"dist": "HalfNormal", "sigma": 0.25}), ("tau", {"dist": "HalfNormal", "sigma": 1.0}),
                   ("tau", {"dist": "HalfCauchy", "beta": 0.5}), ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 2.0}),
                   ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 0.5})],
}
CORRELATIONS = (0.2, 0.8)


@dataclass(frozen=True)
class Variant:
    name: str
    family: str
    patch: dict = field(default_factory=dict)          # section -> {key: value} merged into the spec
    soft_exclude: frozenset[str] = frozenset()         # studies given weight 0
    counts: dict = field(default_factory=dict)         # (study_id, stratum) -> (deaths, n)
    skip: str = ""                                     # why a declared family has nothing to vary

    def spec(self, base: Spec) -> Spec:
        raw = copy.deepcopy(base.raw)
        for section, values in self.patch.items():
            raw.setdefault(section, {}).update(copy.deepcopy(values))
        return Spec(base.path, base.name, base.kind, base.title, raw)


def _rows_in_model(ds: Dataset, spec: Spec):
    """The rows the primary analysis fits (mortality strata or biomarker rows)."""
    if spec.kind == "mortality":
        from ..analyses.mortality import mortality_frame

        return mortality_frame(ds, spec)[0]
    from ..analyses.biomarkers import biomarker_frame

    return biomarker_frame(ds, spec)[0]


def _exclusion(name: str, family: str, studies: set[str], in_model: list[str]) -> list[Variant]:
    hit = frozenset(studies & set(in_model))
    if not hit:
        return []
    return [Variant(f"{name} ({', '.join(sorted(hit))})", family, soft_exclude=hit)]


def _family(family: str, ds: Dataset, spec: Spec, used) -> list[Variant]:
    st = ds.studies
    in_model = sorted(used["study_id"].unique())
    if family == "priors":
        return [Variant(f"prior {p} ~ {describe(prior)}", family, patch={"priors": {p: prior}})
                for p, prior in PRIOR_SETS[spec.kind]]
    if family == "leave_one_out":
        return [Variant(f"leave out {sid}", family, soft_exclude=frozenset({sid})) for sid in in_model]
    if family == "exclude_high_risk":
        return _exclusion("exclude high risk of bias", family,
                          set(st.loc[st["risk_of_bias"].isin(["high", "critical"]), "study_id"]), in_model)
    if family == "exclude_case_reports":
        return _exclusion("exclude case-report reviews", family,
                          set(st.loc[st["design"].str.contains("case_reports"), "study_id"]), in_model)
    if family == "exclude_overlap":
        return _exclusion("exclude studies that may repeat patients", family,
                          set(st.loc[st["overlaps_with"].notna(), "study_id"]), in_model)
    if family == "fixed_effect":
        return [Variant("common effect (tau = 0)", family, patch={"priors": {"tau": {"dist": "Fixed", "value": 0.0}}})]
    if family == "attribution":
        return [Variant("alternative death attribution", family, patch={"data": {"attribution": "alternative"}})]
    if family == "count_alternatives":
        out = []
        for _, r in used.iterrows():
            for deaths, n in r["alternatives"]:
                out.append(Variant(f"counts {r['study_id']}/{r['stratum']} = {deaths}/{n}", family,
                                   counts={(r["study_id"], r["stratum"]): (deaths, n)}))
        return out
    if family == "partition":
        strata = resolve_mortality(ds)
        used_parts = dict(spec.get("data", "partitions", {}))
        chosen = used.groupby("study_id")["partition"].first().to_dict()
        out = []
        for sid in in_model:
            usable = strata[(strata["study_id"] == sid) & strata["usable"].astype(bool)]["partition"].unique()
            for part in usable:
                if part != chosen.get(sid):
                    out.append(Variant(f"partition {sid} = {part}", family,
                                       patch={"data": {"partitions": {**used_parts, sid: part}}}))
        return out
    if family == "correlation":
        return [Variant(f"pre/post correlation r = {r:g}", family, patch={"data": {"correlation": r}}) for r in CORRELATIONS]
    if family == "missing_dispersion":
        current = spec.get("data", "missing_dispersion", "impute_cv")
        other = "exclude" if current == "impute_cv" else "impute_cv"
        return [Variant(f"missing dispersion: {other}", family, patch={"data": {"missing_dispersion": other}})]
    raise AssertionError(family)


def expand_variants(ds: Dataset, spec: Spec) -> list[Variant]:
    """The variants the spec's ``[sensitivity] families`` declare (default: all of its kind)."""
    section = spec.section("sensitivity")
    unknown_keys = set(section) - {"families"}
    if unknown_keys:
        raise SpecError(str(spec.path), f"sensitivity.{sorted(unknown_keys)[0]}", "unknown key; expected 'families'")
    families = section.get("families", list(FAMILIES[spec.kind]))
    if not isinstance(families, list) or not families:
        raise SpecError(str(spec.path), "sensitivity.families", "must be a non-empty list of variant families")
    for fam in families:
        if fam not in FAMILIES[spec.kind]:
            raise SpecError(str(spec.path), "sensitivity.families",
                            f"unknown family '{fam}'; for {spec.kind} choose from {', '.join(FAMILIES[spec.kind])}")
    used = _rows_in_model(ds, spec)
    variants = []
    for fam in families:
        found = _family(fam, ds, spec, used)
        variants += found or [Variant(f"{fam}: nothing to vary", fam, skip="no study or stratum of this kind in the model")]
    names = [v.name for v in variants]
    assert len(set(names)) == len(names), "variant names must be unique"
    return variants
