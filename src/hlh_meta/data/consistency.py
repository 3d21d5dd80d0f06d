"""Checks across rows and tables: ids, counts within n, disjoint strata, count methods,
the arms of comparative sources."""

from __future__ import annotations

import pandas as pd

from ..errors import Problem, plain
from .schema import TRIGGERS

S, M, B, A = "studies.csv", "mortality.csv", "biomarkers.csv", "arms.csv"


def _unknown_ids(frame: pd.DataFrame, name: str, known: set[str]) -> list[Problem]:
    bad = frame[~frame["study_id"].isin(known) & frame["study_id"].notna()]
    return [Problem(name, int(r), "study_id", f"unknown study '{sid}' (not in {S})") for r, sid in bad["study_id"].items()]


def _studies(studies: pd.DataFrame) -> list[Problem]:
    problems = []
    known = set(studies["study_id"].dropna())
    for row, rec in studies.iterrows():
        for other in ("" if pd.isna(rec["overlaps_with"]) else rec["overlaps_with"]).split(";"):
            other = other.strip()
            if other and other not in known:
                problems.append(Problem(S, int(row), "overlaps_with", f"unknown study '{other}'"))
            if other and other == rec["study_id"]:
                problems.append(Problem(S, int(row), "overlaps_with", "a study cannot overlap with itself"))
    too_many = studies["n_iv"].notna() & (studies["n_iv"] > studies["n_patients"])
    for row in studies.index[too_many.fillna(False)]:
        problems.append(Problem(S, int(row), "n_iv", f"n_iv ({plain(studies.at[row, 'n_iv'])}) exceeds n_patients ({plain(studies.at[row, 'n_patients'])})"))
    iv_route = studies["route"].isin(["iv", "sc"]) & studies["n_iv"].notna()
    for row in studies.index[iv_route.fillna(False)]:
        expected = studies.at[row, "n_patients"] if studies.at[row, "route"] == "iv" else 0
        if studies.at[row, "n_iv"] != expected:
            problems.append(Problem(S, int(row), "n_iv", f"route is '{studies.at[row, 'route']}' so n_iv must be {plain(expected)}"))
    return problems


_NEEDS = {
    "reported": (("deaths", "n"), ("percent",)),
    "matched": (("deaths", "n"), ("percent",)),
    "from_percentage": (("percent", "percent_outcome", "percent_decimals"), ("deaths",)),
    "remainder": ((), ("deaths", "n", "percent")),
    "not_reported": ((), ("deaths", "percent")),
}


def parse_known(text: str) -> list[tuple[int, list[str]]]:
    """``"4:infection|other; 2:malignancy"`` -> [(4, ["infection", "other"]), (2, ["malignancy"])];
    ValueError with the reason when the text does not have that form."""
    out = []
    for part in (p.strip() for p in str(text).split(";") if p.strip()):
        count, sep, cats = part.partition(":")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"'{part}' is not count:trigger|trigger")
        out.append((int(count), [c.strip() for c in cats.split("|") if c.strip()]))
    return out


def _composition(mort: pd.DataFrame) -> list[Problem]:
    """What a source says about a stratum's unknown trigger mix: known triggers, known counts."""
    problems = []
    for row, rec in mort.iterrows():
        excluded_text, known_text = rec.get("trigger_excluded"), rec.get("trigger_known")
        given = [c for c, v in (("trigger_excluded", excluded_text), ("trigger_known", known_text)) if pd.notna(v)]
        if given and rec["trigger"] != "unknown":
            for col in given:
                problems.append(Problem(M, int(row), col, "applies only to a stratum whose trigger is 'unknown' "
                                                          f"(this one is '{rec['trigger']}')"))
            continue
        excluded = [c.strip() for c in str(excluded_text).split(";") if c.strip()] if pd.notna(excluded_text) else []
        for c in excluded:
            if c not in TRIGGERS:
                problems.append(Problem(M, int(row), "trigger_excluded", f"'{c}' is not a trigger ({', '.join(TRIGGERS)})"))
        if excluded and set(excluded) >= set(TRIGGERS):
            problems.append(Problem(M, int(row), "trigger_excluded", "excludes every trigger"))
        if pd.isna(known_text):
            continue
        try:
            parts = parse_known(known_text)
        except ValueError as exc:
            problems.append(Problem(M, int(row), "trigger_known", str(exc)))
            continue
        for count, cats in parts:
            bad = [c for c in cats if c not in TRIGGERS]
            if bad or not cats:
                problems.append(Problem(M, int(row), "trigger_known", f"'{'|'.join(cats)}' must name triggers "
                                                                       f"({', '.join(TRIGGERS)})"))
            if set(cats) & set(excluded):
                problems.append(Problem(M, int(row), "trigger_known", "names a trigger that trigger_excluded excludes"))
        total = sum(c for c, _ in parts)
        if pd.notna(rec["n"]) and total > rec["n"]:
            problems.append(Problem(M, int(row), "trigger_known", f"counts add up to {total}, more than n ({rec['n']})"))
    return problems


