"""The comparison analysis (anakinra vs control, arms.csv): which arms enter, the empty
table, and the odds ratio against independent computations (quadrature over the
posterior of a single study; Mantel-Haenszel and the known truth for simulated studies).

Every arm row below is made up for the test, in a temporary copy of the tables."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

import hlh_meta as hm
from hlh_meta.analyses import analysis_for, load_spec
from hlh_meta.errors import SpecError
from hlh_meta.spec import bundled_specs_dir

ARMS_HEADER = "study_id,arm,design,deaths,n,count_method,source_locator,notes\n"
FAST = {"draws": 1000, "tune": 500, "chains": 4, "seed": 11}


def spec(**patch):
    return load_spec(bundled_specs_dir() / "comparison.toml").patched({"sampling": FAST, **patch})


def add_studies(folder, *ids, covid=False):
    """Synthetic comparative studies appended to the copy's studies.csv."""
    with open(folder / "studies.csv", "a", encoding="utf-8") as f:
        for sid in ids:
            f.write(f'{sid},"Synthetic {sid}",2020,,,trial,,,500,adult,,iv,500,infection,,high,synthetic,true,'
                    f'synthetic,peer_reviewed_full,{str(covid).lower()},full_text,unknown\n')


def write_arms(folder, rows):
    """rows: (study, arm, design, deaths, n, count_method)."""
    text = ARMS_HEADER + "".join(f"{s},{a},{d},{'' if k is None else k},{n},{m},synthetic,\n" for s, a, d, k, n, m in rows)
    (folder / "arms.csv").write_text(text, encoding="utf-8")


# --- which arms enter -------------------------------------------------------------------

def test_bundled_arms_table_is_empty_and_gives_an_empty_frame(ds):
    sp = spec()
    used, left = analysis_for(sp).frame(ds, sp)
    assert used.empty and left.empty
    assert {"study_id", "arm", "deaths", "n", "anakinra"} <= set(used.columns)
    assert "excluded_because" in left.columns
    with pytest.raises(SpecError, match="nothing to compare"):
        analysis_for(sp).inputs(ds, sp, used)


def test_a_folder_without_arms_csv_gives_an_empty_frame(data_copy):
    ds = hm.read_dataset(data_copy)
    used, left = analysis_for("comparison").frame(ds, spec())
    assert used.empty and left.empty


def test_only_studies_with_both_arms_reported_enter(data_copy):
    add_studies(data_copy, "trial_a", "trial_b")
    add_studies(data_copy, "trial_covid", covid=True)
    write_arms(data_copy, [("trial_a", "anakinra", "randomised", 4, 15, "reported"),
                           ("trial_a", "control", "randomised", 9, 14, "reported"),
                           ("trial_b", "anakinra", "observational", 3, 10, "reported"),
                           ("trial_b", "control", "observational", None, 12, "not_reported"),
                           ("trial_covid", "anakinra", "observational", 2, 10, "reported"),
                           ("trial_covid", "control", "observational", 5, 10, "reported")])
    ds = hm.read_dataset(data_copy)
    used, left = analysis_for("comparison").frame(ds, spec())
    assert used["label"].tolist() == ["trial_a: anakinra", "trial_a: control"]
    assert used["anakinra"].tolist() == [1.0, 0.0]
    why = dict(zip(left["study_id"] + ":" + left["arm"], left["excluded_because"]))
    assert why["trial_b:anakinra"] == why["trial_b:control"] == "deaths not reported for control arm"
    assert why["trial_covid:control"].startswith("COVID-19 setting")
    used, _ = analysis_for("comparison").frame(ds, spec(data={"covid19": "include", "exclude_studies": ["trial_a"]}))
    assert set(used["study_id"]) == {"trial_covid"}


def test_the_arm_is_the_only_covariate(ds):
    with pytest.raises(SpecError) as info:
        analysis_for("comparison").frame(ds, spec(model={"covariates": ["trigger"]}))
    assert info.value.key == "model.covariates"


# --- the odds ratio against independent computations -------------------------------------

