"""The frequentist heterogeneity reference (analyses/heterogeneity.py) against metafor.

Reference values are metafor's printed output (metafor 3.8-1, R 4.2.2), from this script:

    library(metafor)
    dat <- escalc(measure="RR", ai=tpos, bi=tneg, ci=cpos, di=cneg, data=dat.bcg)
    res <- rma(yi, vi, data=dat, method="REML", test="knha"); print(res, digits=4)
    confint(res, digits=4)
    res2 <- rma(yi, vi, data=dat, subset=1:2, method="REML", test="knha"); print(res2, digits=4)
    confint(res2, digits=4)
    print(rma(yi, vi, data=dat, subset=1:2, method="REML", test="adhoc"), digits=4)
    res3 <- rma(measure="PLO", xi=ai, ni=n1i, data=dat.nielweise2007, method="REML", test="knha")
    print(res3, digits=4); confint(res3, digits=4); predict(res3, transf=transf.ilogit, digits=4)

It printed, for dat.bcg (13 trials):

    tau^2 0.3132 (SE = 0.1664), tau 0.5597, I^2 92.22%, H^2 12.86
    Q(df = 12) = 152.2330, p-val < .0001
    estimate -0.7145  se 0.1808  tval -3.9522  df 12  pval 0.0019  ci.lb -1.1084  ci.ub -0.3206
           estimate   ci.lb   ci.ub
    tau^2    0.3132  0.1197  1.1115
    tau      0.5597  0.3460  1.0543
    I^2(%)  92.2214 81.9177 97.6781
    H^2     12.8558  5.5303 43.0680

(without test="knha": se 0.1798, ci -1.0669 to -0.3622; the tau^2 interval and the DL-based
I^2 of 92.1173 are also in metafor's tests/testthat/test_misc_confint.r and
test_misc_metan_vs_rma.uni_with_dat.bcg.r). For the first two trials of dat.bcg:

    tau^2 0, I^2 0.00%, H^2 1.00, Q(df = 1) = 0.9315, p-val = 0.3345
    estimate -1.3250  se 0.3368  tval -3.9339  df 1  pval 0.1585  ci.lb -5.6047  ci.ub 2.9547
    tau^2  0.0000 0.0000 >100.0000     (metafor searches tau^2 up to 100)

and with test="adhoc" (the Knapp-Hartung factor, here 0.9315, floored at 1):

    estimate -1.3250  se 0.3490  tval -3.7967  df 1  pval 0.1640  ci.lb -5.7593  ci.ub 3.1093

For dat.nielweise2007, catheter-related infections in the treated arms (ai/n1i, 18 trials,
7 with no event; escalc's default adds 1/2 to both cells of those):

    tau^2 0.3928 (SE = 0.3740), I^2 37.60%, H^2 1.60, Q(df = 17) = 23.6710, p-val = 0.1287
    estimate -4.2604  se 0.2276  tval -18.7214  df 17  pval <.0001  ci.lb -4.7406  ci.ub -3.7803
           estimate  ci.lb   ci.ub
    tau^2    0.3928 0.0000  1.1310
    I^2(%)  37.6037 0.0000 63.4415
    H^2      1.6027 1.0000  2.7353
    pred 0.0139  ci.lb 0.0087  ci.ub 0.0223     (transf.ilogit)

The counts below are metafor's data sets as it prints them (dat.bcg: Colditz et al. 1994,
JAMA 271:698-702; dat.nielweise2007: Niel-Weise et al. 2007, J Antimicrob Chemother
60:1001-1009). metafor finds the Q-profile bounds with uniroot's default tolerance (about
1e-4 in tau²), so the bounds of I² and H² derived from them agree to about 0.01.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from hlh_meta.analyses.heterogeneity import (ONE_STUDY, TWO_STUDIES, biomarker_heterogeneity,
                                             mortality_heterogeneity, random_effects)

# dat.bcg: vaccinated tb+ / tb-, control tb+ / tb-
TPOS = [4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27]
TNEG = [119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886]
CPOS = [11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29]
CNEG = [128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825]
# dat.nielweise2007: events and patients of the treated arm
AI = [0, 1, 2, 0, 5, 1, 1, 1, 1, 1, 0, 0, 3, 6, 0, 0, 1, 4]
N1I = [116, 44, 208, 130, 151, 98, 174, 74, 97, 113, 66, 70, 188, 187, 118, 252, 345, 64]


def bcg_log_rr() -> tuple[np.ndarray, np.ndarray]:
    """escalc(measure="RR"): log risk ratio and its large-sample variance."""
    a, b, c, d = (np.array(v, float) for v in (TPOS, TNEG, CPOS, CNEG))
    return np.log(a / (a + b)) - np.log(c / (c + d)), 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)


def test_bcg_agrees_with_metafor_reml_knapp_hartung_and_q_profile():
    r = random_effects(*bcg_log_rr())
    assert r["studies"] == 13 and r["df"] == 12
    assert r["Q"] == pytest.approx(152.2330, abs=1e-4)
    assert r["p_Q"] < 1e-4
    assert r["tau2"] == pytest.approx(0.3132, abs=1e-4)
    assert r["tau"] == pytest.approx(0.5597, abs=1e-4)
    assert r["I2_percent"] == pytest.approx(92.2214, abs=1e-4)
    assert r["H2"] == pytest.approx(12.8558, abs=1e-4)
    assert r["I2_from_Q_percent"] == pytest.approx(92.1173, abs=1e-4)   # metafor's DL I², the Q-based one
    assert r["estimate_link"] == pytest.approx(-0.7145, abs=1e-4)
    assert r["se_link"] == pytest.approx(0.1808, abs=1e-4)
    assert (r["ci_low_link"], r["ci_high_link"]) == pytest.approx((-1.1084, -0.3206), abs=1e-4)
    assert (r["tau2_ci_low"], r["tau2_ci_high"]) == pytest.approx((0.1197, 1.1115), abs=1e-4)
    assert (r["I2_ci_low"], r["I2_ci_high"]) == pytest.approx((81.9177, 97.6781), abs=0.01)
    assert (r["H2_ci_low"], r["H2_ci_high"]) == pytest.approx((5.5303, 43.0680), abs=0.01)


def test_two_studies_are_computed_and_flagged():
    yi, vi = bcg_log_rr()
    r = random_effects(yi[:2], vi[:2])
    assert r["Q"] == pytest.approx(0.9315, abs=1e-4) and r["p_Q"] == pytest.approx(0.3345, abs=1e-4)
    assert r["tau2"] == 0 and r["I2_percent"] == 0 and r["H2"] == 1
    assert r["se_link"] == pytest.approx(0.3368, abs=1e-4)
    assert (r["ci_low_link"], r["ci_high_link"]) == pytest.approx((-5.6047, 2.9547), abs=1e-4)
    assert r["tau2_ci_low"] == 0 and r["tau2_ci_high"] > 100          # metafor prints ">100.0000"
    assert r["knha_factor"] == pytest.approx(0.9315, abs=1e-4)
    assert r["ci_floored_link"] == pytest.approx((-5.7593, 3.1093), abs=1e-4)
    rows = pd.DataFrame({"study_id": ["a", "b"], "biomarker": "crp", "yi": yi[:2], "sei": np.sqrt(vi[:2])})
    note = biomarker_heterogeneity(rows).loc[0, "note"]
    assert TWO_STUDIES in note
    shown = re.search(r"Knapp-Hartung factor 0.93 .* floored at 1 \(Röver et al. 2015\) it is (\S+) to (\S+)$", note)
    assert [float(v) for v in shown.groups()] == pytest.approx(sorted(100 * (1 - np.exp([-5.7593, 3.1093]))), rel=1e-3)


def test_no_floored_interval_note_when_the_knapp_hartung_factor_is_above_one():
    yi, vi = bcg_log_rr()
    rows = pd.DataFrame({"study_id": range(13), "biomarker": "crp", "yi": yi, "sei": np.sqrt(vi)})
    assert random_effects(yi, vi)["knha_factor"] > 1
    assert biomarker_heterogeneity(rows).loc[0, "note"] == ""


def test_proportions_with_zero_cells_agree_with_metafor_plo():
    rows = pd.DataFrame({"study_id": range(len(AI)), "deaths": AI, "n": N1I})
    het = mortality_heterogeneity(rows)
    assert len(het) == 1
    r = het.iloc[0]
    assert r["outcome"] == "mortality" and r["studies"] == 18 and r["link"] == "logit"
    assert r["Q"] == pytest.approx(23.6710, abs=1e-4) and r["p_Q"] == pytest.approx(0.1287, abs=1e-4)
    assert r["tau2"] == pytest.approx(0.3928, abs=1e-4)
    assert r["I2_percent"] == pytest.approx(37.6037, abs=1e-4) and r["H2"] == pytest.approx(1.6027, abs=1e-4)
    assert r["estimate_link"] == pytest.approx(-4.2604, abs=1e-4) and r["se_link"] == pytest.approx(0.2276, abs=1e-4)
    assert (r["ci_low_link"], r["ci_high_link"]) == pytest.approx((-4.7406, -3.7803), abs=1e-4)
    assert (r["tau2_ci_low"], r["tau2_ci_high"]) == pytest.approx((0.0, 1.1310), abs=1e-4)
    assert (r["I2_ci_low"], r["I2_ci_high"]) == pytest.approx((0.0, 63.4415), abs=0.01)
    assert (r["H2_ci_low"], r["H2_ci_high"]) == pytest.approx((1.0, 2.7353), abs=0.01)
    assert (r["estimate"], r["ci_low"], r["ci_high"]) == pytest.approx((1.39, 0.87, 2.23), abs=0.005)  # percent
    zero = [i for i, a in enumerate(AI) if a == 0]
    assert r["note"].startswith(f"0.5 added to the cells of {', '.join(map(str, zero))} (no or only deaths)")
    assert "logit" in r["method"] and "Knapp-Hartung" in r["method"] and "strata summed" in r["method"]


def test_a_study_with_only_deaths_is_corrected_and_the_others_are_not():
    rows = pd.DataFrame({"study_id": ["a", "b", "c"], "deaths": [3, 2, 5], "n": [3, 10, 12]})
    het = mortality_heterogeneity(rows).iloc[0]
    assert het["note"].startswith("0.5 added to the cells of a ")
    yi = np.log([3.5 / 0.5, 2 / 8, 5 / 7])
    vi = np.array([1 / 3.5 + 1 / 0.5, 1 / 2 + 1 / 8, 1 / 5 + 1 / 7])
    assert het["estimate_link"] == pytest.approx(random_effects(yi, vi)["estimate_link"], rel=1e-12)


def test_strata_of_a_study_enter_as_one_study():
    strata = pd.DataFrame({"study_id": ["a", "a", "b", "c", "c", "c"], "deaths": [0, 3, 2, 1, 4, 2],
                           "n": [13, 3, 10, 6, 9, 5]})
    summed = strata.groupby("study_id", as_index=False)[["deaths", "n"]].sum()
    by_strata, by_study = mortality_heterogeneity(strata), mortality_heterogeneity(summed)
    assert by_strata.loc[0, "studies"] == 3
    pd.testing.assert_frame_equal(by_strata, by_study)


@pytest.mark.parametrize("k", [0, 1])
def test_fewer_than_two_studies_say_so_instead_of_numbers(k):
    mort = mortality_heterogeneity(pd.DataFrame({"study_id": ["a", "a"][:k], "deaths": [1, 2][:k], "n": [5, 7][:k]}))
    bio = biomarker_heterogeneity(pd.DataFrame({"study_id": ["a"] * 2, "biomarker": ["crp", "ferritin"],
                                                "yi": [-1.1, -0.8], "sei": [0.4, 0.2]}))
    for row in [mort.iloc[0]] + ([bio.iloc[0], bio.iloc[1]] if k else []):
        assert row["note"].startswith(ONE_STUDY if k else "not estimable (no study)")
        assert row[["Q", "I2_percent", "tau2", "estimate", "ci_low"]].isna().all()


def test_biomarkers_one_row_each_and_reduction_bounds_in_order():
    yi, vi = bcg_log_rr()
    rows = pd.DataFrame({"study_id": [f"s{i}" for i in range(13)] + ["s0"], "biomarker": ["ferritin"] * 13 + ["crp"],
                         "yi": list(yi) + [-0.5], "sei": list(np.sqrt(vi)) + [0.3]})
    het = biomarker_heterogeneity(rows).set_index("outcome")
    assert list(het.index) == ["ferritin", "crp"]
    f = het.loc["ferritin"]
    assert f["studies"] == 13 and f["tau2"] == pytest.approx(0.3132, abs=1e-4)
    assert f["estimate"] == pytest.approx(100 * (1 - np.exp(-0.7145)), abs=0.01)
    assert (f["ci_low"], f["ci_high"]) == pytest.approx((100 * (1 - np.exp(-0.3206)), 100 * (1 - np.exp(-1.1084))),
                                                        abs=0.01)
    assert f["scale"] == "reduction (%)" and f["link"] == "log ratio"
    assert het.loc["crp", "note"] == ONE_STUDY


def test_results_folder_and_report_carry_the_heterogeneity_table(tmp_path):
    import hlh_meta as hm
    from pathlib import Path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = hm.run_analysis(Path(__file__).parent / "specs" / "biomarkers_small.toml")
        folder = result.save(tmp_path / "biomarkers")
    used, het = result.tables["data_used"], result.tables["heterogeneity"]
    assert list(het["outcome"]) == list(pd.unique(used["biomarker"]))
    for _, row in het.iterrows():
        mine = used[used["biomarker"] == row["outcome"]]
        assert row["studies"] == mine["study_id"].nunique()
        if row["studies"] >= 2:
            ref = random_effects(mine["yi"], mine["sei"] ** 2)
            assert row["tau2"] == pytest.approx(ref["tau2"]) and row["Q"] == pytest.approx(ref["Q"])
        else:
            assert row["note"].startswith(ONE_STUDY)
    saved = pd.read_csv(folder / "heterogeneity.csv")
    assert list(saved["outcome"]) == list(het["outcome"])
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert 'id="heterogeneity"' in html and "frequentist reference figures" in html and "not a replacement" in html
    assert "heterogeneity" in pd.ExcelFile(folder / "tables.xlsx").sheet_names


def test_manuscript_table_reads_a_saved_table(tmp_path):
    from hlh_meta.report.tables import heterogeneity_table

    yi, vi = bcg_log_rr()
    rows = pd.DataFrame({"study_id": list(range(13)) + [0], "biomarker": ["ferritin"] * 13 + ["crp"],
                         "yi": list(yi) + [-0.5], "sei": list(np.sqrt(vi)) + [0.3]})
    path = tmp_path / "heterogeneity.csv"
    biomarker_heterogeneity(rows).to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shown = heterogeneity_table(pd.read_csv(path)).set_index("outcome")
    assert shown.loc["ferritin", "p (Q)"] == "<0.001" and shown.loc["ferritin", "Q (df)"] == "152.23 (12)"
    assert shown.loc["ferritin", "tau² (95% CI, Q-profile)"] == "0.313 (0.120 to 1.111)"
    assert shown.loc["ferritin", "pooled (95% CI, REML + Knapp-Hartung)"] == "reduction (%): 51.1 (27.4 to 67.0)"
    assert shown.loc["ferritin", "note"] == "" and shown.loc["crp", "note"] == ONE_STUDY
    assert shown.loc["crp", "I² % (95% CI)"] == ""
