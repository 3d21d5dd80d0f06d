"""Exact posterior of the normal-normal hierarchical meta-regression (no sampling).

Model, for studies i = 1..n with known standard errors se_i::

    y_i     ~ Normal(theta_i, se_i)
    theta_i = x_i . b + u_i,        u_i ~ Normal(0, tau)
    b = (mu, beta_1..beta_p) ~ Normal(m0, S0),   S0 diagonal
    tau ~ p(tau)

Given tau the model is linear-Gaussian, so b integrates out analytically:

    y | tau       ~ Normal(X m0, V + X S0 X'),        V = diag(se^2 + tau^2)
    b | tau, y    ~ Normal(m_tau, S_tau),
                    S_tau = (S0^-1 + X' V^-1 X)^-1,   m_tau = m0 + S_tau X' V^-1 (y - X m0)

and the posterior of tau is one-dimensional, p(tau | y) ∝ p(tau) N(y; X m0, V + X S0 X').
It is evaluated on a grid uniform in t = tau / (tau + s) (t in [0, 1), s a scale near the
posterior median, found by a coarse first pass), so the whole half-line is covered with no
truncation; trapezoid weights in t give every posterior quantity as a finite mixture over
the grid nodes: each coefficient is a mixture of normals, tau has the grid CDF.

The same approach as R's bayesmeta (Röver 2020, J Stat Softw 93(6)), here with
meta-regression and a plain fine grid instead of bayesmeta's adaptive discretisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import logsumexp, ndtr

from ..errors import InputError
from ..inference import check
from .priors import NORMAL_DEFAULTS, resolve_priors

#: tau priors the exact engine supports (a density on tau >= 0, or a point mass).
TAU_PRIORS = ("HalfNormal", "HalfCauchy", "HalfStudentT", "Exponential", "Uniform", "Fixed")
_FIRST_PASS = 257


@dataclass(frozen=True, eq=False)
class NormalMixture:
    """A finite mixture of normals, sum_g w_g Normal(m_g, s_g) with sum_g w_g = 1."""

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray

    @classmethod
    def from_components(cls, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> NormalMixture:
        keep = weights > 0
        w = weights[keep]
        return cls(w / w.sum(), means[keep], np.sqrt(variances[keep]))

    def mean(self) -> float:
        """E = sum_g w_g m_g."""
        return float(self.weights @ self.means)

    def sd(self) -> float:
        """Var = sum_g w_g (s_g^2 + m_g^2) - E^2."""
        m = self.mean()
        return float(np.sqrt(max(self.weights @ (self.sds**2 + (self.means - m) ** 2), 0.0)))  # type: ignore[call-overload]

    def cdf(self, x):
        """P(X <= x) = sum_g w_g Phi((x - m_g) / s_g)."""
        x = np.asarray(x, dtype=float)
        out = ndtr((x[..., None] - self.means) / self.sds) @ self.weights
        return float(out) if out.ndim == 0 else out

    def quantile(self, q):
        """Root of cdf(x) = q (Brent's method), for q in (0, 1)."""
        q = _check_probs(q)
        main = self.weights > 1e-14 * self.weights.max()
        lo = float(np.min(self.means[main] - 10 * self.sds[main]))
        hi = float(np.max(self.means[main] + 10 * self.sds[main]))
        scale = hi - lo
        out = []
        for p in q.ravel():
            a, b = lo, hi
            while self.cdf(a) > p:
                a -= scale
            while self.cdf(b) < p:
                b += scale
            out.append(optimize.brentq(lambda x: self.cdf(x) - p, a, b, xtol=1e-12 * scale, rtol=1e-13))
        out = np.reshape(out, q.shape)
        return float(out) if out.ndim == 0 else out


def _check_probs(q) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    if not np.all((q > 0) & (q < 1)):
        raise ValueError(f"quantile: probabilities must lie strictly between 0 and 1, got {q.tolist()}")
    return q


# --------------------------------------------------------------------------- priors


def _check_priors(priors: Mapping | None) -> dict[str, dict]:
    """Resolve ``priors`` over :data:`NORMAL_DEFAULTS` (every value checked there) and check
    what the exact engine needs: conjugate Normal priors on the coefficients."""
    spec = resolve_priors(priors, NORMAL_DEFAULTS)
    for key in ("mu", "beta"):
        if spec[key]["dist"] != "Normal":
            raise InputError(f"priors['{key}']: the exact engine needs a Normal prior (conjugate), got {spec[key]['dist']}")
    if spec["tau"]["dist"] not in TAU_PRIORS:
        raise InputError(f"priors['tau']: the exact engine supports {', '.join(TAU_PRIORS)}, got {spec['tau']['dist']}")
    return spec


def tau_log_density(spec: Mapping, tau: np.ndarray) -> np.ndarray:
    """Normalised log prior density of tau under the prior ``spec`` (a Uniform prior's
    constant: ``tau`` is taken to lie in its support, as the exact engine's grid does).
    Also the prior ratio by which a change of tau's prior family is reweighted
    (:mod:`hlh_meta.sensitivity.reweight`)."""
    d = spec["dist"]
    if d == "HalfNormal":
        return stats.halfnorm.logpdf(tau, scale=spec["sigma"])
    if d == "HalfCauchy":
        return stats.halfcauchy.logpdf(tau, scale=spec["beta"])
    if d == "HalfStudentT":
        return np.log(2) + stats.t.logpdf(tau, spec["nu"], scale=spec["sigma"])
    if d == "Exponential":
        return stats.expon.logpdf(tau, scale=1 / spec["lam"])
    if d == "Uniform":                                   # the grid lies within [lower, upper]
        return np.full(np.shape(tau), -np.log(spec["upper"] - spec["lower"]))
    raise AssertionError(d)


def _tau_scale(spec: Mapping) -> float:
    """A typical tau under the prior, the first pass's grid scale."""
    d = spec["dist"]
    if d == "Exponential":
        return 1 / spec["lam"]
    if d == "Uniform":
        return (spec["lower"] + spec["upper"]) / 2
    return spec["beta" if d == "HalfCauchy" else "sigma"]


# --------------------------------------------------------------------------- conditional on tau


def _conditional(tau: np.ndarray, y, se, X, m0, s0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each tau: log N(y; X m0, V + X S0 X'), m_tau (G, k) and S_tau (G, k, k).

    With P = S0^-1 + X' V^-1 X, r = y - X m0 and c = X' V^-1 r, the determinant lemma and
    Woodbury give log|V + X S0 X'| = log|V| + log|S0| + log|P| and
    r' (V + X S0 X')^-1 r = r' V^-1 r - c' P^-1 c.
    """
    vinv = 1.0 / (se**2 + tau[:, None] ** 2)                          # (G, n)
    r = y - X @ m0
    P = np.einsum("gn,ni,nj->gij", vinv, X, X) + np.diag(1 / s0**2)
    S = np.linalg.inv(P)
    c = (vinv * r) @ X
    z = np.einsum("gij,gj->gi", S, c)
    _, logdet_p = np.linalg.slogdet(P)
    quad = vinv @ r**2 - np.einsum("gi,gi->g", c, z)
    loglik = -0.5 * (len(y) * np.log(2 * np.pi) - np.log(vinv).sum(1) + 2 * np.log(s0).sum() + logdet_p + quad)
    return loglik, m0 + z, S


def _tau_grid(spec, scale: float, size: int, y, se, X, m0, s0):
    """Grid uniform in t = tau / (tau + scale) over the prior's support.

    Returns t, tau (inf at t = 1), the log unnormalised posterior density of t,
    log p(tau) + log N(y; X m0, V + X S0 X') + log dtau/dt, and m_tau, S_tau at the finite nodes.
    """
    lo, hi = (spec["lower"], spec["upper"]) if spec["dist"] == "Uniform" else (0.0, np.inf)
    t = np.linspace(lo / (lo + scale), 1.0 if hi == np.inf else hi / (hi + scale), size)
    inner = t < 1
    tau = np.full(size, np.inf)
    tau[inner] = scale * t[inner] / (1 - t[inner])
    logf = np.full(size, -np.inf)
    loglik, m, S = _conditional(tau[inner], y, se, X, m0, s0)
    logf[inner] = loglik + tau_log_density(spec, tau[inner]) + np.log(scale) - 2 * np.log1p(-t[inner])
    return t, tau, logf, m, S


# --------------------------------------------------------------------------- fit


@dataclass(frozen=True, eq=False)
class ExactNormalFit:
    """Posterior of the normal-normal meta-regression on a grid over tau.

    ``tau``, ``weights``, ``coef_mean`` and ``coef_cov`` describe the posterior as the
    mixture sum_g weights[g] * [point tau[g]] x Normal(coef_mean[g], coef_cov[g]) over
    (tau, b). ``weights`` are posterior masses (trapezoid in t, summing to 1).
    """

    names: tuple[str, ...]                  # "mu", then the covariates
    priors: dict[str, dict]
    y: np.ndarray
    se: np.ndarray
    X: np.ndarray                           # (n, k): intercept column, then covariates
    tau: np.ndarray                         # (G,) grid; inf at t = 1, with weight 0
    weights: np.ndarray                     # (G,)
    coef_mean: np.ndarray                   # (G, k)
    coef_cov: np.ndarray                    # (G, k, k)
    log_evidence: float                     # log p(y) = log int p(tau) N(y; X m0, V + X S0 X') dtau
    t: np.ndarray = field(repr=False)       # (G,) t = tau / (tau + scale)
    t_density: np.ndarray = field(repr=False)   # (G,) normalised posterior density of t
    t_cdf: np.ndarray = field(repr=False)       # (G,) posterior CDF at the nodes
    scale: float = 1.0

    @property
    def fixed_tau(self) -> bool:
        return self.priors["tau"]["dist"] == "Fixed"

    @property
    def covariates(self) -> tuple[str, ...]:
        return self.names[1:]

    def _check_name(self, name: str) -> None:
        if name != "tau" and name not in self.names:
            raise KeyError(f"unknown parameter '{name}'; choose from {', '.join((*self.names, 'tau'))}")

    def coefficient(self, name: str) -> NormalMixture:
        """Marginal posterior of ``mu`` or a covariate's beta: sum_g w_g N(m_tau[j], S_tau[j, j])."""
        self._check_name(name)
        if name == "tau":
            raise KeyError("tau is not a coefficient; use tau_density(), cdf('tau', x) or quantile('tau', q)")
        j = self.names.index(name)
        return NormalMixture.from_components(self.weights, self.coef_mean[:, j], self.coef_cov[:, j, j])

    # ---- tau
    def _tau_moment(self, power: int) -> float:
        finite = self.weights > 0
        return float(self.weights[finite] @ self.tau[finite] ** power)

    def _tau_cdf(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.fixed_tau:
            return (x >= self.tau[0]).astype(float)
        tx = np.where(x > 0, x / (np.maximum(x, 0) + self.scale), 0.0)
        return np.interp(tx, self.t, self.t_cdf, left=0.0, right=1.0)

    def _tau_quantile(self, q) -> np.ndarray:
        q = _check_probs(q)
        if self.fixed_tau:
            return np.full(q.shape, self.tau[0])
        tq = np.interp(q, self.t_cdf, self.t)
        return self.scale * tq / (1 - tq)

    def tau_density(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid of tau (finite nodes) and the normalised posterior density p(tau | y) there."""
        if self.fixed_tau:
            raise ValueError("tau is fixed by its prior; it has no density")
        inner = self.t < 1
        jac = self.scale / (1 - self.t[inner]) ** 2              # dtau/dt
        return self.tau[inner], self.t_density[inner] / jac

    # ---- generic access
    def mean(self, name: str) -> float:
        self._check_name(name)
        return self._tau_moment(1) if name == "tau" else self.coefficient(name).mean()

    def sd(self, name: str) -> float:
        self._check_name(name)
        if name == "tau":
            return float(np.sqrt(max(self._tau_moment(2) - self._tau_moment(1) ** 2, 0.0)))
        return self.coefficient(name).sd()

    def _marginal(self, name: str, tau_fn, method: str, x):
        """tau's function by quadrature, a coefficient's from its mixture; scalars stay scalars."""
        self._check_name(name)
        if name == "tau":
            out = tau_fn(x)
            return float(out) if out.ndim == 0 else out
        return getattr(self.coefficient(name), method)(x)

    def cdf(self, name: str, x):
        return self._marginal(name, self._tau_cdf, "cdf", x)

    def quantile(self, name: str, q):
        return self._marginal(name, self._tau_quantile, "quantile", q)

    def summary(self, probs: Sequence[float] = (0.025, 0.5, 0.975)) -> pd.DataFrame:
        """Mean, sd and quantiles (columns ``q2.5``, ``q50``, ...) of every coefficient and tau."""
        rows = {name: [self.mean(name), self.sd(name), *np.atleast_1d(self.quantile(name, probs))]
                for name in (*self.names, "tau")}
        cols = ["mean", "sd", *(f"q{100 * p:g}" for p in probs)]
        return pd.DataFrame.from_dict(rows, orient="index", columns=cols).rename_axis("parameter")

    # ---- new and observed studies
    def _row(self, x_new) -> np.ndarray:
        p = len(self.names) - 1
        x = np.zeros(p) if x_new is None else np.atleast_1d(np.asarray(x_new, dtype=float))
        if x.shape != (p,) or not np.all(np.isfinite(x)):
            raise ValueError(f"x_new must be {p} finite covariate values ({', '.join(self.covariates) or 'none'})")
        return np.concatenate([[1.0], x])

    def predictive(self, x_new=None) -> NormalMixture:
        """A new study's theta = x.b + u: sum_g w_g N(x.m_tau, x S_tau x' + tau^2); x_new=None is all-zero covariates."""
        x = self._row(x_new)
        var = np.einsum("i,gij,j->g", x, self.coef_cov, x) + np.where(self.weights > 0, self.tau, 0) ** 2
        return NormalMixture.from_components(self.weights, self.coef_mean @ x, var)

    @cached_property
    def _theta(self) -> tuple[np.ndarray, np.ndarray]:
        """theta_i | tau, y ~ N((1-B_i) y_i + B_i x_i.m_tau, (1-B_i) se_i^2 + B_i^2 x_i S_tau x_i'),
        B_i = se_i^2 / (se_i^2 + tau^2): theta_i | b, tau, y is the precision-weighted
        combination of y_i and x_i.b; the law of total variance adds b's uncertainty."""
        B = self.se**2 / (self.se**2 + self.tau[:, None] ** 2)       # (G, n); 0 at tau = inf
        mean = (1 - B) * self.y + B * (self.coef_mean @ self.X.T)
        var = (1 - B) * self.se**2 + B**2 * np.einsum("ni,gij,nj->gn", self.X, self.coef_cov, self.X)
        return mean, var

    def shrunken(self, i: int) -> NormalMixture:
        """Posterior of study i's true effect theta_i (b and tau integrated out)."""
        mean, var = self._theta
        return NormalMixture.from_components(self.weights, mean[:, i], var[:, i])

    @property
    def theta_mean(self) -> np.ndarray:
        """Posterior means E[theta_i | y] of the studies' true effects."""
        return self.weights @ self._theta[0]

    @property
    def theta_sd(self) -> np.ndarray:
        """Posterior SDs of the studies' true effects."""
        mean, var = self._theta
        return np.sqrt(self.weights @ (var + (mean - self.theta_mean) ** 2))


def _check_data(y, se, X, covariate_names) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("y must be a non-empty one-dimensional array")
    if se.shape != y.shape:
        raise ValueError(f"se must have the same length as y ({y.size}), got shape {se.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"y must be finite; non-finite at positions {np.flatnonzero(~np.isfinite(y)).tolist()}")
    if not np.all(np.isfinite(se) & (se > 0)):
        raise ValueError(f"se must be finite and > 0; bad at positions {np.flatnonzero(~(np.isfinite(se) & (se > 0))).tolist()}")
    if X is None:
        Z = np.empty((y.size, 0))
    else:
        if covariate_names is None and isinstance(X, pd.DataFrame):
            covariate_names = [str(c) for c in X.columns]
        Z = np.asarray(X, dtype=float)
        Z = Z[:, None] if Z.ndim == 1 else Z
        if Z.ndim != 2 or Z.shape[0] != y.size:
            raise ValueError(f"X must have one row per study ({y.size}), got shape {np.shape(X)}")
        if not np.all(np.isfinite(Z)):
            raise ValueError("X must be finite (no missing covariate values)")
    p = Z.shape[1]
    names = tuple(covariate_names) if covariate_names is not None else tuple(f"x{j + 1}" for j in range(p))
    if len(names) != p:
        raise ValueError(f"covariate_names: {len(names)} names for {p} covariate columns")
    if len(set(names)) != p or {"mu", "tau"} & set(names):
        raise ValueError("covariate_names must be unique and must not be 'mu' or 'tau'")
    return y, se, np.column_stack([np.ones(y.size), Z]), names


def exact_normal_posterior(y, se, X=None, covariate_names: Sequence[str] | None = None,
                           priors: Mapping | None = None, grid_size: int = 2001) -> ExactNormalFit:
    """Exact posterior of y_i ~ N(x_i.b + u_i, se_i), u_i ~ N(0, tau), b ~ N(m0, S0), tau ~ p(tau).

    The coefficients ``b`` (``mu``, then each covariate's ``beta``) are integrated out
    analytically given tau, and tau by quadrature on a grid (centred on the posterior
    median by a first, coarse pass).

    Parameters
    ----------
    y : array_like
        The study estimates, one-dimensional and finite.
    se : array_like
        Their (known) standard errors, finite and positive, one per estimate.
    X : array_like or pandas.DataFrame, optional
        (n, p) covariates without intercept (``mu`` is always added); a DataFrame's
        columns name the covariates unless ``covariate_names`` does.
    covariate_names : sequence of str, optional
        Names of the covariate columns (default ``x1``, ``x2``, ...); unique, and neither
        ``mu`` nor ``tau``.
    priors : mapping, optional
        ``{"mu": {"dist": "Normal", "mu": 0, "sigma": 1}, "beta": {...},
        "tau": {"dist": "HalfNormal", "sigma": 0.5}}``; defaults
        :data:`hlh_meta.models.priors.NORMAL_DEFAULTS`. ``mu`` and ``beta`` must be
        Normal (conjugate); ``beta`` applies to every covariate. tau may be HalfNormal,
        HalfCauchy, HalfStudentT, Exponential, Uniform or ``{"dist": "Fixed", "value": v}``
        (v = 0: common-effect model).
    grid_size : int, default 2001
        Nodes of the tau grid (at least 3).

    Returns
    -------
    ExactNormalFit
        The posterior as a mixture over the tau grid, with marginal means, SDs, CDFs,
        quantiles, a summary table, the predictive distribution of a new study and each
        study's shrunken effect.

    Raises
    ------
    ValueError
        For bad data (shapes, non-finite values, non-positive ``se``, bad covariate
        names) or a ``grid_size`` below 3.
    hlh_meta.InputError
        For priors the exact engine does not support, or bad prior values.
    """
    y, se, Xf, names = _check_data(y, se, X, covariate_names)
    spec = _check_priors(priors)
    if int(grid_size) < 3:
        raise ValueError(f"grid_size must be at least 3, got {grid_size}")
    k = Xf.shape[1]
    m0 = np.array([spec["mu"]["mu"]] + [spec["beta"]["mu"]] * (k - 1))
    s0 = np.array([spec["mu"]["sigma"]] + [spec["beta"]["sigma"]] * (k - 1))
    common = dict(names=("mu", *names), priors=spec, y=y, se=se, X=Xf)

    if spec["tau"]["dist"] == "Fixed":
        tau = np.array([spec["tau"]["value"]])
        loglik, m, S = _conditional(tau, y, se, Xf, m0, s0)
        return ExactNormalFit(**common, tau=tau, weights=np.ones(1), coef_mean=m, coef_cov=S,
                              log_evidence=float(loglik[0]), t=np.zeros(1), t_density=np.ones(1),
                              t_cdf=np.ones(1), scale=1.0)

    # first pass: coarse grid at the prior's scale, to centre the fine grid on the posterior median
    scale = _tau_scale(spec["tau"])
    t, tau, logf, *_ = _tau_grid(spec["tau"], scale, _FIRST_PASS, y, se, Xf, m0, s0)
    cdf = _cumtrapz(np.exp(logf - logf.max()), t)
    t_med = np.interp(0.5, cdf / cdf[-1], t)
    scale = max(scale * t_med / (1 - t_med), 1e-6 * scale)

    t, tau, logf, m_in, S_in = _tau_grid(spec["tau"], scale, int(grid_size), y, se, Xf, m0, s0)
    inner = t < 1
    m = np.broadcast_to(m0, (t.size, k)).copy()                # tau = inf: b | y is its prior
    S = np.broadcast_to(np.diag(s0**2), (t.size, k, k)).copy()
    m[inner], S[inner] = m_in, S_in
    h = np.diff(t)
    quad = np.zeros(t.size)                                   # trapezoid weights in t
    quad[:-1] += h / 2
    quad[1:] += h / 2
    log_w = logf + np.log(quad)
    log_evidence = float(logsumexp(log_w))
    weights = np.exp(log_w - log_evidence)
    density = np.exp(logf - log_evidence)
    cdf = _cumtrapz(density, t)
    return ExactNormalFit(**common, tau=tau, weights=weights, coef_mean=m, coef_cov=S, log_evidence=log_evidence,
                          t=t, t_density=density, t_cdf=cdf / cdf[-1], scale=float(scale))


def _cumtrapz(f: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.diff(t) * (f[1:] + f[:-1]) / 2)])


def fit_normal_exact(y, se, X=None, covariate_names: Sequence[str] | None = None, priors: Mapping | None = None,
                     grid_size: int = 2001, draws: int = 1000, chains: int = 4, seed: int | None = None):
    """The exact posterior (:func:`exact_normal_posterior`) as an ``arviz.InferenceData``.

    Like the sampling engines return: independent draws of ``mu``, ``tau``, ``beta`` (on
    ``covariate``) and each study's ``theta`` (on ``row``), ``chains`` x ``draws`` of them.

    The draws pick a node of the tau grid by its posterior mass and the coefficients from
    their normal distribution given tau, then theta given both. The exact summaries
    (means, SDs, 2.5/50/97.5% quantiles by quadrature) are in
    ``idata.posterior.attrs["exact_summary"]`` (JSON), the gate result in
    ``idata.posterior.attrs["diagnostics"]`` as for every engine.

    Parameters
    ----------
    y : array_like
        The study estimates.
    se : array_like
        Their (known) standard errors.
    X : array_like or pandas.DataFrame, optional
        (n, p) covariates without intercept, as for :func:`exact_normal_posterior`.
    covariate_names : sequence of str, optional
        Names of the covariate columns.
    priors : mapping, optional
        Priors of ``mu``, ``beta`` and ``tau``, as for :func:`exact_normal_posterior`.
    grid_size : int, default 2001
        Nodes of the tau grid.
    draws : int, default 1000
        Draws per chain.
    chains : int, default 4
        Number of chains (independent draws, laid out as chains).
    seed : int, optional
        Seed of the random draws.

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``observed_data`` (``estimate``) and ``constant_data``
        (``std_err``), with the attributes above.

    Raises
    ------
    ValueError
        For bad data or ``grid_size``, as :func:`exact_normal_posterior`.
    hlh_meta.InputError
        For unsupported priors, or ``draws`` or ``chains`` that are not positive whole
        numbers.
    """
    import json

    import arviz as az
    import xarray as xr

    fit = exact_normal_posterior(y, se, X, covariate_names, priors, grid_size)
    for name, value in (("draws", draws), ("chains", chains)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a positive whole number, got {value!r}")
    rng = np.random.default_rng(seed)
    size = chains * draws
    node = rng.choice(fit.weights.size, size=size, p=fit.weights)
    tau = fit.tau[node]
    chol = np.linalg.cholesky(fit.coef_cov[node] + 1e-300 * np.eye(fit.coef_cov.shape[-1]))
    coef = fit.coef_mean[node] + np.einsum("nij,nj->ni", chol, rng.standard_normal((size, len(fit.names))))
    # theta_i | b, tau, y: precision-weighted combination of y_i and x_i.b
    prec = 1 / fit.se**2 + np.where(tau[:, None] > 0, 1 / np.maximum(tau[:, None], 1e-300) ** 2, np.inf)
    mean = np.where(tau[:, None] > 0, (fit.y / fit.se**2 + (coef @ fit.X.T) / np.maximum(tau[:, None], 1e-300) ** 2)
                    / prec, coef @ fit.X.T)
    theta = mean + rng.standard_normal(mean.shape) / np.sqrt(prec)
    shape = (chains, draws)
    rows = [str(i) for i in range(fit.y.size)]
    posterior = {"mu": (("chain", "draw"), coef[:, 0].reshape(shape)),
                 "tau": (("chain", "draw"), tau.reshape(shape)),
                 "theta": (("chain", "draw", "row"), theta.reshape(*shape, -1))}
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "row": rows}
    if fit.covariates:
        posterior["beta"] = (("chain", "draw", "covariate"), coef[:, 1:].reshape(*shape, -1))
        coords["covariate"] = list(fit.covariates)
    idata = az.InferenceData(
        posterior=xr.Dataset(posterior, coords=coords),
        observed_data=xr.Dataset({"estimate": ("row", fit.y)}, coords={"row": rows}),
        constant_data=xr.Dataset({"std_err": ("row", fit.se)}, coords={"row": rows}))
    summary = fit.summary()
    idata.posterior.attrs.update({
        "engine": "exact",
        "diagnostics": check(idata, ["mu"] + (["beta"] if fit.covariates else [])).to_json(),
        "priors": json.dumps(fit.priors),
        "covariates": json.dumps(list(fit.covariates)),
        "exact_summary": summary.to_json(orient="index"),
    })
    return idata
