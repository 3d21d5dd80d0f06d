"""Support labels, the overlap rule and the robustness rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.analyses.base import Quantity, with_support
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
    qs = [Quantity("mortality_typical", "m", lab, "mortality", "percent", 100 * post["p_typical"].sel(profile=lab).values.ravel(),
                   100 * prior["p_typical"].sel(profile=lab).values.ravel(), {}, (), k, ("p_typical", {"profile": lab}),
                   k, int(n.sum()), False) for lab in ("x0", "x1")]
    qs.append(Quantity("odds_ratio", "m", "x", "odds ratio", "odds ratio", np.exp(post["beta"].values.ravel()),
                       np.exp(prior["beta"].values.ravel()), {}, (), k, ("beta", {"covariate": "x"}), 0, 0, True))
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
    base = {"variant": "primary", "family": "primary", "quantity": "mortality, typical study (%)",
            "key": "mortality_typical", "label": "all", "mean": 50.0, "sd": 10.0, "median": 50.0, "q2.5": 30.0,
            "q97.5": 70.0, "P(<20%)": 0.02, "P(<1)": np.nan, "diagnostics_passed": True}
    return pd.DataFrame([base] + [{**base, "family": "f", **r} for r in rows])


@pytest.mark.parametrize("variant, robust", [
    ({"variant": "small", "median": 53.0}, True),
    ({"variant": "moves", "median": 56.0}, False),                    # 0.6 posterior SD
    ({"variant": "flips", "median": 51.0, "P(<20%)": 0.15}, False),   # P(mortality < 20%) up by 0.13
    ({"variant": "broken", "median": 80.0, "diagnostics_passed": False}, True)])   # not judged
def test_robustness_rule(variant, robust):
    rob = robustness(_sens([variant]))
    assert bool(rob.iloc[0]["robust"]) is robust
    assert ("NOT robust" in rob.iloc[0]["sentence"]) is (not robust)


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
        qs = [Quantity(key, "mortality", "pooled", key, "percent", 100 * post[var].sel(profile="pooled").values.ravel(),
                       100 * prior[var].sel(profile="pooled").values.ravel(), {}, (10, 20, 30), k,
                       (var, {"profile": "pooled"}), k, int(n.sum()), False)
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
