"""The mixture likelihood for strata that mix categories, against independent computations:
quadrature of the exact posterior (known and unknown shares), a simulation with known
truth, and the composition constraints against their equivalent known shares."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

import hlh_meta as hm

#: one study (tau fixed at 0): a stratum of category A, one of B, and one mixing them
ROWS = pd.DataFrame({"study": ["s", "s", "s"], "events": [2, 7, 5], "total": [10, 12, 15], "b": [0.0, 1.0, 0.5]})
FIXED = {"tau": {"dist": "Fixed", "value": 0.0}}


def _grid_summary(values: np.ndarray, logpost: np.ndarray, axis_sum) -> dict:
    w = np.exp(logpost - logpost.max())
    mass = w.sum(axis=axis_sum)
    mass /= mass.sum()
    mean = float(mass @ values)
    sd = float(np.sqrt(mass @ (values - mean) ** 2))
    cdf = np.cumsum(mass)
    return {"mean": mean, "sd": sd, "q2.5": float(np.interp(0.025, cdf, values)),
            "q97.5": float(np.interp(0.975, cdf, values))}


def _agree(draws: np.ndarray, exact: dict, ess: float, name: str) -> None:
    mcse = exact["sd"] / np.sqrt(ess)
    assert abs(draws.mean() - exact["mean"]) < 4 * mcse + 0.01, (name, draws.mean(), exact)
    assert abs(draws.std() - exact["sd"]) < 4 * exact["sd"] / np.sqrt(2 * ess) + 0.02, (name, draws.std(), exact)
    for q, key in ((0.025, "q2.5"), (0.975, "q97.5")):
        assert abs(np.quantile(draws, q) - exact[key]) < 10 * mcse + 0.03, (name, key)


def _loglik(y, n, p):
    return stats.binom.logpmf(y, n, np.clip(p, 1e-300, 1 - 1e-16))


def test_known_mixture_matches_quadrature():
    """p of the mixed stratum is 0.5 expit(mu) + 0.5 expit(mu + beta), not expit(mu + beta / 2)."""
    idata = hm.fit_binomial(ROWS, covariates=["b"], fractions={"g": ["b"]}, priors=FIXED, draws=2000, seed=3,
                            coding="treatment")     # independent N(0, 1.5), N(0, 1) priors (test_coding: the other)
    mu = np.linspace(-5, 4, 361)[:, None]
    beta = np.linspace(-5, 6, 441)[None, :]
    lp = stats.norm.logpdf(mu, 0, 1.5) + stats.norm.logpdf(beta, 0, 1)
    for y, n, share in zip(ROWS["events"], ROWS["total"], ROWS["b"]):
        lp = lp + _loglik(y, n, (1 - share) * expit(mu) + share * expit(mu + beta))
    ess = az.ess(idata, var_names=["mu", "beta"])
    _agree(idata.posterior["mu"].values.ravel(), _grid_summary(mu[:, 0], lp, 1), float(ess["mu"].values), "mu")
    _agree(idata.posterior["beta"].values.ravel(), _grid_summary(beta[0], lp, 0), float(ess["beta"].values[0]), "beta")
    # the stored row probability and log-likelihood are those of the mixture
    post = idata.posterior
    p_mixed = 0.5 * expit(post["mu"].values) + 0.5 * expit(post["mu"].values + post["beta"].values[..., 0])
    np.testing.assert_allclose(post["p"].values[..., 2], p_mixed, rtol=1e-10)
    np.testing.assert_allclose(idata.log_likelihood["events"].values,
                               _loglik(ROWS["events"].to_numpy(), ROWS["total"].to_numpy(), post["p"].values), rtol=1e-9)


def test_unknown_share_matches_quadrature():
    """The mixed stratum's share is unknown (flat prior): integrate over it on a 3-d grid."""
    frame = ROWS.assign(b=[0.0, 1.0, np.nan])
    idata = hm.fit_binomial(frame, covariates=["b"], fractions={"g": ["b"]}, priors=FIXED, draws=2000, seed=4,
                            coding="treatment")
    mu = np.linspace(-5, 4, 121)[:, None, None]
    beta = np.linspace(-5, 6, 141)[None, :, None]
    share = (np.arange(60) + 0.5)[None, None, :] / 60
    lp = stats.norm.logpdf(mu, 0, 1.5) + stats.norm.logpdf(beta, 0, 1) + 0 * share
    lp = lp + _loglik(2, 10, expit(mu)) + _loglik(7, 12, expit(mu + beta))
    lp = lp + _loglik(5, 15, (1 - share) * expit(mu) + share * expit(mu + beta))
    ess = az.ess(idata, var_names=["mu", "beta", "g_share"])
    _agree(idata.posterior["mu"].values.ravel(), _grid_summary(mu[:, 0, 0], lp, (1, 2)), float(ess["mu"].values), "mu")
    _agree(idata.posterior["beta"].values.ravel(), _grid_summary(beta[0, :, 0], lp, (0, 2)),
           float(ess["beta"].values[0]), "beta")
    s = idata.posterior["g_share"].isel(g_unit=0).sel(g_category="b").values.ravel()
    _agree(s, _grid_summary(share[0, 0], lp, (0, 1)), float(ess["g_share"].min()), "share")


