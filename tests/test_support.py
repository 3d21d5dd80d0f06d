"""Support labels (on draws whose properties are known, and one real fit end to end), the
overlap rule and the robustness rule."""

from __future__ import annotations

from dataclasses import replace

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from scipy.stats import norm

import hlh_meta as hm
from hlh_meta.analyses.base import Quantity, with_support
from hlh_meta.analyses.quantity_id import QuantityId
from hlh_meta.analyses.selection import overlapping
from hlh_meta.analyses.support import (CONFLICT, CONTRACTION_DATA, CONTRACTION_PRIOR, SENSITIVITY, conflict,
                                       conflict_caveat, contraction, label, rests_note)
from hlh_meta.sensitivity import robustness


def test_contraction_of_normal_draws():
    rng = np.random.default_rng(1)
    prior, post = rng.normal(0, 2, 200_000), rng.normal(0.5, 1, 200_000)
    assert contraction(post, prior, "raw") == pytest.approx(0.75, abs=0.01)     # 1 - 1/4
    # a percentage is judged on the logit scale: the same draws mapped through expit give the same
    assert contraction(100 * expit(post), 100 * expit(prior), "percent") == pytest.approx(0.75, abs=0.01)
    # no prior draws, or prior draws that do not vary: nothing to contract from
    assert np.isnan(contraction(post, None, "raw")) and np.isnan(contraction(post, np.full(100, 0.5), "raw"))


@pytest.mark.parametrize("c, prior_s, like_s, studies, extra, expected", [
    (0.8, 0.01, 0.2, 5, False, "data"), (0.8, 0.2, 0.2, 5, False, "weak"), (0.3, 0.01, 0.2, 5, False, "weak"),
    (0.05, 0.01, 0.2, 5, False, "prior"), (0.9, 0.01, 0.2, 0, False, "prior"), (0.9, 0.01, 0.2, 3, True, "prior"),
    (0.8, 0.01, 0.01, 5, False, "data")])
def test_label_rule(c, prior_s, like_s, studies, extra, expected):
    assert label(c, prior_s, like_s, studies, extra) == expected


def _conjugate(prior_mean, prior_sd, y, se, *, seed=0, chains=4, draws=1000):
    """A normal mean theta with a Normal(prior_mean, prior_sd) prior and one observation y of
    standard error se: exact posterior draws, prior draws, and the log prior and log-likelihood
    at each posterior draw, in the groups a fit stores them in (the posterior also holds the
    log prior, as a fit's does)."""
    rng = np.random.default_rng(seed)
    precision = prior_sd ** -2 + se ** -2
    mean, sd = (prior_mean * prior_sd ** -2 + y * se ** -2) / precision, precision ** -0.5
    theta = rng.normal(mean, sd, (chains, draws))
    log_prior = norm.logpdf(theta, prior_mean, prior_sd)
    idata = az.from_dict(posterior={"theta": theta, "log_prior": log_prior},
                         prior={"theta": rng.normal(prior_mean, prior_sd, (1, chains * draws))},
                         log_likelihood={"y": norm.logpdf(y, theta, se)[..., None]}, dims={"y": ["row"]})
    idata.add_groups(log_prior={"log_prior": log_prior})
    return idata


def _quantity(**kw):
    """A quantity informed by five studies (its draws, prior and the rest by keyword)."""
    fields = {"key": "effect", "outcome": "synthetic", "label": "theta", "description": "theta", "scale": "raw",
              "studies_informing": 5, "patients_informing": 100}
    return Quantity(**{**fields, **kw})


def _theta(idata, **kw):
    """The quantity theta of a synthetic fit, with its prior draws, read from the posterior variable."""
    return _quantity(**{"draws": idata.posterior["theta"].values.ravel(), "prior": idata.prior["theta"].values.ravel(),
                        "source": ("theta", {}), **kw})


def _no_sensitivity(n=4000):
    """An InferenceData without log_prior or log_likelihood: no power-scaling sensitivity, so a
    label rests on contraction and the studies informing it alone."""
    return az.from_dict(posterior={"x": np.random.default_rng(0).normal(size=(1, n))})


