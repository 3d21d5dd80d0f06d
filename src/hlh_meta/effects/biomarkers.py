"""Biomarker changes from the extraction table: log ratio of means and its standard error.

Each row of ``biomarkers.csv`` is resolved to the log ratio (follow-up / baseline) and
the paired-design standard error, with every derived input named in ``derivation``:
a baseline mean from a printed percent decrease, an SD from an SEM, a baseline SD from a
paired-t p-value, or (when a study reports no dispersion at all) an SD imputed from the
coefficient of variation of the studies that do report one.

The pre/post correlation r of the paired variance is estimated where a row allows it (both
SDs and an exact paired-t p-value: the SD of the differences the p-value implies fixes r);
elsewhere it is the assumed ``r`` (``correlation_source`` says which).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import Dataset
from ..data.judgements import judged_rows
from ..errors import DataError, InputError, Problem, plain
from . import (baseline_from_percent_change, log_ratio_paired, sd_baseline_from_paired, sd_diff_from_paired_p,
               sd_from_sem)

MISSING_DISPERSION = ("impute_cv", "exclude")

#: Which direction of change is improvement, per biomarker (as named in ``biomarkers.csv``):
#: ``"fall"`` for CRP and ferritin, which fall as the inflammation is controlled; ``None``
#: where no direction is assumed. Fibrinogen is an acute-phase reactant, so it falls as
#: inflammation settles, but it is also consumed in HLH, where a low fibrinogen
#: (<= 1.5 g/L, HLH-2004) is a diagnostic criterion: a fall may mean either, so a fall of
#: fibrinogen is never reported as a benefit. A biomarker not listed has no declared direction.
IMPROVEMENT: dict[str, str | None] = {"crp": "fall", "ferritin": "fall", "fibrinogen": None}
#: what a change means, in words, where a sentence is needed beyond :data:`IMPROVEMENT`
MEANING = {
    "fibrinogen": ("A fall of fibrinogen is not counted as benefit: fibrinogen falls as inflammation settles (it is "
                   "an acute-phase reactant) but also when it is consumed, and a low fibrinogen (at most 1.5 g/L) is "
                   "an HLH diagnostic criterion (HLH-2004); a change of the mean cannot tell the two apart"),
}


def improvement(biomarker: str) -> str | None:
    """``"fall"`` where a fall of the biomarker is improvement, else None (no direction assumed)."""
    return IMPROVEMENT.get(str(biomarker).lower())


def meaning(biomarker: str, name: str | None = None) -> str:
    """What a change of the biomarker means, as a sentence (the direction of improvement, or why
    none is assumed); ``name``: the biomarker as shown (default: as given)."""
    key, name = str(biomarker).lower(), name or str(biomarker)
    if key in MEANING:
        return MEANING[key]
    if improvement(key) == "fall":
        return f"A fall of {name} is the direction of improvement (it falls as the inflammation is controlled)"
    return f"No direction of improvement is declared for {name}: its change is reported as a change, not a benefit"
COLUMNS = ["study_id", "biomarker", "unit", "n", "baseline_mean", "followup_mean", "baseline_sd", "followup_sd",
           "yi", "sei", "percent_change", "correlation", "correlation_source", "usable", "reason", "dispersion",
           "derivation", "judgements", "row"]
B = "biomarkers.csv"


def _sd(rec: pd.Series, when: str, notes: list[str], given: list[str]) -> float:
    if pd.notna(rec[f"{when}_sd"]):
        given.append(f"{when}_sd")
        return float(rec[f"{when}_sd"])
    if pd.notna(rec[f"{when}_sem"]):
        given.append(f"{when}_sem")
        notes.append(f"{when} SD = SEM x sqrt(n)")
        return float(sd_from_sem(float(rec[f"{when}_sem"]), int(rec["n"])))
    return np.nan


def estimated_correlation(m1: float, m2: float, sd1: float, sd2: float, n: int, p: float) -> float | None:
    """The pre/post correlation that two SDs and an exact two-sided paired-t p-value imply:
    ``r = (sd1^2 + sd2^2 - sd_d^2) / (2 sd1 sd2)`` with ``sd_d`` the SD of the differences the
    p-value gives; None where no r in [-1, 1] fits (or nothing fixes it)."""
    if not (0 < p < 1) or m1 == m2 or sd1 <= 0 or sd2 <= 0:
        return None
    sd1, sd2 = np.float64(sd1), np.float64(sd2)       # numpy floats: an overflow gives inf, not an exception
    with np.errstate(all="ignore"):
        sd_d = np.float64(sd_diff_from_paired_p(m1, m2, n, p))
        r = (sd1**2 + sd2**2 - sd_d**2) / (2 * sd1 * sd2)
    return float(r) if -1 <= r <= 1 else None


def _resolve_row(rec: pd.Series, r: float, problems: list[Problem]) -> dict:
    notes: list[str] = []
    row = int(rec.name)
    out = {c: rec[c] for c in ("study_id", "biomarker", "unit", "n")} | {"row": row, "_given": []}
    m2 = rec["followup_mean"]
    m1 = rec["baseline_mean"]
    if pd.isna(m1) and pd.notna(m2) and pd.notna(rec["percent_decrease"]):
        m1 = float(baseline_from_percent_change(float(m2), float(rec["percent_decrease"])))
        notes.append(f"baseline mean = follow-up / (1 - {rec['percent_decrease']:g}%)")
    if pd.isna(m1) or pd.isna(m2):
        return out | {"usable": False, "reason": "means not reported", "dispersion": "none", "derivation": ""}
    failed = out | {"usable": False, "reason": "cannot be resolved", "dispersion": "none", "derivation": "", "_failed": True}
    if int(rec["n"]) < 2:
        problems.append(Problem(B, row, "n", f"a change in {plain(rec['n'])} patient has no standard error: a row with "
                                             "both means needs n of at least 2"))
        return failed
    m1, m2 = float(m1), float(m2)
    given: list[str] = []
    sd1, sd2 = _sd(rec, "baseline", notes, given), _sd(rec, "followup", notes, given)
    p = rec["p_value"]
    if np.isnan(sd1) != np.isnan(sd2) and pd.notna(p) and m1 != m2:
        if float(p) >= 1:
            notes.append(f"p = {float(p):g} carries no information on the SD")
        else:
            sd_d = float(sd_diff_from_paired_p(m1, m2, int(rec["n"]), float(p)))
            bound = " at its bound (conservative)" if rec["p_operator"] != "=" else ""
            missing, known = ("baseline", "follow-up") if np.isnan(sd1) else ("follow-up", "baseline")
            try:
                solved = float(sd_baseline_from_paired(sd_d, sd2 if np.isnan(sd1) else sd1, r))
            except InputError:
                other = sd2 if np.isnan(sd1) else sd1
                problems.append(Problem(B, row, "p_value",
                                        f"the paired-t p = {float(p):g} with the {known} SD {other:.4g} and r = {r:g} "
                                        f"admits no {missing} SD: the SD of the differences it implies ({sd_d:.4g}) is "
                                        f"below {known} SD x sqrt(1 - r^2) ({other * np.sqrt(1 - r**2):.4g}); check "
                                        "p_value, p_operator, the means and the dispersion"))
                return failed
            if np.isnan(sd1):
                sd1 = solved
            else:
                sd2 = solved
            notes.append(f"{missing} SD from the paired-t p = {float(p):g}{bound}, {known} SD and r = {r:g}")
    dispersion = "reported" if not notes or all("SEM" in n for n in notes) else "derived"
    if np.isnan(sd1) or np.isnan(sd2):
        dispersion = "none"
    row_r, source = r, "assumed"
    if dispersion == "reported" and pd.notna(p) and rec["p_operator"] == "=":
        fitted = estimated_correlation(m1, m2, sd1, sd2, int(rec["n"]), float(p))
        if fitted is not None:
            row_r, source = fitted, "estimated"
            notes.append(f"r = {fitted:.2f} estimated from the two SDs and the paired-t p = {float(p):g}")
    if not 0 < m2 / m1 < np.inf:
        problems.append(_too_far(rec, ["baseline_mean", "followup_mean"], "the ratio of the means"))
        return failed
    return out | {"baseline_mean": m1, "followup_mean": m2, "baseline_sd": sd1, "followup_sd": sd2,
                  "correlation": row_r, "correlation_source": source,
                  "yi": float(np.log(m2 / m1)), "percent_change": 100 * (m2 / m1 - 1),
                  "usable": True, "reason": "", "dispersion": dispersion, "derivation": "; ".join(notes),
                  "_given": given}


def _too_far(rec: pd.Series, columns: list[str], what: str) -> Problem:
    """A row whose numbers lie so far apart in size that ``what`` derived from them overflows:
    names the cell of ``columns`` farthest from 1 in orders of magnitude (a wrong unit, a typo)."""
    values = {c: float(rec[c]) for c in columns if pd.notna(rec[c]) and float(rec[c]) > 0}
    worst = max(values, key=lambda c: abs(np.log10(values[c])), default=columns[0])
    others = ", ".join(f"{c} {plain(v)}" for c, v in values.items() if c != worst)
    return Problem(B, int(rec.name), worst, f"{plain(rec[worst])} is too far in size from the row's other numbers "
                                            f"({others}) for {what} to be computed (it overflows); check the value and "
                                            "its unit")


def _zero_se(rec: pd.Series, given: list[str], r: float) -> Problem:
    """A resolved row whose log ratio would have a standard error of 0 (or none that is finite)."""
    sds = f"baseline SD {plain(rec['baseline_sd'])}, follow-up SD {plain(rec['followup_sd'])}"
    if rec["dispersion"] == "imputed":
        return Problem(B, int(rec["row"]), "baseline_sd",
                       f"the standard error of the log ratio is {plain(rec['sei'])} ({sds}: {rec['derivation']}); "
                       "the reported dispersions it is imputed from are 0")
    zero = [c for c in given if float(rec[c.replace("_sem", "_sd")]) == 0] or given
    cells = " and ".join(zero) if zero else "the dispersion"
    return Problem(B, int(rec["row"]), (zero or given or ["baseline_sd"])[0],
                   f"the standard error of the log ratio is {plain(rec['sei'])} ({sds}, r = {r:g}): a change known "
                   f"exactly cannot be weighted; check {cells}, or leave the dispersion empty if the source "
                   "does not report it")


def resolve_biomarkers(ds: Dataset, *, r: float = 0.5, missing_dispersion: str = "impute_cv") -> pd.DataFrame:
    """One row per row of ``biomarkers.csv`` with ``yi`` (log ratio) and ``sei``.

    ``missing_dispersion``: ``"impute_cv"`` gives a study without any SD the mean
    coefficient of variation (SD / mean, baseline and follow-up) of the rows of the same
    biomarker that have one (all biomarkers if none); ``"exclude"`` leaves it out.

    Raises :class:`~hlh_meta.errors.DataError` listing every row that cannot be resolved
    (a zero standard error, n below 2 with both means, a p-value no SD fits), each with
    file, row and column.
    """
    if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)) or not -1 <= r <= 1:
        raise InputError(f"correlation r must be a number in [-1, 1], got {plain(r)}")
    r = float(r)
    if missing_dispersion not in MISSING_DISPERSION:
        raise InputError(f"missing_dispersion must be one of {', '.join(MISSING_DISPERSION)}, got {plain(missing_dispersion)}")
    with np.errstate(all="ignore"):        # a number that overflows is reported as a problem of its cell, not warned
        return _resolve(ds, r, missing_dispersion)


def _resolve(ds: Dataset, r: float, missing_dispersion: str) -> pd.DataFrame:
    problems: list[Problem] = []
    rows = pd.DataFrame([_resolve_row(rec, r, problems) for _, rec in ds.biomarkers.iterrows()],
                        index=ds.biomarkers.index)
    given = rows["_given"] if "_given" in rows else pd.Series([[]] * len(rows), index=rows.index, dtype=object)
    failed = rows["_failed"].fillna(False).astype(bool) if "_failed" in rows else pd.Series(False, index=rows.index)
    rows["judgements"] = judged_rows(ds, B)
    rows = rows.reindex(columns=COLUMNS)
    has = rows["usable"].astype(bool) & (rows["dispersion"] != "none")
    cv = pd.concat([rows.loc[has, "baseline_sd"] / rows.loc[has, "baseline_mean"],
                    rows.loc[has, "followup_sd"] / rows.loc[has, "followup_mean"]])
    cv_by = pd.concat([rows.loc[has, "biomarker"]] * 2)
    for i in rows.index[rows["usable"].astype(bool) & (rows["dispersion"] == "none")]:
        if missing_dispersion == "exclude":
            rows.loc[i, ["usable", "reason"]] = [False, "no dispersion reported (excluded by choice)"]
            continue
        same = cv[cv_by == rows.at[i, "biomarker"]]
        pool = same if len(same) else cv
        if pool.empty:
            rows.loc[i, ["usable", "reason"]] = [False, "no dispersion reported and none to impute from"]
            continue
        c = float(pool.mean())
        for when in ("baseline", "followup"):
            if pd.isna(rows.at[i, f"{when}_sd"]):
                rows.at[i, f"{when}_sd"] = c * rows.at[i, f"{when}_mean"]
        src = "the same biomarker" if len(same) else "all biomarkers"
        rows.at[i, "dispersion"] = "imputed"
        imputed = f"SDs imputed with CV {c:.2f} (mean of {len(pool)} reported CVs of {src})"
        rows.at[i, "derivation"] = "; ".join(filter(None, [rows.at[i, "derivation"], imputed]))
    ok = rows["usable"].astype(bool)
    for i in rows.index[ok]:
        row_r = float(rows.at[i, "correlation"])
        eff = log_ratio_paired(rows.at[i, "baseline_mean"], rows.at[i, "baseline_sd"], rows.at[i, "followup_mean"],
                               rows.at[i, "followup_sd"], int(rows.at[i, "n"]), r=row_r)
        rows.at[i, "sei"] = float(eff.sei)
        if not np.isfinite(rows.at[i, "sei"]) and rows.at[i, "dispersion"] != "imputed":
            problems.append(_too_far(ds.biomarkers.loc[i], ["baseline_mean", "followup_mean", *given[i]],
                                     "the standard error of the log ratio"))
        elif not np.isfinite(rows.at[i, "sei"]) or rows.at[i, "sei"] <= 0:
            problems.append(_zero_se(rows.loc[i], given[i], r))
    if problems or failed.any():
        raise DataError(sorted(problems, key=lambda p: p.row or 0))
    return rows
