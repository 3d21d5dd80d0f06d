"""Which studies an analysis uses: the spec's exclusions, the primary-analysis flag, the
COVID-19 setting and the overlap rule, each with the reason a study is left out.

The overlap rule (no patient counted twice): when two studies in the analysis may share
patients (``overlaps_with`` in ``studies.csv``, either direction), the primary analysis
keeps one. A collection of published cases (a review of case reports) gives way to a
cohort, since the cohort reports its patients first-hand; between two of a kind the one
with the lower grade of source, then the smaller, gives way. ``[data] overlap =
"include"`` keeps both (a sensitivity variant).
"""

from __future__ import annotations

import pandas as pd

from ..data import Dataset
from ..spec import Spec

GRADE_ORDER = ("peer_reviewed_full", "peer_reviewed_abstract", "conference_abstract", "other")
OVERLAP_MODES = ("exclude_secondary", "include")
COVID_MODES = ("exclude", "include")


def _secondary(rec) -> bool:
    return "case_reports" in str(rec["design"]) or "review" in str(rec["design"])


def _rank(rec) -> tuple:
    grade = rec["grade"] if "grade" in rec and pd.notna(rec["grade"]) else "other"
    order = GRADE_ORDER.index(grade) if grade in GRADE_ORDER else len(GRADE_ORDER)
    return (_secondary(rec), order, -int(rec["n_patients"]))


def overlapping(studies: pd.DataFrame, candidates: list[str]) -> dict[str, str]:
    """Studies the overlap rule leaves out of ``candidates``, with the reason."""
    st = studies.set_index("study_id")
    pairs = set()
    for sid in candidates:
        others = str(st.at[sid, "overlaps_with"]) if pd.notna(st.at[sid, "overlaps_with"]) else ""
        for other in (o.strip() for o in others.split(";")):
            if other and other in candidates:
                pairs.add(tuple(sorted((sid, other))))
    out: dict[str, str] = {}
    for a, b in sorted(pairs, key=lambda p: (max(_rank(st.loc[p[0]]), _rank(st.loc[p[1]])), p)):
        if a in out or b in out:
            continue
        drop, keep = (a, b) if _rank(st.loc[a]) > _rank(st.loc[b]) else (b, a)
        what = "a collection of published cases" if _secondary(st.loc[drop]) else "the lower-graded or smaller source"
        out[drop] = (f"may share patients with {keep} (overlap rule: {what} is left out of the primary analysis; "
                     "the overlap sensitivity variant includes it)")
    return out


def excluded_studies(ds: Dataset, spec: Spec, candidates: list[str]) -> dict[str, str]:
    """Each study of ``candidates`` the analysis leaves out, with the reason (in order of the rules)."""
    st = ds.studies.set_index("study_id")
    unknown = sorted(set(spec.get("data", "exclude_studies")) - set(st.index))
    if unknown:
        raise spec.error("data.exclude_studies", f"unknown study '{unknown[0]}'")
    overlap, covid = spec.get("data", "overlap"), spec.get("data", "covid19")
    if overlap not in OVERLAP_MODES:
        raise spec.error("data.overlap", f"must be one of {', '.join(OVERLAP_MODES)}, got '{overlap}'")
    if covid not in COVID_MODES:
        raise spec.error("data.covid19", f"must be one of {', '.join(COVID_MODES)}, got '{covid}'")
    out: dict[str, str] = {}
    for sid in candidates:
        if sid in spec.get("data", "exclude_studies"):
            out[sid] = "study excluded by the spec"
        elif spec.get("data", "primary_only") and not bool(st.at[sid, "include_primary"]):
            out[sid] = "study not in the primary analysis (include_primary = false)"
        elif covid == "exclude" and "covid19" in st.columns and bool(st.at[sid, "covid19"]):
            out[sid] = "COVID-19 setting: not in the primary analysis (the covid19 sensitivity variant includes it)"
    if overlap == "exclude_secondary":
        out.update(overlapping(ds.studies, [s for s in candidates if s not in out]))
    return out