def _grid_posterior(y_a, n_a, y_c, n_c, sd_mu=1.5, sd_beta=1.0):
    """Posterior of (mu, beta) on a grid for one study with tau = 0: logit p_control = mu,
    logit p_anakinra = mu + beta; returns the beta grid and its marginal, and the
    posterior draws-free quantiles of the control-arm mortality."""
    mu = np.linspace(-6, 6, 1201)
    beta = np.linspace(-7, 7, 1401)
    M, B = np.meshgrid(mu, beta, indexing="ij")
    log = (stats.norm.logpdf(M, 0, sd_mu) + stats.norm.logpdf(B, 0, sd_beta)
           + stats.binom.logpmf(y_c, n_c, expit(M)) + stats.binom.logpmf(y_a, n_a, expit(M + B)))
    w = np.exp(log - logsumexp(log))
    return mu, beta, w.sum(axis=0), w.sum(axis=1)


def _quantile(grid, weights, q):
    cdf = np.cumsum(weights) / weights.sum()
    return float(np.interp(q, cdf, grid))


def test_single_study_odds_ratio_matches_quadrature(data_copy):
    add_studies(data_copy, "trial_a")
    write_arms(data_copy, [("trial_a", "anakinra", "randomised", 4, 15, "reported"),
                           ("trial_a", "control", "randomised", 9, 14, "reported")])
    ds = hm.read_dataset(data_copy)
    sp = spec(priors={"tau": {"dist": "Fixed", "value": 0.0}})
    res = hm.run_analysis(sp, ds)
    draws = np.log(next(q for q in res.quantities if q.key == "odds_ratio").draws)
    assert hm.diagnostics(res.idata).passed
    mu, beta, w_beta, w_mu = _grid_posterior(4, 15, 9, 14)
    exact_mean = float((beta * w_beta).sum())
    post = az.convert_to_dataset(res.idata.posterior["beta"].sel(covariate="anakinra"))
    assert abs(draws.mean() - exact_mean) < 4 * float(az.mcse(post, method="mean")["beta"])
    for q in (0.025, 0.5, 0.975):
        mcse = float(az.mcse(post, method="quantile", prob=q)["beta"])
        assert abs(np.quantile(draws, q) - _quantile(beta, w_beta, q)) < max(4 * mcse, 0.02), q
    # the control arm of a typical study is expit(mu)
    control = next(q for q in res.quantities if str(q.id) == "mortality:mortality_typical:arm=control")
    assert np.median(control.draws) == pytest.approx(100 * expit(_quantile(mu, w_mu, 0.5)), abs=1.5)
    # the report says what the estimate rests on
    analysis = analysis_for(sp)
    assert "rests on one study" in analysis.headline(res.quantities)
    assert "rests on one study" in analysis.methods(res.idata)
    assert res.table("data_used")["observed_percent"].round(1).tolist() == [26.7, 64.3]


def test_simulated_studies_recover_the_odds_ratio_and_agree_with_mantel_haenszel(data_copy):
    rng = np.random.default_rng(2024)
    true_log_or, studies = np.log(0.5), [f"sim_{i}" for i in range(6)]
    add_studies(data_copy, *studies)
    rows, tables = [], []
    for sid, base in zip(studies, rng.normal(-0.3, 0.5, size=len(studies))):
        n_a, n_c = 400, 400
        d_a, d_c = rng.binomial(n_a, expit(base + true_log_or)), rng.binomial(n_c, expit(base))
        rows += [(sid, "anakinra", "randomised", d_a, n_a, "reported"), (sid, "control", "randomised", d_c, n_c, "reported")]
        tables.append((d_a, n_a - d_a, d_c, n_c - d_c))
    write_arms(data_copy, rows)
    ds = hm.read_dataset(data_copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hm.run_analysis(spec(), ds)
    draws = np.log(next(q for q in res.quantities if q.key == "odds_ratio").draws)
    lo, med, hi = np.quantile(draws, [0.025, 0.5, 0.975])
    assert lo < true_log_or < hi
    a, b, c, d = (np.array(x, dtype=float) for x in zip(*tables))
    n = a + b + c + d
    mantel_haenszel = np.log((a * d / n).sum() / (b * c / n).sum())
    assert abs(med - mantel_haenszel) < 0.05
    assert "rests on 6 studies" in analysis_for("comparison").headline(res.quantities)
    tau = next(q for q in res.quantities if q.key == "tau")
    assert not tau.extrapolation and tau.studies_informing == 6