def _mortality(mort: pd.DataFrame, studies: pd.DataFrame) -> list[Problem]:
    problems = _composition(mort)
    n_of = studies.drop_duplicates("study_id").set_index("study_id")["n_patients"]
    for row, rec in mort.iterrows():
        method = rec["count_method"]
        if method not in _NEEDS:
            continue
        needs, forbids = _NEEDS[method]
        for col in needs:
            if pd.isna(rec[col]):
                problems.append(Problem(M, int(row), col, f"is empty but count_method '{method}' needs it"))
        for col in forbids:
            if pd.notna(rec[col]):
                problems.append(Problem(M, int(row), col, f"must be empty when count_method is '{method}'"))
        for col in ("deaths", "deaths_alternative"):
            if pd.notna(rec[col]) and pd.notna(rec["n"]) and rec[col] > rec["n"]:
                problems.append(Problem(M, int(row), col, f"{col} ({plain(rec[col])}) exceeds n ({plain(rec['n'])})"))
        total = n_of.get(rec["study_id"])
        if pd.notna(total) and pd.notna(rec["n"]) and rec["n"] > total:
            problems.append(Problem(M, int(row), "n", f"stratum n ({plain(rec['n'])}) exceeds the study's n_patients ({plain(total)})"))
        if method == "remainder":
            has_overall = ((mort["study_id"] == rec["study_id"]) & (mort["partition"] == "overall")).any()
            if not has_overall:
                problems.append(Problem(M, int(row), "count_method", "a remainder stratum needs an 'overall' row of the same study"))
    for (sid, part), group in mort.groupby(["study_id", "partition"], dropna=True):
        total = n_of.get(sid)
        if part == "overall" and len(group) > 1:
            problems.append(Problem(M, int(group.index[1]), "partition", f"study '{sid}' has more than one 'overall' row"))
        if (group["count_method"] == "remainder").sum() > 1:
            problems.append(Problem(M, int(group.index[-1]), "count_method", f"partition '{part}' of '{sid}' has more than one remainder stratum"))
        if pd.notna(total) and part != "overall":
            known = group["n"].dropna().sum()
            if known > total:
                rows = ", ".join(str(r) for r in group.index)
                problems.append(Problem(M, int(group.index[0]), "n",
                                        f"strata of partition '{part}' of '{sid}' (rows {rows}) add up to {plain(known)} patients, "
                                        f"more than the study's {plain(total)}: strata must be disjoint"))
    return problems


def _biomarkers(bio: pd.DataFrame, studies: pd.DataFrame) -> list[Problem]:
    problems = []
    n_of = studies.drop_duplicates("study_id").set_index("study_id")["n_patients"]
    for row, rec in bio.iterrows():
        for when in ("baseline", "followup"):
            if pd.notna(rec[f"{when}_sd"]) and pd.notna(rec[f"{when}_sem"]):
                problems.append(Problem(B, int(row), f"{when}_sem", f"give {when}_sd or {when}_sem, not both"))
        has_base, has_follow = pd.notna(rec["baseline_mean"]), pd.notna(rec["followup_mean"])
        if has_base != has_follow and pd.isna(rec["percent_decrease"]):
            missing = "followup_mean" if has_base else "baseline_mean"
            problems.append(Problem(B, int(row), missing, "only one time point: a change needs both means "
                                                          "(or one mean and percent_decrease)"))
        if pd.notna(rec["p_value"]) and pd.isna(rec["p_operator"]):
            problems.append(Problem(B, int(row), "p_operator", "is empty but p_value is given (=, < or <=)"))
        total = n_of.get(rec["study_id"])
        if pd.notna(total) and pd.notna(rec["n"]) and rec["n"] > total:
            problems.append(Problem(B, int(row), "n", f"n ({plain(rec['n'])}) exceeds the study's n_patients ({plain(total)})"))
    return problems


