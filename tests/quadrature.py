"""Independent reference: the binomial random-effects posterior of (mu, tau) on a grid.

p(mu, tau | y) ∝ N(mu; m0, s0) HalfNormal(tau; st) Π_s ∫ Bin(y_s | n_s, logistic(mu + tau z)) N(z; 0, 1) dz,
with the inner integral by Gauss-Hermite quadrature. Written directly from the model
definition, sharing no code with the package.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import expit, logsumexp


def grid_posterior(y, n, mu_sd=1.5, tau_sd=1.0, mu_grid=None, tau_grid=None, nodes=48, tau_logpdf=None):
    y, n = np.asarray(y), np.asarray(n)
    mu = np.linspace(-9, 7, 641) if mu_grid is None else mu_grid
    tau = np.linspace(0, 5, 501) if tau_grid is None else tau_grid
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    logw = np.log(w / np.sqrt(2 * np.pi))
    eta = mu[:, None, None] + tau[None, :, None] * x[None, None, :]
    p = expit(eta)
    log_tau = stats.halfnorm.logpdf(tau, scale=tau_sd) if tau_logpdf is None else tau_logpdf(tau)
    logpost = stats.norm.logpdf(mu, 0, mu_sd)[:, None] + log_tau[None, :]
    for ys, ns in zip(y, n):
        logpost = logpost + logsumexp(stats.binom.logpmf(ys, ns, p) + logw, axis=-1)
    post = np.exp(logpost - logpost.max())
    post /= post.sum()
    return mu, tau, post


def marginal_summary(grid, mass):
    """mean, sd, 2.5% and 97.5% quantiles of a 1-D marginal given on a grid."""
    mean = float((grid * mass).sum())
    sd = float(np.sqrt(((grid - mean) ** 2 * mass).sum()))
    cdf = np.cumsum(mass) - mass / 2
    q = np.interp([0.025, 0.975], cdf, grid)
    return {"mean": mean, "sd": sd, "q2.5": float(q[0]), "q97.5": float(q[1])}
