"""Biomarker changes from the extraction table: log ratio of means and its standard error.

Each row of ``biomarkers.csv`` is resolved to the log ratio (follow-up / baseline) and
the paired-design standard error, with every derived input named in ``derivation``:
a baseline mean from a printed percent decrease, an SD from an SEM, a baseline SD from a
paired-t p-value, or (when a study reports no dispersion at all) an SD imputed from the
coefficient of variation of the studies that do report one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import Dataset
from . import (baseline_from_percent_change, log_ratio_paired, sd_baseline_from_paired, sd_diff_from_paired_p,
               sd_from_sem)

MISSING_DISPERSION = ("impute_cv", "exclude")
COLUMNS = ["study_id", "biomarker", "unit", "n", "baseline_mean", "followup_mean", "baseline_sd", "followup_sd",
           "yi", "sei", "percent_change", "usable", "reason", "dispersion", "derivation", "row"]


def _sd(rec: pd.Series, when: str, notes: list[str]) -> float:
    if pd.notna(rec[f"{when}_sd"]):
        return float(rec[f"{when}_sd"])
    if pd.notna(rec[f"{when}_sem"]):
        notes.append(f"{when} SD = SEM x sqrt(n)")
        return float(sd_from_sem(float(rec[f"{when}_sem"]), int(rec["n"])))
    return np.nan


def _resolve_row(rec: pd.Series, r: float) -> dict:
    notes: list[str] = []
    out = {c: rec[c] for c in ("study_id", "biomarker", "unit", "n")} | {"row": int(rec.name)}
    m2 = rec["followup_mean"]
    m1 = rec["baseline_mean"]
    if pd.isna(m1) and pd.notna(m2) and pd.notna(rec["percent_decrease"]):
        m1 = float(baseline_from_percent_change(float(m2), float(rec["percent_decrease"])))
        notes.append(f"baseline mean = follow-up / (1 - {rec['percent_decrease']:g}%)")
    if pd.isna(m1) or pd.isna(m2):
        return out | {"usable": False, "reason": "means not reported", "dispersion": "none", "derivation": ""}
    m1, m2 = float(m1), float(m2)
    sd1, sd2 = _sd(rec, "baseline", notes), _sd(rec, "followup", notes)
    p_ok = pd.notna(rec["p_value"]) and int(rec["n"]) > 1 and m1 != m2
    if np.isnan(sd1) != np.isnan(sd2) and p_ok:
        sd_d = float(sd_diff_from_paired_p(m1, m2, int(rec["n"]), float(rec["p_value"])))
        bound = " at its bound (conservative)" if rec["p_operator"] != "=" else ""
        if np.isnan(sd1):
            sd1 = float(sd_baseline_from_paired(sd_d, sd2, r))
            notes.append(f"baseline SD from the paired-t p = {rec['p_value']:g}{bound}, follow-up SD and r = {r:g}")
        else:
            sd2 = float(sd_baseline_from_paired(sd_d, sd1, r))
            notes.append(f"follow-up SD from the paired-t p = {rec['p_value']:g}{bound}, baseline SD and r = {r:g}")
    dispersion = "reported" if not notes or all("SEM" in n for n in notes) else "derived"
    if np.isnan(sd1) or np.isnan(sd2):
        dispersion = "none"
    return out | {"baseline_mean": m1, "followup_mean": m2, "baseline_sd": sd1, "followup_sd": sd2,
                  "yi": float(np.log(m2 / m1)), "percent_change": 100 * (m2 / m1 - 1),
                  "usable": True, "reason": "", "dispersion": dispersion, "derivation": "; ".join(notes)}


def resolve_biomarkers(ds: Dataset, *, r: float = 0.5, missing_dispersion: str = "impute_cv") -> pd.DataFrame:
    """One row per row of ``biomarkers.csv`` with ``yi`` (log ratio) and ``sei``.

    ``missing_dispersion``: ``"impute_cv"`` gives a study without any SD the mean
    coefficient of variation (SD / mean, baseline and follow-up) of the rows of the same
    biomarker that have one (all biomarkers if none); ``"exclude"`` leaves it out.
    """
    if not -1 <= r <= 1:
        raise ValueError(f"correlation r must be in [-1, 1], got {r}")
    if missing_dispersion not in MISSING_DISPERSION:
        raise ValueError(f"missing_dispersion must be one of {', '.join(MISSING_DISPERSION)}")
    rows = pd.DataFrame([_resolve_row(rec, r) for _, rec in ds.biomarkers.iterrows()], index=ds.biomarkers.index)
    rows = rows.reindex(columns=COLUMNS)
    has = rows["usable"] & (rows["dispersion"] != "none")
    cv = pd.concat([rows.loc[has, "baseline_sd"] / rows.loc[has, "baseline_mean"],
                    rows.loc[has, "followup_sd"] / rows.loc[has, "followup_mean"]])
    cv_by = pd.concat([rows.loc[has, "biomarker"]] * 2)
    for i in rows.index[rows["usable"] & (rows["dispersion"] == "none")]:
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
        rows.at[i, "derivation"] = f"SDs imputed with CV {c:.2f} (mean of {len(pool)} reported CVs of {src})"
    ok = rows["usable"].astype(bool)
    for i in rows.index[ok]:
        eff = log_ratio_paired(rows.at[i, "baseline_mean"], rows.at[i, "baseline_sd"], rows.at[i, "followup_mean"],
                               rows.at[i, "followup_sd"], int(rows.at[i, "n"]), r=r)
        rows.at[i, "sei"] = float(eff.sei)
    return rows
