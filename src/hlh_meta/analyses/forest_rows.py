"""Rows of the forest plots of binomial analyses: labels, grade of source, counts as text,
exact intervals, and the subgroup summaries of a grouping column."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def group_name(column: str, value: str) -> str:
    """A forest-plot group heading, e.g. ``trigger: rheumatological``."""
    shown = "mixed or not reported" if value in ("unknown", "nan", "") else value.replace("_", " ")
    return f"{column.replace('_', ' ')}: {shown}"


def count_rows(used: pd.DataFrame, studies: pd.DataFrame | None, detail: str) -> pd.DataFrame:
    """Forest rows of a binomial table: label, grade of source, deaths/n (marked where the
    count is a reconstruction), the observed proportion with its exact (Clopper-Pearson)
    95% CI and the model's estimate, all in percent."""
    deaths, n = used["deaths"].to_numpy(float), used["n"].to_numpy(float)
    lo = np.where(deaths > 0, stats.beta.ppf(0.025, deaths, n - deaths + 1), 0) * 100
    hi = np.where(deaths < n, stats.beta.ppf(0.975, deaths + 1, n - deaths), 1) * 100
    grade = (studies.set_index("study_id")["grade"] if studies is not None and "grade" in studies
             else pd.Series(dtype=object))
    how = used["derivation"].astype(str) if "derivation" in used else pd.Series("reported count", index=used.index)
    return pd.DataFrame({
        "label": [f"{r.study_id}: {str(getattr(r, detail)).replace('_', ' ')}" for r in used.itertuples()],
        "study_id": used["study_id"].to_numpy(),
        "grade": [str(grade.get(s, "")).replace("_", " ") for s in used["study_id"]],
        "counts": [f"{int(a)}/{int(b)}" for a, b in zip(deaths, n)],
        "reconstructed": (~how.str.startswith("reported")).to_numpy(),
        "observed": 100 * deaths / n, "observed_lo": lo, "observed_hi": hi,
        "fitted": used["fitted_percent_mean"].to_numpy(), "fitted_lo": used["fitted_percent_q2_5"].to_numpy(),
        "fitted_hi": used["fitted_percent_q97_5"].to_numpy(), "group": ""})


def subgroup_table(p, data_used: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per level of ``column``: the model's mortality among the patients of those strata
    (the patient-weighted mean of the rows' fitted probabilities, per draw), with the
    strata, studies and patients behind it."""
    draws = p.stack(sample=("chain", "draw")).values           # rows x samples
    n = data_used["n"].to_numpy(float)
    out = []
    for value, idx in data_used.groupby(column, sort=False).indices.items():
        mix = (draws[idx] * n[idx, None]).sum(0) / n[idx].sum() * 100
        q = np.quantile(mix, [0.025, 0.5, 0.975])
        out.append({"group_by": column, "group": value, "strata": len(idx),
                    "studies": data_used["study_id"].iloc[idx].nunique(),
                    "deaths": int(data_used["deaths"].iloc[idx].sum()), "n": int(n[idx].sum()),
                    "median": q[1], "q2.5": q[0], "q97.5": q[2]})
    return pd.DataFrame(out)