@pytest.mark.parametrize("seed", [5, 6])
def test_mixture_recovers_known_parameters(seed):
    """Strata mixing two categories in known proportions, simulated from the mixture."""
    rng = np.random.default_rng(seed)
    k, mu, beta, tau = 24, -1.2, 1.5, 0.3
    share = rng.uniform(0, 1, k)
    n = rng.integers(80, 200, k)
    u = tau * rng.standard_normal(k)
    p = (1 - share) * expit(mu + u) + share * expit(mu + beta + u)
    frame = pd.DataFrame({"study": [f"s{i}" for i in range(k)], "events": rng.binomial(n, p), "total": n, "b": share})
    idata = hm.fit_binomial(frame, covariates=["b"], fractions={"g": ["b"]}, seed=seed)
    for name, truth in (("mu", mu), ("beta", beta)):
        d = idata.posterior[name].values.ravel()
        assert np.quantile(d, 0.005) < truth < np.quantile(d, 0.995), name


def test_excluded_category_equals_known_share():
    """An unknown composition that excludes one of two categories is that composition known:
    the two fits agree within Monte Carlo error."""
    known = hm.fit_binomial(ROWS.assign(b=[0.0, 1.0, 1.0]), covariates=["b"], fractions={"g": ["b"]}, priors=FIXED,
                            draws=2000, seed=7)
    unknown = hm.fit_binomial(ROWS.assign(b=[0.0, 1.0, np.nan]), covariates=["b"], fractions={"g": ["b"]},
                              priors=FIXED, composition={"g": {"2": {"exclude": ["g[rest]"]}}}, draws=2000, seed=8)
    for name in ("mu", "beta"):
        a, b = known.posterior[name].values.ravel(), unknown.posterior[name].values.ravel()
        se = np.sqrt(a.var() / float(az.ess(known, var_names=[name])[name].min())
                     + b.var() / float(az.ess(unknown, var_names=[name])[name].min()))
        assert abs(a.mean() - b.mean()) < 4 * se + 0.01, name


def test_population_profile_is_the_weighted_mean_of_the_strata():
    """With tau = 0, the profile that takes every group as in the data is the n-weighted mean
    of the strata's probabilities, draw by draw; a profile fixing the category is its own."""
    frame = ROWS.assign(b=[0.0, 1.0, np.nan])
    profiles = pd.DataFrame({"b": [np.nan, 0.0, 1.0]}, index=["all", "A", "B"])
    idata = hm.fit_binomial(frame, covariates=["b"], fractions={"g": ["b"]}, priors=FIXED, profiles=profiles,
                            draws=300, tune=300, seed=9)
    post = idata.posterior
    n = ROWS["total"].to_numpy()
    np.testing.assert_allclose(post["p_typical"].sel(profile="all").values, (post["p"].values * n).sum(-1) / n.sum(),
                               rtol=1e-10)
    np.testing.assert_allclose(post["p_typical"].sel(profile="A").values, expit(post["mu"].values), rtol=1e-10)


def test_heldout_rows_are_scored_by_the_same_likelihood():
    """Rows given weight 0 keep their log predictive density (their study effect from its
    prior): the binomial log-pmf at the stored probabilities."""
    frame = pd.DataFrame({"study": list("abcd"), "events": [2, 5, 0, 9], "total": [10, 20, 13, 30]})
    idata = hm.fit_binomial(frame, weights=[1, 1, 1, 0], draws=300, tune=300, seed=10)
    held = idata.heldout_log_likelihood["events"]
    assert list(held["row"].values) == ["3"]
    np.testing.assert_allclose(held.values[..., 0], _loglik(9, 30, idata.posterior["p"].values[..., 3]), rtol=1e-9)
    assert idata.log_likelihood["events"].sizes["row"] == 3
    # logsumexp over draws: a finite log predictive density
    assert np.isfinite(logsumexp(held.values.ravel()))


def test_gate_failure_and_one_study_warn():
    from hlh_meta.inference import GateWarning, ThinDataWarning

    with pytest.warns(ThinDataWarning, match="one study"):
        hm.fit_binomial(ROWS, draws=200, tune=200, seed=1)
    with pytest.warns(GateWarning, match="diagnostics gate failed"):
        hm.fit_binomial(ROWS.assign(study=list("abc")), draws=5, tune=5, chains=2, seed=1)
