"""Exact normal-normal engine against independent answers.

Brute force: the joint posterior of (mu, [beta,] tau) is evaluated on a plain grid straight
from prod_i N(y_i; mu + x_i beta, sqrt(se_i^2 + tau^2)) times the priors, written here
without the engine's algebra; marginals are integrated with Simpson's rule and their
quantiles read off a cubic spline of the marginal density.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, interpolate, optimize, stats

from hlh_meta.models.normal_exact import exact_normal_posterior as fit_normal_exact

SCHOOLS_Y = np.array([28, 8, -3, 7, -1, 1, 18, 12.0])
SCHOOLS_SE = np.array([15, 10, 16, 11, 9, 11, 10, 18.0])
SCHOOLS_PRIORS = {"mu": {"dist": "Normal", "mu": 0, "sigma": 20}, "tau": {"dist": "HalfCauchy", "beta": 5}}
LOGRATIO_Y = np.array([-0.35, -0.10, -0.62, 0.05, -0.28])
LOGRATIO_SE = np.array([0.18, 0.25, 0.30, 0.22, 0.15])
REG_Y = np.array([-0.62, -0.35, -0.08, 0.04, -0.45, 0.12])
REG_SE = np.array([0.20, 0.15, 0.25, 0.18, 0.30, 0.22])
REG_X = np.array([0.1, 0.3, 0.6, 0.8, 0.2, 0.9])


def normal_logpdf(x, m, s):
    return -0.5 * ((x - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)


def loglik(y, se, mean, tau):
    """sum_i log N(y_i; mean_i, sqrt(se_i^2 + tau^2)); the study axis is last."""
    return normal_logpdf(y, mean, np.sqrt(se**2 + tau**2)).sum(-1)


def marginal(grid: np.ndarray, dens: np.ndarray, probs=(0.025, 0.975)) -> dict:
    """Mean, sd and quantiles of an unnormalised density tabulated on ``grid``."""
    z = integrate.simpson(dens, x=grid)
    mean = integrate.simpson(grid * dens, x=grid) / z
    sd = np.sqrt(integrate.simpson((grid - mean) ** 2 * dens, x=grid) / z)
    F = interpolate.CubicSpline(grid, dens / z).antiderivative()
    qs = [optimize.brentq(lambda v: F(v) - F(grid[0]) - p, grid[0], grid[-1], xtol=1e-12) for p in probs]
    return {"mean": mean, "sd": sd, "q": np.array(qs)}


def check(fit, name: str, ref: dict, rtol: float = 2e-4) -> None:
    np.testing.assert_allclose(fit.mean(name), ref["mean"], rtol=rtol, atol=rtol * ref["sd"], err_msg=f"{name} mean")
    np.testing.assert_allclose(fit.sd(name), ref["sd"], rtol=rtol, err_msg=f"{name} sd")
    np.testing.assert_allclose(fit.quantile(name, [0.025, 0.975]), ref["q"], rtol=rtol, atol=rtol * ref["sd"],
                               err_msg=f"{name} quantiles")


# --------------------------------------------------------------------------- univariate, 2-D brute force

def brute_2d(y, se, mu_prior, tau_logprior, mu_grid, tau_grid):
    mu, tau = np.meshgrid(mu_grid, tau_grid, indexing="ij")
    logp = loglik(y, se, mu[..., None], tau[..., None]) + normal_logpdf(mu, *mu_prior) + tau_logprior(tau)
    p = np.exp(logp - logp.max())
    z = integrate.simpson(integrate.simpson(p, x=tau_grid, axis=1), x=mu_grid)

    def expect(f):
        return integrate.simpson(integrate.simpson(f * p, x=tau_grid, axis=1), x=mu_grid) / z

    # E[theta_i | mu, tau, y]: precision-weighted y_i and mu
    w = tau[..., None] ** 2 / (tau[..., None] ** 2 + se**2)
    theta = w * y + (1 - w) * mu[..., None]
    theta_mean = np.array([expect(theta[..., i]) for i in range(len(y))])
    return {
        "mu": marginal(mu_grid, integrate.simpson(p, x=tau_grid, axis=1)),
        "tau": marginal(tau_grid, integrate.simpson(p, x=mu_grid, axis=0)),
        "evidence": np.log(z) + logp.max(),
        "theta_mean": theta_mean,
        "predictive_var": expect((mu - expect(mu)) ** 2) + expect(tau**2),
    }


def halfcauchy(scale):
    return lambda t: np.log(2 / (np.pi * scale)) - np.log1p((t / scale) ** 2)


def halfnormal(scale):
    return lambda t: np.log(2) + normal_logpdf(t, 0, scale)


CASES = {
    "schools": (SCHOOLS_Y, SCHOOLS_SE, SCHOOLS_PRIORS, (0, 20), halfcauchy(5),
                np.linspace(-50, 65, 461), np.linspace(0, 80, 641)),
    "logratio": (LOGRATIO_Y, LOGRATIO_SE, None, (0, 1), halfnormal(0.5),
                 np.linspace(-4, 3.5, 376), np.linspace(0, 3, 301)),
    "exponential": (LOGRATIO_Y, LOGRATIO_SE, {"tau": {"dist": "Exponential", "lam": 4}}, (0, 1),
                    lambda t: np.log(4) - 4 * t, np.linspace(-4, 3.5, 376), np.linspace(0, 4, 401)),
    "uniform": (LOGRATIO_Y, LOGRATIO_SE, {"tau": {"dist": "Uniform", "lower": 0.05, "upper": 0.8}}, (0, 1),
                lambda t: np.full_like(t, -np.log(0.75)), np.linspace(-4, 3.5, 376), np.linspace(0.05, 0.8, 301)),
}


@pytest.mark.parametrize("case", CASES)
def test_univariate_matches_2d_brute_force(case):
    y, se, priors, mu_prior, tau_logprior, mu_grid, tau_grid = CASES[case]
    fit = fit_normal_exact(y, se, priors=priors)
    ref = brute_2d(y, se, mu_prior, tau_logprior, mu_grid, tau_grid)
    check(fit, "mu", ref["mu"])
    check(fit, "tau", ref["tau"])
    np.testing.assert_allclose(fit.log_evidence, ref["evidence"], atol=1e-4)
    np.testing.assert_allclose(fit.theta_mean, ref["theta_mean"], rtol=1e-3, atol=1e-3 * ref["mu"]["sd"])
    np.testing.assert_allclose(fit.predictive().sd() ** 2, ref["predictive_var"], rtol=1e-3)
    np.testing.assert_allclose(fit.predictive().mean(), ref["mu"]["mean"], rtol=1e-3, atol=1e-3 * ref["mu"]["sd"])


def test_quantile_inverts_cdf_and_summary_layout():
    fit = fit_normal_exact(SCHOOLS_Y, SCHOOLS_SE, priors=SCHOOLS_PRIORS)
    for name in ("mu", "tau"):
        q = fit.quantile(name, [0.1, 0.5, 0.9])
        np.testing.assert_allclose(fit.cdf(name, q), [0.1, 0.5, 0.9], atol=1e-8)
    s = fit.summary()
    assert list(s.index) == ["mu", "tau"] and list(s.columns) == ["mean", "sd", "q2.5", "q50", "q97.5"]
    assert s.loc["tau", "q50"] == pytest.approx(fit.quantile("tau", 0.5))
    tau, dens = fit.tau_density()
    assert np.all(np.isfinite(tau)) and integrate.trapezoid(dens, tau) == pytest.approx(1, abs=1e-4)
    with pytest.raises(KeyError, match="sigma"):
        fit.mean("sigma")


# --------------------------------------------------------------------------- meta-regression, 3-D brute force

def test_regression_matches_3d_brute_force():
    fit = fit_normal_exact(REG_Y, REG_SE, X=REG_X[:, None], covariate_names=["frac"])
    mu_g, beta_g, tau_g = np.linspace(-3, 1.8, 113), np.linspace(-3, 4.4, 113), np.linspace(0, 2.2, 201)
    mu, beta, tau = mu_g[:, None, None], beta_g[None, :, None], tau_g[None, None, :]
    logp = normal_logpdf(mu, 0, 1) + normal_logpdf(beta, 0, 1) + halfnormal(0.5)(tau)
    for y, se, x in zip(REG_Y, REG_SE, REG_X):
        logp = logp + normal_logpdf(y, mu + beta * x, np.sqrt(se**2 + tau**2))
    p = np.exp(logp - logp.max())

    def simpson(f, axes):
        for ax in sorted(axes, reverse=True):
            f = integrate.simpson(f, x=(mu_g, beta_g, tau_g)[ax], axis=ax)
        return f

    check(fit, "mu", marginal(mu_g, simpson(p, (1, 2))))
    check(fit, "frac", marginal(beta_g, simpson(p, (0, 2))))
    check(fit, "tau", marginal(tau_g, simpson(p, (0, 1))))
    # new study at frac = 0.5: theta = mu + 0.5 beta + u
    z = simpson(p, (0, 1, 2))
    lin = mu + 0.5 * beta
    m = simpson(lin * p, (0, 1, 2)) / z
    var = simpson(((lin - m) ** 2 + tau**2) * p, (0, 1, 2)) / z
    pred = fit.predictive([0.5])
    np.testing.assert_allclose([pred.mean(), pred.sd() ** 2], [m, var], rtol=1e-3)


# --------------------------------------------------------------------------- fixed tau: conjugate closed forms

def test_common_effect_equals_conjugate_normal():
    prior_sd = 2.0
    fit = fit_normal_exact(LOGRATIO_Y, LOGRATIO_SE, priors={"mu": {"dist": "Normal", "mu": 0.3, "sigma": prior_sd},
                                                           "tau": {"dist": "Fixed", "value": 0.0}})
    prec = 1 / prior_sd**2 + np.sum(1 / LOGRATIO_SE**2)
    mean = (0.3 / prior_sd**2 + np.sum(LOGRATIO_Y / LOGRATIO_SE**2)) / prec
    post = stats.norm(mean, prec**-0.5)
    assert fit.mean("mu") == pytest.approx(mean, rel=1e-12)
    assert fit.sd("mu") == pytest.approx(post.std(), rel=1e-12)
    np.testing.assert_allclose(fit.quantile("mu", [0.025, 0.5, 0.975]), post.ppf([0.025, 0.5, 0.975]), rtol=1e-9)
    assert fit.mean("tau") == 0 and fit.sd("tau") == 0 and fit.quantile("tau", 0.5) == 0
    evidence = stats.multivariate_normal(np.full(5, 0.3), np.diag(LOGRATIO_SE**2) + prior_sd**2).logpdf(LOGRATIO_Y)
    assert fit.log_evidence == pytest.approx(evidence, rel=1e-12)
    # every study's true effect is mu itself
    np.testing.assert_allclose(fit.theta_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(fit.theta_sd, post.std(), rtol=1e-10)


def test_shrinkage_at_fixed_tau_equals_joint_gaussian_conditioning():
    tau = 0.3
    X = np.column_stack([np.ones(6), REG_X])
    m0, S0 = np.array([0.1, -0.2]), np.diag([1.5**2, 0.8**2])
    fit = fit_normal_exact(REG_Y, REG_SE, X=REG_X, priors={"mu": {"dist": "Normal", "mu": 0.1, "sigma": 1.5},
                                                          "beta": {"dist": "Normal", "mu": -0.2, "sigma": 0.8},
                                                          "tau": {"dist": "Fixed", "value": tau}})
    # theta = X b + u and y = theta + e are jointly Gaussian a priori; condition theta on y
    c_theta = X @ S0 @ X.T + tau**2 * np.eye(6)
    gain = c_theta @ np.linalg.inv(c_theta + np.diag(REG_SE**2))
    mean = X @ m0 + gain @ (REG_Y - X @ m0)
    cov = c_theta - gain @ c_theta
    np.testing.assert_allclose(fit.theta_mean, mean, rtol=1e-10)
    np.testing.assert_allclose(fit.theta_sd, np.sqrt(np.diag(cov)), rtol=1e-10)
    np.testing.assert_allclose(fit.shrunken(2).quantile(0.9), stats.norm(mean[2], np.sqrt(cov[2, 2])).ppf(0.9), rtol=1e-9)
    # coefficients: b | y ~ N(m0 + S0 X' C^-1 (y - X m0), S0 - S0 X' C^-1 X S0)
    C = c_theta + np.diag(REG_SE**2)
    b_mean = m0 + S0 @ X.T @ np.linalg.solve(C, REG_Y - X @ m0)
    b_cov = S0 - S0 @ X.T @ np.linalg.solve(C, X @ S0)
    assert [fit.mean("mu"), fit.mean("x1")] == pytest.approx(b_mean, rel=1e-10)
    assert [fit.sd("mu"), fit.sd("x1")] == pytest.approx(np.sqrt(np.diag(b_cov)), rel=1e-10)
    pred = fit.predictive([0.4])
    x = np.array([1, 0.4])
    assert pred.sd() == pytest.approx(np.sqrt(x @ b_cov @ x + tau**2), rel=1e-10)


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs, match", [
    ({"y": [0.1, 0.2], "se": [0.1]}, "same length"),
    ({"y": [0.1, np.nan], "se": [0.1, 0.2]}, "y must be finite"),
    ({"y": [0.1, 0.2], "se": [0.1, 0.0]}, "se must be finite and > 0"),
    ({"y": [0.1, 0.2], "se": [0.1, np.inf]}, "se must be finite and > 0"),
    ({"y": [0.1, 0.2], "se": [0.1, 0.2], "X": [[1.0], [2.0], [3.0]]}, "X must have one row per study"),
    ({"y": [0.1, 0.2], "se": [0.1, 0.2], "X": [[1.0], [np.nan]]}, "X must be finite"),
    ({"y": [0.1, 0.2], "se": [0.1, 0.2], "X": [[1.0], [2.0]], "covariate_names": ["a", "b"]}, "covariate_names"),
    ({"priors": {"mu": {"dist": "StudentT", "nu": 3, "mu": 0, "sigma": 1}}}, r"priors\['mu'\]"),
    ({"priors": {"beta": {"dist": "Cauchy", "alpha": 0, "beta": 1}}}, r"priors\['beta'\]"),
    ({"priors": {"tau": {"dist": "Gamma", "alpha": 2, "beta": 1}}}, r"priors\['tau'\]: unknown distribution"),
    ({"priors": {"tau": {"dist": "Normal", "mu": 0, "sigma": 1}}}, r"priors\['tau'\]"),
    ({"priors": {"tau": {"dist": "HalfNormal"}}}, r"priors\['tau'\]: HalfNormal takes sigma"),
    ({"priors": {"tau": {"dist": "HalfNormal", "sigma": 1, "scale": 2}}}, r"priors\['tau'\]: HalfNormal takes sigma"),
    ({"priors": {"tau": {"dist": "HalfNormal", "sigma": -1}}}, r"priors\['tau'\].sigma must be > 0"),
    ({"priors": {"tau": {"dist": "Uniform", "lower": 1, "upper": 0.5}}}, r"priors\['tau'\]: Uniform"),
    ({"priors": {"tau": {"dist": "Fixed", "value": -0.1}}}, r"priors\['tau'\].value"),
    ({"priors": {"sigma": {"dist": "HalfNormal", "sigma": 1}}}, "unknown parameter 'sigma'"),
])
def test_invalid_input_is_rejected(kwargs, match):
    args = {"y": LOGRATIO_Y, "se": LOGRATIO_SE, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_normal_exact(**args)