def test_a_posterior_equal_to_its_prior_is_prior():
    rng = np.random.default_rng(2)
    prior = rng.normal(0, 1, (4, 1000))
    idata = az.from_dict(posterior={"theta": prior, "log_prior": norm.logpdf(prior)}, prior={"theta": prior},
                         log_likelihood={"y": np.zeros((4, 1000, 1))}, dims={"y": ["row"]})
    idata.add_groups(log_prior={"log_prior": norm.logpdf(prior)})
    (q,) = with_support(idata, [_theta(idata)])
    assert q.support["contraction"] == pytest.approx(0.0, abs=1e-12)
    assert q.label_support == "prior" and not q.conflict and not q.caveats


def test_a_posterior_ten_times_narrower_than_its_prior_is_data():
    """Prior Normal(0, 10), one observation of SE 1: the posterior SD is 1/10 of the prior's,
    the prior does not move it (prior sensitivity well below 0.05) and the data do
    (likelihood sensitivity at or above 0.05): data, and no conflict."""
    idata = _conjugate(0, 10, 1, 1)
    (q,) = with_support(idata, [_theta(idata)])
    assert q.support["contraction"] == pytest.approx(0.99, abs=0.005)
    assert q.support["prior_sensitivity"] < 0.01 and q.support["likelihood_sensitivity"] >= SENSITIVITY
    assert q.label_support == "data" and not q.conflict and not q.caveats


def test_a_posterior_little_narrower_than_its_prior_is_weak():
    """Prior Normal(0, 1), one observation of SE 2: contraction 1 - 0.8 = 0.2, between the
    thresholds. The prior sensitivity is above 0.05, the likelihood's below it: no conflict."""
    idata = _conjugate(0, 1, 0, 2)
    (q,) = with_support(idata, [_theta(idata)])
    assert q.support["contraction"] == pytest.approx(0.2, abs=0.05)
    assert q.support["prior_sensitivity"] >= SENSITIVITY > q.support["likelihood_sensitivity"]
    assert q.label_support == "weak" and not q.conflict


@pytest.mark.parametrize("variance_ratio, expected", [
    (0.92, "prior"), (0.88, "weak"),          # contraction 0.08 and 0.12 against CONTRACTION_PRIOR = 0.1
    (0.52, "weak"), (0.48, "data")])          # 0.48 and 0.52 against CONTRACTION_DATA = 0.5
def test_contraction_thresholds_of_the_label(variance_ratio, expected):
    """Posterior draws that are the prior draws scaled: the contraction is exactly one minus
    the squared scale. Without power-scaling groups the label rests on contraction alone."""
    assert CONTRACTION_PRIOR == 0.1 and CONTRACTION_DATA == 0.5
    prior = np.random.default_rng(3).normal(0, 1, 4000)
    q = _quantity(draws=np.sqrt(variance_ratio) * prior, prior=prior)
    (out,) = with_support(_no_sensitivity(), [q])
    assert out.support["contraction"] == pytest.approx(1 - variance_ratio)
    assert np.isnan(out.support["prior_sensitivity"]) and out.label_support == expected


@pytest.mark.parametrize("scale, to_scale", [
    ("percent", lambda x: 100 * expit(x)), ("odds ratio", np.exp), ("ratio of means", np.exp),
    ("percent reduction", lambda x: 100 * (1 - np.exp(x))), ("correlation", np.tanh)])
def test_contraction_is_measured_where_the_quantity_is_unbounded(scale, to_scale):
    """A posterior that is its prior moved, not narrowed, on the unbounded scale is prior,
    though on the reported scale it looks narrower (a percentage near 100, a ratio near 0)."""
    x = np.random.default_rng(4).normal(0, 0.3, 4000)
    shift = -2.0 if scale in ("odds ratio", "ratio of means", "percent reduction") else 2.0
    prior, post = to_scale(x), to_scale(x + shift)
    assert contraction(post, prior, "raw") > 0.5
    q = _quantity(scale=scale, draws=post, prior=prior)
    (out,) = with_support(_no_sensitivity(), [q])
    assert out.support["contraction"] == pytest.approx(0.0, abs=1e-9) and out.label_support == "prior"


def test_no_study_or_an_extrapolation_is_prior_whatever_the_draws():
    idata = _conjugate(0, 10, 1, 1)
    base = _theta(idata)
    out = with_support(idata, [base, replace(base, studies_informing=0), replace(base, extrapolation=True)])
    assert [q.label_support for q in out] == ["data", "prior", "prior"]
    assert all(q.support["contraction"] > 0.98 for q in out)