_ARM_NEEDS = {"reported": (("deaths", "n"), ()), "not_reported": ((), ("deaths",))}


def _arms(arms: pd.DataFrame, studies: pd.DataFrame) -> list[Problem]:
    """Each arm's counts as its count method needs them; a comparative source has one
    anakinra arm and one control arm of one design; the anakinra arm holds at most the
    study's patients given anakinra."""
    problems = []
    n_of = studies.drop_duplicates("study_id").set_index("study_id")["n_patients"]
    for row, rec in arms.iterrows():
        method = rec["count_method"]
        if method in _ARM_NEEDS:
            needs, forbids = _ARM_NEEDS[method]
            for col in needs:
                if pd.isna(rec[col]):
                    problems.append(Problem(A, int(row), col, f"is empty but count_method '{method}' needs it"))
            for col in forbids:
                if pd.notna(rec[col]):
                    problems.append(Problem(A, int(row), col, f"must be empty when count_method is '{method}'"))
        if pd.notna(rec["deaths"]) and pd.notna(rec["n"]) and rec["deaths"] > rec["n"]:
            problems.append(Problem(A, int(row), "deaths", f"deaths ({plain(rec['deaths'])}) exceeds n ({plain(rec['n'])})"))
        total = n_of.get(rec["study_id"])
        if rec["arm"] == "anakinra" and pd.notna(total) and pd.notna(rec["n"]) and rec["n"] > total:
            problems.append(Problem(A, int(row), "n", f"the anakinra arm ({plain(rec['n'])}) exceeds the study's "
                                                      f"n_patients ({plain(total)}, the patients given anakinra)"))
    for sid, group in arms.groupby("study_id", dropna=True, sort=False):
        present = set(group["arm"].dropna())
        missing = [a for a in ("anakinra", "control") if a not in present]
        if missing and present:
            problems.append(Problem(A, int(group.index[0]), "arm", f"study '{sid}' has no {missing[0]} arm: a comparative "
                                                                   "source needs an anakinra row and a control row"))
        if group["design"].dropna().nunique() > 1:
            problems.append(Problem(A, int(group.index[-1]), "design", f"the arms of '{sid}' have different designs "
                                                                       f"({', '.join(sorted(group['design'].dropna()))})"))
    return problems


def _without_outcomes(studies: pd.DataFrame, mortality: pd.DataFrame, biomarkers: pd.DataFrame,
                      arms: pd.DataFrame) -> list[Problem]:
    """A study with no row in any outcome table would vanish from every analysis without
    a trace (neither used nor listed as excluded): it is an error. A source that reports no
    outcome gets a mortality row with count_method 'not_reported', which keeps it visible."""
    reported = set(mortality["study_id"].dropna()) | set(biomarkers["study_id"].dropna()) | set(arms["study_id"].dropna())
    problems = []
    for row, sid in studies["study_id"].items():
        if pd.notna(sid) and sid not in reported:
            problems.append(Problem(S, int(row), "study_id",
                                    f"study '{sid}' has no row in {M} or {B} (nor in {A}); give it at least one (a {M} "
                                    "row with count_method 'not_reported' if the source reports no outcome)"))
    return problems


def check_dataset(studies: pd.DataFrame | None, mortality: pd.DataFrame | None,
                  biomarkers: pd.DataFrame | None, arms: pd.DataFrame | None) -> list[Problem]:
    """Problems that involve more than one row or table (given tables that parsed; None:
    a table that did not parse. An absent optional table is an empty frame, not None)."""
    if studies is None:
        return []
    problems = _studies(studies)
    known = set(studies["study_id"].dropna())
    if mortality is not None:
        problems += _unknown_ids(mortality, M, known) + _mortality(mortality, studies)
    if biomarkers is not None:
        problems += _unknown_ids(biomarkers, B, known) + _biomarkers(biomarkers, studies)
    if arms is not None:
        problems += _unknown_ids(arms, A, known) + _arms(arms, studies)
    if mortality is not None and biomarkers is not None and arms is not None:
        problems += _without_outcomes(studies, mortality, biomarkers, arms)
    return problems
