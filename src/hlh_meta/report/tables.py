"""Manuscript tables: rounded and labelled, an estimate with its interval in one cell.

The CSV files of a result keep full precision; these tables are what a manuscript or the
report shows, and ``tables.xlsx`` holds them one sheet each.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analyses.findings import VERDICTS, fmt_interval


def _title(name: str) -> str:
    return name.replace("_", " ")


def findings_table(sof: pd.DataFrame) -> pd.DataFrame:
    """The summary of findings, one row per outcome, a judgement and its reason per cell."""
    out = pd.DataFrame({
        "outcome": sof["outcome"], "studies (patients)": [f"{s} ({p})" for s, p in zip(sof["studies"], sof["patients"])],
        "estimate (95% CrI)": sof["estimate"], "new study (95% prediction interval)": sof["prediction_interval"],
        "data support": sof["support"], "design": sof["design"]})
    for v in VERDICTS:
        out[_title(v)] = [f"{a}: {b}" for a, b in zip(sof[v], sof[f"{v}_reason"])]
    out["certainty of evidence"] = sof["certainty"]
    return out


def quantities_table(derived: pd.DataFrame) -> pd.DataFrame:
    """Every derived quantity: estimate with its interval in one cell, its support and the
    studies and patients behind it."""
    out = pd.DataFrame({
        "outcome": derived["outcome"], "quantity": derived["quantity"], "profile or comparison": derived["label"],
        "median (95% CrI)": [fmt_interval(m, lo, hi, s) for m, lo, hi, s in
                             zip(derived["median"], derived["q2.5"], derived["q97.5"], derived["scale"])]})
    for col in [c for c in derived.columns if c.startswith("P(<")]:
        out[col] = derived[col].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    if "support" in derived:
        out["data support"] = derived["support"]
    for col, name in (("studies_informing", "studies informing"), ("patients_informing", "patients informing")):
        if col in derived:
            out[name] = derived[col].astype("Int64").astype(str).replace("<NA>", "")
    if "extrapolation" in derived:
        out["extrapolation"] = derived["extrapolation"].map({True: "yes", False: ""}).fillna("")
    return out


def _num(v: float, digits: int) -> str:
    return "" if pd.isna(v) else ("∞" if v == float("inf") else f"{v:.{digits}f}")


def heterogeneity_table(het: pd.DataFrame) -> pd.DataFrame:
    """The frequentist reference per outcome: Q, I², H², tau² and the pooled estimate, each
    with its 95% interval in one cell; an outcome with one study shows only its note."""
    def cell(mid, lo, hi, digits):
        return "" if pd.isna(mid) else f"{_num(mid, digits)} ({_num(lo, digits)} to {_num(hi, digits)})"

    return pd.DataFrame({
        "outcome": het["outcome"], "studies": het["studies"].astype(str),
        "Q (df)": ["" if pd.isna(q) else f"{q:.2f} ({d:.0f})" for q, d in zip(het["Q"], het["df"])],
        "p (Q)": ["<0.001" if p < 0.001 else _num(p, 3) for p in het["p_Q"]],
        "I² % (95% CI)": [cell(*v, 1) for v in zip(het["I2_percent"], het["I2_ci_low"], het["I2_ci_high"])],
        "H² (95% CI)": [cell(*v, 2) for v in zip(het["H2"], het["H2_ci_low"], het["H2_ci_high"])],
        "tau² (95% CI, Q-profile)": [cell(*v, 3) for v in zip(het["tau2"], het["tau2_ci_low"], het["tau2_ci_high"])],
        "pooled (95% CI, REML + Knapp-Hartung)": [
            "" if pd.isna(m) else f"{scale}: {cell(m, lo, hi, 1)}"
            for m, lo, hi, scale in zip(het["estimate"], het["ci_low"], het["ci_high"], het["scale"])],
        "note": ["" if pd.isna(v) else str(v) for v in het["note"]]})


def _blank(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values shown as empty cells, whatever the column's type."""
    return frame.astype(object).where(frame.notna(), "")


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Percent columns to one decimal, other floats to three significant digits."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            digits = 1 if "percent" in col else 3
            out[col] = out[col].map(lambda v, d=digits: "" if pd.isna(v) else
                                    (f"{v:.{d}f}" if d == 1 else f"{v:.3g}"))
    return out


def sensitivity_table(sens: pd.DataFrame) -> pd.DataFrame:
    scale = sens["key"].astype(str).map(lambda k: "percent" if k.startswith(("mortality", "reduction")) else "ratio")
    out = pd.DataFrame({"variant": sens["variant"], "family": sens["family"] if "family" in sens else "", "quantity": sens["quantity"],
                        "profile or comparison": sens["label"].fillna("") if "label" in sens else "",
                        "median (95% CrI)": [fmt_interval(m, lo, hi, str(s)) for m, lo, hi, s in
                                             zip(sens["median"], sens["q2.5"], sens["q97.5"], scale)]})
    return out


def manuscript_tables(result) -> dict[str, pd.DataFrame]:
    """Sheet name -> rounded table."""
    t = result.tables
    out = {}
    if "summary_of_findings" in t and len(t["summary_of_findings"]):
        out["summary of findings"] = findings_table(t["summary_of_findings"])
    out["estimates"] = quantities_table(t["derived"])
    if "subgroups" in t:
        sub = t["subgroups"]
        out["subgroups"] = pd.DataFrame({
            "group": sub["group_by"].astype(str) + ": " + sub["group"].astype(str),
            "strata (studies)": [f"{a} ({b})" for a, b in zip(sub["strata"], sub["studies"])],
            "deaths/n": [f"{d}/{n}" for d, n in zip(sub["deaths"], sub["n"])],
            "model mortality, these strata's patients (95% CrI)": [fmt_interval(m, lo, hi, "percent") for m, lo, hi in
                                                                   zip(sub["median"], sub["q2.5"], sub["q97.5"])]})
    if "studies" in t:
        out["studies"] = _blank(t["studies"])
    out["rows used"] = _blank(_rounded(t["data_used"]))
    if "excluded" in t:
        out["rows not used"] = _blank(t["excluded"])
    if "heterogeneity" in t:
        out["heterogeneity"] = heterogeneity_table(t["heterogeneity"])
    if "comparison" in t:
        out["covariate sets"] = _blank(_rounded(t["comparison"]))
    if "sensitivity" in t:
        out["sensitivity"] = sensitivity_table(t["sensitivity"][t["sensitivity"]["median"].notna()])
    if "robustness" in t:
        out["robustness"] = _blank(t["robustness"])
    return out


def write_xlsx(result, path: Path) -> Path:
    """``tables.xlsx``: one sheet per manuscript table, columns sized to their content."""
    tables = manuscript_tables(result)
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        for name, frame in tables.items():
            frame.to_excel(xl, sheet_name=name[:31], index=False)
            sheet = xl.sheets[name[:31]]
            for i, col in enumerate(frame.columns, start=1):
                width = max([len(str(col))] + [len(str(v)) for v in frame[col].head(200)])
                sheet.column_dimensions[sheet.cell(1, i).column_letter].width = min(max(width + 2, 8), 60)
    return path