def test_a_posterior_shifted_far_from_a_tight_prior_is_a_conflict():
    """Prior Normal(0, 1), data at 6 with SE 0.6: the posterior (mean 4.4, SD 0.51) sits 4.4
    prior SDs from the prior's mean. Contraction 0.74 would say data, but both power-scaling
    sensitivities reach 0.05: weak, flagged, with the caveat in words. The same data under
    a wide prior: data, no conflict."""
    tight, wide = _conjugate(0, 1, 6, 0.6), _conjugate(0, 10, 6, 0.6)
    (q,) = with_support(tight, [_theta(tight)])
    assert q.support["contraction"] > CONTRACTION_DATA
    assert q.support["prior_sensitivity"] >= SENSITIVITY and q.support["likelihood_sensitivity"] >= SENSITIVITY
    assert q.label_support == "weak" and q.conflict
    assert q.caveats == (conflict_caveat(q.support),) and q.caveats[0].startswith(f"{CONFLICT}: ")
    (w,) = with_support(wide, [_theta(wide)])
    assert w.label_support == "data" and not w.conflict and not w.caveats


def test_a_conflict_is_not_flagged_where_no_data_inform_the_quantity():
    idata = _conjugate(0, 1, 6, 0.6)
    out = with_support(idata, [_theta(idata, extrapolation=True), _theta(idata, studies_informing=0)])
    assert all(q.support["prior_sensitivity"] >= SENSITIVITY for q in out)
    assert [(q.label_support, q.conflict, q.caveats) for q in out] == [("prior", False, ())] * 2


@pytest.mark.parametrize("prior_s, like_s, expected", [
    (0.05, 0.05, True), (0.3, 0.3, True), (0.049, 0.3, False), (0.3, 0.049, False), (np.nan, 0.3, False),
    (0.3, np.nan, False)])
def test_conflict_rule(prior_s, like_s, expected):
    assert conflict(prior_s, like_s) is expected


def test_sensitivity_is_read_at_the_quantity_s_own_element():
    """One posterior variable over two profiles: the first informed by the data, the second
    not at all (its posterior is its prior). Each quantity gets the sensitivity of its own
    element of the variable, and its own label."""
    rng = np.random.default_rng(6)
    informed = rng.normal(1.0, 0.1, (4, 1000))                # prior Normal(0, 1), data at 1.0 with SE 0.1
    free = rng.normal(0, 1, (4, 1000))                          # no data: posterior = prior
    p = np.stack([informed, free], axis=-1)
    log_prior = norm.logpdf(p, 0, 1).sum(-1)
    idata = az.from_dict(posterior={"p": p, "log_prior": log_prior},
                         prior={"p": rng.normal(0, 1, (1, 4000, 2))},
                         log_likelihood={"y": norm.logpdf(1.0, informed, 0.1)[..., None]},
                         coords={"profile": ["a", "b"]}, dims={"p": ["profile"], "y": ["row"]})
    idata.add_groups(log_prior={"log_prior": log_prior})
    qs = [_quantity(label=lab, draws=idata.posterior["p"].sel(profile=lab).values.ravel(),
                    prior=idata.prior["p"].sel(profile=lab).values.ravel(), source=("p", {"profile": lab}))
          for lab in ("a", "b")]
    a, b = with_support(idata, qs)
    assert a.support["prior_sensitivity"] < SENSITIVITY <= b.support["prior_sensitivity"]
    assert a.support["likelihood_sensitivity"] >= SENSITIVITY > b.support["likelihood_sensitivity"]
    assert (a.label_support, b.label_support) == ("data", "prior")


def test_a_quantity_without_a_posterior_variable_is_measured_on_its_draws():
    """A quantity computed from the draws (no ``source``) gets the power-scaling sensitivity
    of its own draws: the same numbers as the variable it equals; draws that do not match the
    fit's chains and draws get none."""
    idata = _conjugate(0, 1, 6, 0.6)
    by_variable, by_draws, other = with_support(idata, [_theta(idata), _theta(idata, source=None),
                                                        _theta(idata, source=None, draws=np.zeros(10))])
    for measure in ("prior_sensitivity", "likelihood_sensitivity"):
        assert by_draws.support[measure] == pytest.approx(by_variable.support[measure], rel=1e-9)
        assert np.isnan(other.support[measure])
    assert by_draws.conflict and by_draws.label_support == "weak"


