"""Leave-one-study-out by importance sampling against exact refits (analyses/crossval.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.analyses.crossval import PARETO_K_REFIT, exact_lpd, psis_lpd, study_loglik


def test_importance_sampling_agrees_with_exact_refits_on_twelve_studies():
    """12 simulated small studies (4-15 patients, so that no study pins its own effect down and
    importance sampling applies to most): for every study whose Pareto k is at most the
    refit threshold the importance-sampling estimate of its log predictive density agrees
    with the exact refit without it within their Monte Carlo errors."""
    rng = np.random.default_rng(12)
    k = 12
    x = np.tile([0.0, 1.0], k // 2)
    n = rng.integers(4, 16, k)
    p = 1 / (1 + np.exp(-(-1.0 + 0.8 * x + 0.3 * rng.standard_normal(k))))
    frame = pd.DataFrame({"study": [f"s{i:02d}" for i in range(k)], "events": rng.binomial(n, p), "total": n, "x": x})
    fit = dict(covariates=["x"], draws=500, tune=500, seed=3)
    full = hm.fit_binomial(frame, **fit)
    approx = psis_lpd(study_loglik(full, "events"))
    assert set(approx) == set(frame["study"])
    checked = 0
    for i, sid in enumerate(frame["study"]):
        est, se, pareto_k = approx[sid]
        weights = np.ones(k)
        weights[i] = 0
        held = hm.fit_binomial(frame, weights=weights, **fit)
        exact, exact_se = exact_lpd(held.heldout_log_likelihood["events"].sum("row").values)
        assert 0 < exact_se < 0.1 and 0 < se < 0.2
        if pareto_k <= PARETO_K_REFIT:
            checked += 1
            assert abs(est - exact) < 4 * np.hypot(se, exact_se) + 0.05, (sid, est, exact, se, exact_se)
    assert checked >= 4


def test_exact_lpd_is_log_mean_exp_with_its_error():
    rng = np.random.default_rng(0)
    ll = rng.normal(-3.0, 0.5, (4, 1000))
    est, se = exact_lpd(ll)
    assert est == pytest.approx(np.log(np.exp(ll).mean()), abs=1e-12)
    e = np.exp(ll)
    assert abs(se - e.std() / np.sqrt(e.size) / e.mean()) < 0.2 * se       # independent draws: ESS ~ draws


def test_bundled_comparison_agrees_with_exact_refits(ds):
    """On the bundled data (the small test spec), each covariate set's elpd with importance
    sampling first agrees with the all-exact comparison within their Monte Carlo errors."""
    import warnings
    from pathlib import Path

    from hlh_meta.analyses import analysis_for, load_spec

    spec = load_spec(Path(__file__).parent / "specs" / "mortality_small.toml")
    analysis = analysis_for(spec)
    spec = analysis.resolve(ds, spec)
    used, _ = analysis.frame(ds, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = analysis.compare(ds, spec, used).set_index("covariate_set")
        exact = analysis.compare(ds, spec, used, refit_k=-np.inf).set_index("covariate_set")
    assert (exact["refits"] == exact["studies"]).all() and (fast["refits"] <= fast["studies"]).all()
    for name in exact.index:
        tol = 4 * np.hypot(fast.loc[name, "elpd_mcse"], exact.loc[name, "elpd_mcse"]) + 0.1
        assert abs(fast.loc[name, "elpd_loso"] - exact.loc[name, "elpd_loso"]) < tol, name
