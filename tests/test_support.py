"""Support labels, the overlap rule and the robustness rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.analyses.base import Quantity, with_support
from hlh_meta.analyses.quantity_id import Contrast
from hlh_meta.analyses.selection import overlapping
from hlh_meta.analyses.support import contraction, label
from hlh_meta.sensitivity import robustness


def test_contraction_of_normal_draws():
    rng = np.random.default_rng(1)
    prior, post = rng.normal(0, 2, 200_000), rng.normal(0.5, 1, 200_000)
    assert contraction(post, prior, "raw") == pytest.approx(0.75, abs=0.01)     # 1 - 1/4
    # a percentage is judged on the logit scale: the same draws mapped through expit give the same
    from scipy.special import expit
    assert contraction(100 * expit(post), 100 * expit(prior), "percent") == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize("c, prior_s, like_s, studies, extra, expected", [
    (0.8, 0.01, 0.2, 5, False, "data"), (0.8, 0.2, 0.2, 5, False, "weak"), (0.3, 0.01, 0.2, 5, False, "weak"),
    (0.05, 0.01, 0.2, 5, False, "prior"), (0.9, 0.01, 0.2, 0, False, "prior"), (0.9, 0.01, 0.2, 3, True, "prior"),
    (0.8, 0.01, 0.01, 5, False, "data")])
def test_label_rule(c, prior_s, like_s, studies, extra, expected):
    assert label(c, prior_s, like_s, studies, extra) == expected


def _fit(frame, **kw):
    return hm.fit_binomial(frame, covariates=["x"], profiles=pd.DataFrame({"x": [0, 1]}, index=["x0", "x1"]),
                           draws=600, tune=600, seed=2, **kw)


def test_many_large_studies_give_data_support_and_a_prior_quantity_stays_prior():
    rng = np.random.default_rng(3)
    k = 24
    x = np.tile([0.0, 1.0], k // 2)
    n = np.full(k, 400)
    frame = pd.DataFrame({"study": [f"s{i}" for i in range(k)], "events": rng.binomial(n, 0.2 + 0.2 * x),
                          "total": n, "x": x})
    idata = _fit(frame)
    post, prior = idata.posterior, idata.prior
    qs = [Quantity(key="mortality_typical", outcome="m", label=lab, description="mortality", scale="percent",
                   draws=100 * post["p_typical"].sel(profile=lab).values.ravel(),
                   prior=100 * prior["p_typical"].sel(profile=lab).values.ravel(), levels={"x": lab[1:]}, n_studies=k,
                   source=("p_typical", {"profile": lab}), studies_informing=k, patients_informing=int(n.sum()))
          for lab in ("x0", "x1")]
    qs.append(Quantity(key="odds_ratio", outcome="m", label="x", description="odds ratio", scale="odds ratio",
                       draws=np.exp(post["beta"].values.ravel()), prior=np.exp(prior["beta"].values.ravel()),
                       contrast=Contrast("x", "1", "0"), n_studies=k, source=("beta", {"covariate": "x"}),
                       studies_informing=0, patients_informing=0, extrapolation=True))
    out = with_support(idata, qs)
    assert [q.label_support for q in out] == ["data", "data", "prior"]
    assert out[0].support["contraction"] > 0.9


def test_overlap_rule_keeps_cohorts_over_a_review_of_case_reports():
    studies = pd.DataFrame({
        "study_id": ["cohort_a", "cohort_b", "review", "cohort_c"],
        "design": ["retrospective_cohort", "retrospective_case_series", "systematic_review_of_case_reports",
                   "retrospective_cohort"],
        "n_patients": [40, 10, 90, 12], "grade": ["peer_reviewed_full"] * 4,
        "overlaps_with": [np.nan, np.nan, "cohort_a;cohort_b", "cohort_a"]})
    out = overlapping(studies, ["cohort_a", "cohort_b", "review", "cohort_c"])
    assert set(out) == {"review", "cohort_c"}          # the review gives way; of two cohorts the smaller
    assert "cohort_a" in out["review"] or "cohort_b" in out["review"]
    assert overlapping(studies, ["cohort_a", "cohort_b"]) == {}


def _sens(rows):
    base = {"id": "mortality:mortality_typical", "variant": "primary", "family": "primary",
            "quantity": "mortality, typical study (%)",
            "key": "mortality_typical", "label": "all", "mean": 50.0, "sd": 10.0, "median": 50.0, "q2.5": 30.0,
            "q97.5": 70.0, "P(<20%)": 0.02, "P(<1)": np.nan, "diagnostics_passed": True}
    return pd.DataFrame([base] + [{**base, "family": "f", **r} for r in rows])


@pytest.mark.parametrize("variant, verdict", [
    ({"variant": "small", "median": 53.0}, "robust"),
    ({"variant": "moves", "median": 56.0}, "NOT robust"),                    # 0.6 posterior SD
    ({"variant": "flips", "median": 51.0, "P(<20%)": 0.15}, "NOT robust"),   # P(mortality < 20%) up by 0.13
    ({"variant": "widens", "median": 50.0, "q2.5": 20.0, "q97.5": 80.0}, "NOT robust"),   # interval 1.5 times as wide
    ({"variant": "broken", "median": 80.0, "diagnostics_passed": False}, "undetermined")])   # not judged, named
def test_robustness_rule(variant, verdict):
    rob = robustness(_sens([variant])).iloc[0]
    assert rob["verdict"] == verdict and bool(rob["robust"]) is (verdict == "robust")
    assert rob["sentence"].split(": ", 1)[1].startswith(verdict)
    if verdict == "undetermined":
        assert rob["undetermined_by"] == "broken" and "'broken'" in rob["sentence"]


def _odds_ratio(**row):
    """An odds ratio as the runner summarises it: reported and on the log scale."""
    base = {"id": "mortality:odds_ratio:trigger=m|vs=r", "quantity": "odds ratio", "key": "odds_ratio",
            "label": "m vs r", "P(<20%)": np.nan,
            "diagnostics_passed": True, "scale": "odds ratio"}
    return {**base, **row}


def test_robustness_is_judged_on_the_unbounded_scale():
    """An odds ratio 6.0 (1.4 to 27, SD 7.5 on the ratio scale) against a variant at 7.2 (1.3 to
    40, SD 12): 0.16 SD on the ratio scale, 0.24 primary SDs on the log scale (robust either
    way); a variant at 3.0 is 0.92 log-scale SDs away and moves it, though on the ratio scale
    it is 0.4 SD and would not."""
    primary = _odds_ratio(variant="primary", family="primary", median=6.0, sd=7.5, mean=8.0, **{"q2.5": 1.4,
                          "q97.5": 27.0}, **{"P(<1)": 0.01}, unbounded_median=np.log(6.0), unbounded_sd=0.75,
                          unbounded_width=np.log(27 / 1.4))
    near = _odds_ratio(variant="wide prior", family="priors", median=7.2, sd=12.0, **{"q2.5": 1.3, "q97.5": 40.0},
                       **{"P(<1)": 0.02}, unbounded_median=np.log(7.2), unbounded_sd=0.85,
                       unbounded_width=1.2 * np.log(27 / 1.4))
    far = _odds_ratio(variant="tight prior", family="priors", median=3.0, sd=2.0, **{"q2.5": 0.9, "q97.5": 9.0},
                      **{"P(<1)": 0.04}, unbounded_median=np.log(3.0), unbounded_sd=0.6,
                      unbounded_width=np.log(27 / 1.4))
    assert robustness(pd.DataFrame([primary, near])).iloc[0]["verdict"] == "robust"
    rob = robustness(pd.DataFrame([primary, far])).iloc[0]
    assert rob["verdict"] == "NOT robust" and rob["judged_on"] == "log"
    assert rob["largest_shift_sd"] == pytest.approx(np.log(2.0) / 0.75, abs=1e-3)


def test_prior_quantities_are_not_assessable_and_studies_are_reported_apart():
    sens = _sens([{"variant": "moves", "median": 56.0}])
    rob = robustness(sens, {"mortality:mortality_typical": "prior"}).iloc[0]
    assert rob["verdict"] == "not assessable" and not rob["robust"]
    sens = _sens([{"variant": "small", "median": 52.0}, {"variant": "leave out a", "family": "leave_one_out",
                                                           "median": 60.0}])
    rob = robustness(sens, {"mortality:mortality_typical": "data"}).iloc[0]
    assert rob["verdict"] == "robust" and rob["influential_studies"] == "leave out a"
    assert "influential studies: 'leave out a' moves it 1.0 SD" in rob["sentence"]
    # leaving studies out is what is judged when no analysis choice was varied
    only = _sens([{"variant": "leave out a", "family": "leave_one_out", "median": 60.0}])
    assert robustness(only).iloc[0]["verdict"] == "NOT robust"


def test_unbounded_summary_of_percent_and_sd_draws():
    from hlh_meta.sensitivity.robustness import unbounded_summary

    rng = np.random.default_rng(0)
    x = rng.normal(-1.0, 0.5, 40_000)
    pct = unbounded_summary(100 / (1 + np.exp(-x)), "percent")
    assert pct["unbounded_median"] == pytest.approx(-1.0, abs=0.02) and pct["unbounded_sd"] == pytest.approx(0.5, abs=0.01)
    sd = unbounded_summary(np.exp(x), "SD (logit scale)")
    assert sd["unbounded_width"] == pytest.approx(2 * 1.96 * 0.5, abs=0.03)


def test_a_variant_built_to_move_a_quantity_is_not_robust(ds, monkeypatch, tmp_path):
    """A prior variant pinning mu far from the data moves mortality; the verdict says so
    (the old rule, every median inside the primary 95% interval, could not fail here)."""
    from hlh_meta.analyses import analysis_for, load_spec
    from hlh_meta.analyses.families import prior_family

    mortality = analysis_for("mortality")
    monkeypatch.setitem(type(mortality).families, "priors",
                        prior_family([("mu", {"dist": "Normal", "mu": 2.0, "sigma": 0.2})]))
    path = tmp_path / "m.toml"
    path.write_text("[analysis]\nname='m'\nkind='mortality'\n[model]\ncovariates=[]\n[sampling]\ndraws=400\ntune=400\n"
                    "chains=2\nseed=3\n[sensitivity]\nfamilies=['priors']\n")
    res = hm.run_analysis(load_spec(path), ds, sensitivity=True, executor="serial")
    rob = res.table("robustness").set_index("key")
    row = rob.loc["mortality_typical"]
    row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
    assert not row["robust"] and row["largest_shift_sd"] >= 0.5


def test_prior_data_conflict_is_flagged_and_said():
    """A tight prior far from strong data: both power-scaling sensitivities reach 0.05, the
    quantity carries the conflict caveat and its statement leads with the probability; the
    default prior on the same data is no conflict."""
    from hlh_meta.analyses.mortality import Mortality

    rng = np.random.default_rng(5)
    k = 10
    n = np.full(k, 60)
    frame = pd.DataFrame({"study": [f"s{i}" for i in range(k)], "events": rng.binomial(n, 0.1), "total": n})
    flags = {}
    common = {"tau": {"dist": "Fixed", "value": 0.0}}     # (with tau free the study effects absorb the conflict)
    for name, priors in (("tight", {"mu": {"dist": "Normal", "mu": 2.0, "sigma": 0.3}, **common}), ("default", common)):
        idata = hm.fit_binomial(frame, priors=priors, draws=600, tune=600, seed=4)
        post, prior = idata.posterior, idata.prior
        qs = [Quantity(key=key, outcome="mortality", label="pooled", description=key, scale="percent",
                       draws=100 * post[var].sel(profile="pooled").values.ravel(),
                       prior=100 * prior[var].sel(profile="pooled").values.ravel(), thresholds=(10, 20, 30),
                       n_studies=k, source=(var, {"profile": "pooled"}), studies_informing=k,
                       patients_informing=int(n.sum()))
              for key, var in (("mortality_typical", "p_typical"), ("mortality_new", "p_new"))]
        out = with_support(idata, qs)
        flags[name] = out[0]
    assert flags["tight"].conflict and not flags["default"].conflict
    assert any(c.startswith("prior-data conflict") for c in flags["tight"].caveats)
    assert not flags["default"].caveats
    new = replace_label(flags["tight"])
    (q, text), = [(q, t) for q, t in Mortality().statements([flags["tight"], new]) if q.key == "mortality_typical"]
    assert text.startswith("Pooled: P(mortality < 20%) ") and "so the size depends on the prior" in text


def replace_label(q):
    from dataclasses import replace

    return replace(q, key="mortality_new")


def test_a_variant_without_draws_on_the_unbounded_scale_is_judged_as_reported():
    """tau fixed at 0 (the common-effect variant) has no log-scale draws: its shift is
    measured on the reported scale instead of breaking the rule."""
    base = {"id": "mortality:tau", "quantity": "tau", "key": "tau", "label": "between studies", "P(<20%)": np.nan,
            "P(<1)": np.nan,
            "diagnostics_passed": True, "scale": "SD (logit scale)"}
    primary = {**base, "variant": "primary", "family": "primary", "median": 0.5, "sd": 0.4, "mean": 0.55,
               "q2.5": 0.03, "q97.5": 1.6, "unbounded_median": np.log(0.5), "unbounded_sd": 1.0,
               "unbounded_width": np.log(1.6 / 0.03)}
    fixed = {**base, "variant": "common effect (tau = 0)", "family": "fixed_effect", "median": 0.0, "sd": 0.0,
             "q2.5": 0.0, "q97.5": 0.0, "unbounded_median": np.nan, "unbounded_sd": np.nan, "unbounded_width": np.nan}
    rob = robustness(pd.DataFrame([primary, fixed])).iloc[0]
    assert rob["verdict"] == "NOT robust" and rob["largest_shift_sd"] == pytest.approx(0.5 / 0.4)