def test_a_fit_with_one_posterior_variable_gets_its_sensitivity():
    idata = _conjugate(0, 1, 6, 0.6)
    one = az.InferenceData(posterior=idata.posterior[["theta"]], prior=idata.prior,
                           log_likelihood=idata.log_likelihood, log_prior=idata.log_prior)
    (q,) = with_support(one, [_theta(one)])
    assert q.support["prior_sensitivity"] >= SENSITIVITY and q.conflict


def _part(key, variance_ratio, studies=5, **kw):
    """A quantity whose contraction is 1 - variance_ratio exactly (its posterior is its prior scaled)."""
    prior = np.random.default_rng(7).normal(0, 1, 4000)
    return Quantity(key=key, outcome="mortality", label=key, description=key, scale="raw",
                    draws=np.sqrt(variance_ratio) * prior, prior=prior, studies_informing=studies, **kw)


TYPICAL, TAU = QuantityId("mortality", "mortality_typical"), QuantityId("mortality", "tau")


@pytest.mark.parametrize("tau_ratio, parts, expected, limited_by", [
    (0.1, (TYPICAL, TAU), "data", ""),                          # both parts data: its own label
    (0.7, (TYPICAL, TAU), "weak", "tau (weak)"),                # tau weak (contraction 0.3)
    (0.97, (TYPICAL, TAU), "prior", "tau (prior)"),             # tau prior (contraction 0.03)
    (0.7, (TAU, QuantityId("mortality", "other")), "prior", "tau (weak), other (prior)"),   # the weakest of two
    (0.7, (QuantityId("crp", "tau"),), "data", "")])            # an id the analysis does not hold: nothing to rest on
def test_a_quantity_is_no_stronger_than_what_it_rests_on(tau_ratio, parts, expected, limited_by):
    qs = [_part("mortality_typical", 0.1), _part("tau", tau_ratio), _part("other", 1.0),
          _part("mortality_new", 0.1, rests_on=parts)]
    out = {q.key: q for q in with_support(_no_sensitivity(), qs)}
    assert [out[k].label_support for k in ("mortality_typical", "other")] == ["data", "prior"]
    assert out["mortality_new"].label_support == expected and out["mortality_new"].support["limited_by"] == limited_by
    assert out["mortality_new"].support["contraction"] == pytest.approx(0.9)      # its own measures are kept


def test_resting_on_stronger_quantities_does_not_raise_a_label():
    qs = [_part("mortality_typical", 0.1), _part("tau", 0.1), _part("mortality_new", 0.7, rests_on=(TYPICAL, TAU))]
    out = with_support(_no_sensitivity(), qs)
    assert out[2].label_support == "weak" and out[2].support["limited_by"] == ""


def test_a_part_is_found_by_its_levels_not_by_its_kind_alone():
    """A prediction for one trigger rests on that trigger's typical study, not on another's."""
    infection = {"trigger": "infection"}
    qs = [_part("mortality_typical", 0.1, levels=infection),
          _part("mortality_typical", 0.97, levels={"trigger": "malignancy"}),
          _part("mortality_new", 0.1, levels=infection,
                rests_on=(QuantityId.of("mortality", "mortality_typical", infection),))]
    assert [q.label_support for q in with_support(_no_sensitivity(), qs)] == ["data", "prior", "data"]


def test_why_a_quantity_is_weaker_than_its_measures_is_said():
    qs = [_part("mortality_typical", 0.9), _part("tau", 0.7), _part("mortality_new", 0.1, rests_on=(TYPICAL, TAU))]
    new = with_support(_no_sensitivity(), qs)[2]
    assert rests_note(new) == "prior: it rests on mortality_typical (prior), the between-study SD (weak)"
    assert rests_note(new, {"mortality_typical": "the typical study's mortality"}) == \
        "prior: it rests on the typical study's mortality (prior), the between-study SD (weak)"
    assert rests_note(with_support(_no_sensitivity(), [_part("mortality_new", 0.1)])[0]) == ""


