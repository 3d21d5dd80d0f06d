"""Sensitivity families every analysis type shares: priors, leaving studies out, the
common-effect model. Each returns the named variants of one family (empty when there is
nothing to vary); analysis types add their own families next to these."""

from __future__ import annotations

import pandas as pd

from ..data import Dataset
from ..models.priors import describe
from ..spec import Spec
from .base import Variant
from .judgements import judgements


def prior_family(prior_sets: list[tuple[str, dict]]):
    """A ``priors`` family that swaps in each of ``prior_sets`` ((parameter, prior) pairs)."""
    def priors(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
        return [Variant(f"prior {p} ~ {describe(prior)}", "priors", patch={"priors": {p: prior}})
                for p, prior in prior_sets]
    return priors


def _in_model(used: pd.DataFrame) -> list[str]:
    return list(pd.unique(used["study_id"]))


def _exclusion(name: str, family: str, studies: set[str], used: pd.DataFrame) -> list[Variant]:
    hit = frozenset(studies & set(_in_model(used)))
    if not hit:
        return []
    return [Variant(f"{name} ({', '.join(sorted(hit))})", family, soft_exclude=hit)]


def leave_one_out(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    return [Variant(f"leave out {sid}", "leave_one_out", soft_exclude=frozenset({sid})) for sid in _in_model(used)]


def exclude_high_risk(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    st = ds.studies
    return _exclusion("exclude high risk of bias", "exclude_high_risk",
                      set(st.loc[st["risk_of_bias"].isin(["high", "critical"]), "study_id"]), used)


def exclude_case_reports(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    st = ds.studies
    return _exclusion("exclude case-report reviews", "exclude_case_reports",
                      set(st.loc[st["design"].str.contains("case_reports"), "study_id"]), used)


def overlap(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    """Include the sources the overlap rule leaves out (patients may then count twice)."""
    if spec.get("data", "overlap") == "include":
        return []
    _, left = analysis.frame(ds, spec)
    if not left["excluded_because"].astype(str).str.startswith("may share patients").any():
        return []
    return [Variant("include sources that may share patients", "overlap", patch={"data": {"overlap": "include"}})]


def covid19(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    """Add the COVID-19-triggered series the primary analysis leaves out (only where one
    would enter the analysis)."""
    if spec.get("data", "covid19") == "include":
        return []
    _, left = analysis.frame(ds, spec)
    if not left["excluded_because"].astype(str).str.startswith("COVID-19 setting").any():
        return []
    return [Variant("include COVID-19 series", "covid19", patch={"data": {"covid19": "include"}})]


def peer_reviewed_only(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    """Leave out sources that are not peer-reviewed papers (conference abstracts, web pages)."""
    st = ds.studies
    if "grade" not in st:
        return []
    return _exclusion("peer-reviewed sources only", "peer_reviewed_only",
                      set(st.loc[~st["grade"].isin(["peer_reviewed_full", "peer_reviewed_abstract"]), "study_id"]), used)


def fixed_effect(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    return [Variant("common effect (tau = 0)", "fixed_effect", patch={"priors": {"tau": {"dist": "Fixed", "value": 0.0}}})]


SHARED = {"leave_one_out": leave_one_out, "exclude_high_risk": exclude_high_risk,
          "exclude_case_reports": exclude_case_reports, "overlap": overlap, "covid19": covid19,
          "peer_reviewed_only": peer_reviewed_only, "fixed_effect": fixed_effect, "judgements": judgements}
