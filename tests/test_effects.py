"""Effect-size functions against hand-worked numbers and the published formulas."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from hlh_meta.data import read_dataset
from hlh_meta.effects import (Effect, baseline_from_percent_change, count_pairs_from_percentage,
                              counts_from_percentage, log_ratio_paired, mean_from_median_iqr, mean_from_median_range,
                              percent_interval, percent_reduction, sd_baseline_from_paired, sd_diff_from_paired_p,
                              sd_from_iqr, sd_from_range, sd_from_sem)
from hlh_meta.effects.biomarkers import resolve_biomarkers
from hlh_meta.effects.check import check_dataset
from hlh_meta.effects.mortality import resolve_mortality
from hlh_meta.errors import DataError, InputError

from conftest import edit

# Rajasekaran 2014, 8 children: CRP 206 +/- 50 mg/L at baseline, 68 +/- 36 mg/L at day 7 (mean +/- SEM).
N, M1, SEM1, M2, SEM2 = 8, 206.0, 50.0, 68.0, 36.0


def test_sd_from_sem_rajasekaran():
    assert sd_from_sem(SEM1, N) == pytest.approx(141.4213562)  # 50 * 2.8284271
    assert sd_from_sem(SEM2, N) == pytest.approx(101.8233765)  # 36 * 2.8284271
    assert isinstance(sd_from_sem(SEM1, N), float)


def test_sd_from_sem_is_vectorised():
    out = sd_from_sem([50, 36], [8, 8])
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [141.4213562, 101.8233765])


def test_log_ratio_paired_rajasekaran():
    sd1, sd2 = sd_from_sem(SEM1, N), sd_from_sem(SEM2, N)
    eff = log_ratio_paired(M1, sd1, M2, sd2, N, r=0.5)
    assert isinstance(eff, Effect)
    assert eff.yi == pytest.approx(-1.1083685)  # log(68 / 206) = log(0.3300971)
    # With SD = SEM * sqrt(8) the n cancels: vi = SEM1^2/m1^2 + SEM2^2/m2^2 - 2 r SEM1 SEM2/(m1 m2)
    #   = 2500/42436 + 1296/4624 - 2 * 0.5 * 1800/14008
    #   = 0.0589122 + 0.2802768 - 0.1284980 = 0.2106911
    vi = 2500 / 42436 + 1296 / 4624 - 1800 / 14008
    assert eff.vi == pytest.approx(vi)
    assert eff.vi == pytest.approx(0.2106911, abs=1e-7)
    assert eff.sei == pytest.approx(math.sqrt(vi))
    assert percent_reduction(eff.yi) == pytest.approx(66.9902913)  # 100 * 138 / 206


def test_log_ratio_paired_correlation_lowers_variance():
    no_corr = log_ratio_paired(M1, 141.42, M2, 101.82, N, r=0.0)
    assert no_corr.vi == pytest.approx(141.42**2 / (8 * 206**2) + 101.82**2 / (8 * 68**2))
    assert log_ratio_paired(M1, 141.42, M2, 101.82, N, r=0.9).vi < no_corr.vi


def test_log_ratio_paired_is_vectorised():
    eff = log_ratio_paired([206, 100], [141.42, 10], [68, 100], [101.82, 10], [8, 25], r=0.5)
    np.testing.assert_allclose(eff.yi, [math.log(68 / 206), 0.0])
    # second study: 2 * 100/(25 * 1e4) - 2 * 0.5 * 100/(25 * 1e4) = 0.0004
    assert eff.vi[1] == pytest.approx(0.0004)
    np.testing.assert_allclose(eff.sei, np.sqrt(eff.vi))


def test_percent_reduction():
    assert percent_reduction(0.0) == 0.0
    assert percent_reduction(math.log(0.25)) == pytest.approx(75.0)
    assert percent_reduction(math.log(1.5)) == pytest.approx(-50.0)


def test_baseline_from_percent_change():
    # "decreased by 63.8% to 3,210": 3210 / 0.362
    assert baseline_from_percent_change(3210, 63.8) == pytest.approx(8867.4033149)
    assert baseline_from_percent_change(150, -50) == pytest.approx(100.0)  # increase by 50% to 150


def test_counts_from_percentage_examples():
    assert counts_from_percentage(27, 44) == [12]  # 12/44 = 27.3%; 11/44 = 25.0%, 13/44 = 29.5%
    assert counts_from_percentage(83.3, 6, 1) == [5]  # 5/6 = 83.33%
    assert counts_from_percentage(0, 10) == [0]
    assert counts_from_percentage(100, 10) == [10]
    assert counts_from_percentage(50, 200) == [99, 100, 101]  # 49.5%, 50%, 50.5% all print as 50%


def test_counts_from_percentage_half_way_cases_both_ways():
    # 1/8 = 12.5% prints as 13% (half up) or 12% (half even): both must find k = 1
    assert counts_from_percentage(13, 8) == [1]
    assert counts_from_percentage(12, 8) == [1]
    assert counts_from_percentage(14, 8) == []


def test_count_pairs_from_percentage():
    assert count_pairs_from_percentage(42.9, 1, n_max=10) == [(3, 7)]  # 3/7 = 42.857%
    assert count_pairs_from_percentage(50, 0, n_max=4) == [(1, 2), (2, 4)]
    assert count_pairs_from_percentage(50, 0, n_max=4, n_min=3) == [(2, 4)]
    assert count_pairs_from_percentage(50, 0, n_max=0) == []


def test_percent_interval():
    assert percent_interval(42.9, 1) == pytest.approx((42.85, 42.95))
    assert percent_interval(27, 0) == pytest.approx((26.5, 27.5))
    assert percent_interval(100, 0) == (99.5, 100.0)
    assert percent_interval(0, 2) == (0.0, 0.005)


def test_wan_iqr_divisor_n50():
    # 2 * Phi^-1((0.75 * 50 - 0.125) / (50 + 0.25)) = 2 * Phi^-1(37.375 / 50.25) = 2 * Phi^-1(0.7437811)
    divisor = 2 * NormalDist().inv_cdf(37.375 / 50.25)
    assert divisor == pytest.approx(1.3100930, abs=1e-7)
    assert sd_from_iqr(10, 20, 50) == pytest.approx(10 / divisor)
    # below the large-sample normal ratio IQR / SD = 2 * 0.6744898 = 1.349, and tends to it
    assert divisor < 1.349
    assert 10 / sd_from_iqr(10, 20, 10**7) == pytest.approx(2 * 0.6744898, abs=1e-6)


def test_wan_range_divisor_n50():
    # 2 * Phi^-1((50 - 0.375) / (50 + 0.25)) = 2 * Phi^-1(49.625 / 50.25)
    divisor = 2 * NormalDist().inv_cdf(49.625 / 50.25)
    assert divisor == pytest.approx(4.4866575, abs=1e-7)
    assert sd_from_range(0, 30, 50) == pytest.approx(30 / divisor)


def test_wan_means():
    assert mean_from_median_iqr(1, 2, 6) == pytest.approx(3.0)  # (1 + 2 + 6) / 3
    assert mean_from_median_range(0, 2, 10) == pytest.approx(3.5)  # (0 + 4 + 10) / 4
    np.testing.assert_allclose(mean_from_median_iqr([1, 0], [2, 0], [6, 3]), [3.0, 1.0])


@pytest.mark.parametrize("two_sided", [True, False])
def test_sd_diff_from_paired_p_round_trip(two_sided):
    m1, m2, sd_d, n = 10.0, 7.0, 4.0, 12
    t = abs(m1 - m2) / (sd_d / math.sqrt(n))  # 3 / (4 / 3.4641016) = 2.5980762
    p = stats.t.sf(t, n - 1) * (2 if two_sided else 1)
    assert sd_diff_from_paired_p(m1, m2, n, p, two_sided=two_sided) == pytest.approx(sd_d)
    assert sd_diff_from_paired_p(m2, m1, n, p, two_sided=two_sided) == pytest.approx(sd_d)


@pytest.mark.parametrize("r", [-0.3, 0.0, 0.4, 0.9])
def test_sd_baseline_from_paired_round_trip(r):
    sd1, sd2 = 5.0, 3.0
    sd_d = math.sqrt(sd1**2 + sd2**2 - 2 * r * sd1 * sd2)
    assert sd_baseline_from_paired(sd_d, sd2, r) == pytest.approx(sd1)


def test_sd_baseline_from_paired_hand_case():
    # r = 0: sd1 = sqrt(sd_d^2 - sd2^2) = sqrt(25 - 9) = 4
    assert sd_baseline_from_paired(5, 3, 0) == pytest.approx(4.0)


@pytest.mark.parametrize("call, match", [
    (lambda: sd_from_sem(-1, 8), "sem must be non-negative"),
    (lambda: sd_from_sem(5, 1), "n must be a whole number >= 2"),
    (lambda: sd_from_sem(5, 7.5), "n must be a whole number"),
    (lambda: sd_from_sem(float("nan"), 8), "sem must not be NaN"),
    (lambda: sd_from_sem([1, 2], [8, 0]), "n must be a whole number >= 2, got 0"),
    (lambda: sd_diff_from_paired_p(10, 7, 12, 0), "p must be in"),
    (lambda: sd_diff_from_paired_p(10, 7, 12, 1.2), "p must be in"),
    (lambda: sd_diff_from_paired_p(10, 10, 12, 0.05), "mean1 equals mean2"),
    (lambda: sd_diff_from_paired_p(10, 7, 12, 0.6, two_sided=False), "one-sided"),
    (lambda: sd_diff_from_paired_p(10, 7, 1, 0.05), "n must be"),
    (lambda: sd_baseline_from_paired(1, 3, 0.0), "no real SD"),
    (lambda: sd_baseline_from_paired(0, 3, -1.0), "no positive SD"),
    (lambda: sd_baseline_from_paired(5, -3, 0.5), "sd2 must be non-negative"),
    (lambda: sd_baseline_from_paired(5, 3, 1.5), r"r must be in \[-1, 1\]"),
    (lambda: mean_from_median_iqr(3, 2, 6), "q1 must not exceed the median"),
    (lambda: mean_from_median_iqr(1, 7, 6), "median must not exceed q3"),
    (lambda: sd_from_iqr(6, 1, 50), "q1 must not exceed q3"),
    (lambda: sd_from_iqr(1, 6, 1), "n must be"),
    (lambda: mean_from_median_range(3, 2, 10), "minimum must not exceed the median"),
    (lambda: mean_from_median_range(0, 12, 10), "median must not exceed the maximum"),
    (lambda: sd_from_range(10, 0, 50), "minimum must not exceed the maximum"),
    (lambda: baseline_from_percent_change(3210, 100), "percent_decrease must be below 100"),
    (lambda: baseline_from_percent_change(float("nan"), 50), "followup_mean must not be NaN"),
    (lambda: log_ratio_paired(0, 1, 68, 1, 8), "mean1 must be positive"),
    (lambda: log_ratio_paired(206, 1, -68, 1, 8), "mean2 must be positive"),
    (lambda: log_ratio_paired(206, -1, 68, 1, 8), "sd1 must be non-negative"),
    (lambda: log_ratio_paired(206, 1, 68, 1, 8, r=-1.1), r"r must be in \[-1, 1\]"),
    (lambda: log_ratio_paired(206, 1, 68, 1, 1), "n must be"),
    (lambda: percent_reduction(float("nan")), "log_ratio must not be NaN"),
    (lambda: percent_interval(101, 0), r"percent must be in \[0, 100\]"),
    (lambda: percent_interval(-0.1, 1), r"percent must be in \[0, 100\]"),
    (lambda: percent_interval(50, -1), "decimals must be a whole number >= 0"),
    (lambda: counts_from_percentage(120, 10), r"percent must be in \[0, 100\]"),
    (lambda: counts_from_percentage(50, 0), "n must be a whole number >= 1"),
    (lambda: counts_from_percentage(float("nan"), 10), "percent must not be NaN"),
    (lambda: count_pairs_from_percentage(50, 0, n_max=10, n_min=0), "n_min must be a whole number >= 1"),
])
def test_invalid_input_raises(call, match):
    with pytest.raises(InputError, match=match):     # bad input to the API, not an internal error
        call()


# --- resolving the extraction tables: every problem named at its file, row and column ----

OVERALL_27 = (",44,27,death,0,,from_percentage", ",44,99,death,0,,from_percentage")
SEMS_ZERO = ("206,,50,68,,36", "206,,0,68,,0")
SJIA_ALL_DIED = ("sjia,rheumatological,paediatric,0,13", "sjia,rheumatological,paediatric,13,13")
BAVEREZ = ("21,,,,,not_reported,,", "21,,,,,not_reported,3,")


def _broken(folder, *edits):
    for table, old, new in edits:
        edit(folder / table, old, new)
    return read_dataset(folder)


def _where(problems):
    return {(p.file, p.row, p.column) for p in problems}


def test_a_percentage_no_count_of_n_gives_is_named_and_the_remainder_does_not_cascade(data_copy):
    ds = _broken(data_copy, ("mortality.csv", *OVERALL_27))
    with pytest.raises(DataError) as info:
        resolve_mortality(ds)
    assert [str(p) for p in info.value.problems] == [
        "mortality.csv, row 3, column 'percent': no whole number of 44 patients gives 99% (printed with 0 decimals): "
        "check percent, percent_decimals and n"]


def test_zero_standard_error_is_named_at_the_source_row(data_copy):
    ds = _broken(data_copy, ("biomarkers.csv", *SEMS_ZERO))
    with pytest.raises(DataError) as info:
        resolve_biomarkers(ds)
    (problem,) = info.value.problems
    assert (problem.file, problem.row, problem.column) == ("biomarkers.csv", 2, "baseline_sem")
    assert "standard error of the log ratio is 0" in problem.message
    assert "baseline_sem and followup_sem" in problem.message


def test_zero_sds_are_named_at_the_sd_column(data_copy):
    ds = _broken(data_copy, ("biomarkers.csv", SEMS_ZERO[0], "206,0,,68,0,"))
    with pytest.raises(DataError) as info:
        resolve_biomarkers(ds)
    assert _where(info.value.problems) == {("biomarkers.csv", 2, "baseline_sd")}


def test_a_remainder_that_does_not_fit_names_the_rows_behind_it(data_copy):
    ds = _broken(data_copy, ("mortality.csv", *SJIA_ALL_DIED))
    with pytest.raises(DataError) as info:
        resolve_mortality(ds)
    (problem,) = info.value.problems
    assert (problem.file, problem.row, problem.column) == ("mortality.csv", 6, "count_method")
    assert "remainder gives -4 deaths of 28 patients" in problem.message and "rows 3, 4, 5" in problem.message


@pytest.mark.parametrize("old, new, row, fragment", [
    (BAVEREZ[0], BAVEREZ[1], 7, "must be empty when count_method is 'not_reported'"),
    (",,remainder,,", ",,remainder,2,", 6, "must be empty when count_method is 'remainder'"),
    ("42.9,survival,1,9,from_percentage,,", "42.9,survival,1,9,from_percentage,9,", 10,
     "deaths_alternative (9) exceeds the stratum's n (7"),
    ("83,survival,0,,from_percentage,,", "83,survival,0,,from_percentage,2,", 11, "has no stratum size"),
], ids=["not-reported", "remainder", "above-reconstructed-n", "no-stratum-size"])
def test_alternative_attribution_without_a_count_to_replace(data_copy, old, new, row, fragment):
    ds = _broken(data_copy, ("mortality.csv", old, new))
    resolve_mortality(ds)                               # the primary attribution does not read it
    with pytest.raises(DataError) as info:
        resolve_mortality(ds, attribution="alternative")
    (problem,) = info.value.problems
    assert (problem.file, problem.row, problem.column) == ("mortality.csv", row, "deaths_alternative")
    assert fragment in problem.message


def test_a_share_that_bounds_out_every_count_is_named(data_copy):
    ds = _broken(data_copy, ("mortality.csv", "83.3,survival,1,33,", "83.3,survival,1,1,"))
    with pytest.raises(DataError, match=r"row 9, column 'percent': no stratum of at most 1 patients"):
        resolve_mortality(ds)


def test_a_biomarker_row_of_one_patient_is_named(synthetic_copy):
    ds = _broken(synthetic_copy, ("biomarkers.csv", "syn_a,crp,mg/L,8,", "syn_a,crp,mg/L,1,"))
    with pytest.raises(DataError) as info:
        resolve_biomarkers(ds)
    assert _where(info.value.problems) == {("biomarkers.csv", 2, "n")}


def test_a_p_value_that_no_sd_fits_is_named_with_the_correlation(data_copy):
    ds = _broken(data_copy, ("biomarkers.csv", "158,,41,7,42,0.03", "158,,41,7,42,0.001"))
    with pytest.raises(DataError) as info:
        resolve_biomarkers(ds)
    (problem,) = info.value.problems
    assert (problem.file, problem.row, problem.column) == ("biomarkers.csv", 4, "p_value")
    assert "admits no baseline SD" in problem.message and "r = 0.5" in problem.message


def test_a_p_value_of_one_carries_no_information_on_the_sd(data_copy):
    ds = _broken(data_copy, ("biomarkers.csv", "158,,41,7,42,0.03", "158,,41,7,42,1"))
    row = resolve_biomarkers(ds).loc[4]
    assert row["dispersion"] == "imputed" and "p = 1 carries no information on the SD" in row["derivation"]
    assert row["sei"] > 0


def test_resolution_options_are_checked():
    ds = read_dataset(Path(__file__).parents[1] / "data")
    with pytest.raises(InputError, match="attribution"):
        resolve_mortality(ds, attribution="other")
    with pytest.raises(InputError, match=r"correlation r must be a number in \[-1, 1\], got 2"):
        resolve_biomarkers(ds, r=2)
    with pytest.raises(InputError, match="missing_dispersion"):
        resolve_biomarkers(ds, missing_dispersion="guess")


def test_check_dataset_collects_every_problem_under_every_choice(data_copy):
    ds = _broken(data_copy, ("mortality.csv", *OVERALL_27), ("mortality.csv", *BAVEREZ),
                 ("mortality.csv", ",,remainder,,", ",,remainder,2,"), ("biomarkers.csv", *SEMS_ZERO),
                 ("biomarkers.csv", "158,,41,7,42,0.03", "158,,41,7,42,0.001"))
    problems = check_dataset(ds)
    assert [(p.file, p.row, p.column) for p in problems] == [
        ("mortality.csv", 3, "percent"), ("mortality.csv", 6, "deaths_alternative"),
        ("mortality.csv", 7, "deaths_alternative"), ("biomarkers.csv", 2, "baseline_sem"),
        ("biomarkers.csv", 4, "p_value")]


def test_check_dataset_passes_the_bundled_tables(ds):
    assert check_dataset(ds) == []