def test_a_conflict_statement_leads_with_the_probability():
    """Mortality on the logit scale: a tight prior at 88% against data at 10% is a conflict,
    and the statement of the typical study leads with P(mortality < 20%) and says the size
    depends on the prior; under a wide prior it leads with the size."""
    from hlh_meta.analyses.mortality import Mortality

    texts = {}
    for name, (prior_mean, prior_sd) in {"tight": (2.0, 0.3), "wide": (0.0, 10.0)}.items():
        idata = _conjugate(prior_mean, prior_sd, logit(0.1), 0.2)
        typical = _theta(idata, key="mortality_typical", outcome="mortality", label="pooled", scale="percent",
                         draws=100 * expit(idata.posterior["theta"].values.ravel()),
                         prior=100 * expit(idata.prior["theta"].values.ravel()), thresholds=(10, 20, 30))
        new = replace(typical, key="mortality_new", rests_on=(typical.id,))
        qs = with_support(idata, [typical, new])
        assert qs[0].conflict is (name == "tight")
        (text,) = [t for q, t in Mortality().statements(qs) if q.key == "mortality_typical"]
        texts[name] = text
    assert texts["tight"].startswith("Pooled: P(mortality < 20%) ") and "so the size depends on the prior" in texts["tight"]
    assert texts["wide"].startswith("Pooled: mortality of a typical study ") and "depends on the prior" not in texts["wide"]


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


def test_a_real_fit_end_to_end_labels_its_quantities_and_a_variant_built_to_move_one_is_not_robust(
        ds, monkeypatch, tmp_path):
    """One small fit through the whole analysis: each quantity's support comes from the fit's
    own prior draws, log_prior and log_likelihood (finite measures), a new study's prediction
    is no stronger than the typical study and tau it rests on, and a prior variant pinning mu
    far from the data moves mortality, which the verdict says (the old rule, every median
    inside the primary 95% interval, could not fail here)."""
    from hlh_meta.analyses import analysis_for, load_spec
    from hlh_meta.analyses.families import prior_family
    from hlh_meta.analyses.support import LABELS

    mortality = analysis_for("mortality")
    monkeypatch.setitem(type(mortality).families, "priors",
                        prior_family([("mu", {"dist": "Normal", "mu": 2.0, "sigma": 0.2})]))
    path = tmp_path / "m.toml"
    path.write_text("[analysis]\nname='m'\nkind='mortality'\n[model]\ncovariates=[]\n[sampling]\ndraws=400\ntune=400\n"
                    "chains=2\nseed=3\n[sensitivity]\nfamilies=['priors']\n")
    res = hm.run_analysis(load_spec(path), ds, sensitivity=True, executor="serial")
    by_key = {q.key: q for q in res.quantities if not q.levels}
    for key in ("mortality_typical", "mortality_new", "tau"):
        q = by_key[key]
        assert q.label_support in LABELS and 0 < q.support["contraction"] <= 1, key
        assert np.isfinite(q.support["prior_sensitivity"]) and np.isfinite(q.support["likelihood_sensitivity"]), key
    weakest = max(by_key["mortality_typical"].label_support, by_key["tau"].label_support, key=LABELS.index)
    assert LABELS.index(by_key["mortality_new"].label_support) >= LABELS.index(weakest)
    assert set(res.table("derived")["support"]) <= set(LABELS)
    rob = res.table("robustness").set_index("key")
    row = rob.loc["mortality_typical"]
    row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
    assert not row["robust"] and row["largest_shift_sd"] >= 0.5
    # the report says so beside the finding itself and in its row of the summary of findings
    from hlh_meta.report.html import _by_support, _findings_rows, _robustness_words

    words = _robustness_words(res)
    typical = str(by_key["mortality_typical"].id)
    assert words[typical].startswith("Sensitivity analyses: NOT robust") and row["most_influential_variant"] in words[typical]
    listed = [t for group in _by_support(res.analysis.statements(res.quantities), words).values() for t in group]
    statement = next(t for q, t in res.analysis.statements(res.quantities) if q is by_key["mortality_typical"])
    assert f"{statement} {words[typical]}" in listed
    ids = list(res.table("summary_of_findings")["id"])
    assert any(words.get(i) for i in ids), ids
    for i, r in zip(ids, _findings_rows(res)):
        assert (words[i] in r["context"]) if words.get(i) else "Sensitivity" not in r["context"]
    from hlh_meta.report.html import render

    assert "Not run for this report" not in render(res) and "Sensitivity analyses not run" not in res._repr_html_()


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
