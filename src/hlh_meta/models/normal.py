"""Normal-normal hierarchical meta-regression with known standard errors (biomarkers).

Univariate:   y_r ~ Normal(theta_r, se_r),  theta_r = mu + x_r . beta + u_s[r],  u_s = tau z_s
Multivariate (``outcome=`` names a column with K >= 2 levels):
              theta_r = mu_k[r] + x_r . beta_k[r] + u_{s[r], k[r]},
              u_s ~ MvNormal(0, diag(tau) Omega diag(tau)),  Omega ~ LKJ(2)   (non-centred)
Studies may report any subset of outcomes. Rows carry 0/1 log-likelihood weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from ..errors import DataError, Problem
from ..inference import SamplerSettings, sample_gated
from .design import Design, build_design
from .inputs import WHERE, numeric_column, prepare_rows, require_frame
from .posterior import finish_idata
from .priors import NORMAL_DEFAULTS, hyperparameters, make_rv, prior_data, prior_structure, resolve_priors

LKJ_ETA = 2.0


def _sd_dist(spec: Mapping, k: int):
    return getattr(pm, spec["dist"]).dist(**hyperparameters("tau", spec), shape=k)


def build_normal_model(y, se, w, study_idx, outcome_idx, coords, design: Design, priors) -> pm.Model:
    k = len(coords.get("outcome", [None]))
    multi = "outcome" in coords
    with pm.Model(coords=coords) as model:
        y_d = pm.Data("estimate", y, dims="row")
        se_d = pm.Data("std_err", se, dims="row")
        w_d = pm.Data("weight", w, dims="row")
        X = pm.Data("X", np.nan_to_num(design.X), dims=("row", "covariate")) if design.names else None
        if multi:
            mu = make_rv("mu", priors["mu"], dims="outcome")
            z = pm.Normal("z", 0.0, 1.0, dims=("study", "outcome"))
            if priors["tau"]["dist"] == "Fixed":     # common-effect (or fixed-spread) model: no correlation to learn
                tau = make_rv("tau", priors["tau"], shape=k, dims="outcome")
                pm.Deterministic("Omega", pt.eye(k), dims=("outcome", "outcome_bis"))
                u = z * tau
            else:
                chol, corr, tau = pm.LKJCholeskyCov("chol", n=k, eta=LKJ_ETA, sd_dist=_sd_dist(priors["tau"], k),
                                                    compute_corr=True, store_in_trace=False)
                pm.Deterministic("tau", tau, dims="outcome")
                pm.Deterministic("Omega", corr, dims=("outcome", "outcome_bis"))
                u = pt.dot(z, chol.T)
            theta = mu[outcome_idx] + u[study_idx, outcome_idx]
            if X is not None:
                beta = make_rv("beta", priors["beta"], dims=("outcome", "covariate"))
                theta = theta + (X * beta[outcome_idx]).sum(axis=1)
        else:
            mu = make_rv("mu", priors["mu"])
            tau = make_rv("tau", priors["tau"])
            z = pm.Normal("z", 0.0, 1.0, dims="study")
            theta = mu + (tau * z)[study_idx]
            if X is not None:
                beta = make_rv("beta", priors["beta"], dims="covariate")
                theta = theta + pt.dot(X, beta)
        # normal log-likelihood kernel: the standard errors are data, so log(se) is a constant
        logp = -0.5 * pt.sqr((y_d - theta) / se_d)
        pm.Potential("weighted_loglik", pt.sum(w_d * logp))
    return model


def study_effects(post, design: Design, study_idx, outcome_idx, multi: bool) -> np.ndarray:
    """theta for every draw and row, (chain, draw, row), from a posterior or prior group."""
    if multi:
        mu = post["mu"].values[..., outcome_idx]
        tau = post["tau"].values
        omega = post["Omega"].values
        cov = tau[..., :, None] * omega * tau[..., None, :]
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(cov.shape[-1]))
        u = np.einsum("cdsj,cdkj->cdsk", post["z"].values, chol)
        theta = mu + u[..., study_idx, outcome_idx]
        if design.names:
            theta = theta + np.einsum("rk,cdrk->cdr", design.X, post["beta"].values[..., outcome_idx, :])
        return theta
    theta = post["mu"].values[..., None] + post["tau"].values[..., None] * post["z"].values[..., study_idx]
    if design.names:
        theta = theta + np.einsum("rk,cdk->cdr", design.X, post["beta"].values)
    return theta


def fit_normal(df: pd.DataFrame, estimate: str = "yi", std_err: str = "sei", study: str = "study", *,
               covariates: Sequence[str] = (), priors: Mapping | None = None, outcome: str | None = None,
               reference: Mapping[str, str] | None = None, label: str | None = None,
               weights: str | Sequence[float] | None = None, draws: int = 1000, tune: int = 1000, chains: int = 4,
               seed: int | None = None, sampler: str = "nutpie", target_accept: float = 0.9,
               progress: bool = False) -> az.InferenceData:
    """Fit the normal-normal hierarchical model to estimates with known standard errors.

    Parameters mirror :func:`hlh_meta.fit_binomial`. With ``outcome`` naming a column of
    two or more levels the model is multivariate: ``mu``, ``tau`` (and ``beta``) gain an
    ``outcome`` dimension and ``Omega`` is the between-outcome correlation of the study
    effects. The posterior also holds ``theta``, each row's true effect. Defaults:
    mu ~ Normal(0, 1), beta ~ Normal(0, 1), tau ~ HalfNormal(0.5).
    """
    require_frame(df, [estimate, std_err, study] + ([outcome] if outcome else []),
                  ["estimate", "std_err", "study"] + (["outcome"] if outcome else []))
    y = numeric_column(df, estimate)
    se = numeric_column(df, std_err, minimum=0, strictly=True)
    resolved = resolve_priors(priors, NORMAL_DEFAULTS)
    design = build_design(df, covariates, reference=reference)
    settings = SamplerSettings(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                               target_accept=target_accept, progress=progress)
    studies, study_idx, row_labels, w = prepare_rows(df, study, label, weights, settings)
    coords = {"row": row_labels, "study": studies, "covariate": design.names}
    multi = outcome is not None
    outcome_idx = np.zeros(len(df), dtype=int)
    if multi:
        if df[outcome].isna().any():
            raise DataError(Problem(WHERE, df.index[df[outcome].isna().to_numpy()][0], outcome, "outcome is missing"))
        levels, outcome_idx = np.unique(df[outcome].astype(str).to_numpy(), return_inverse=True)
        if len(levels) < 2:
            raise DataError(Problem(WHERE, None, outcome, f"has one level ('{levels[0]}'); leave outcome=None for a univariate model"))
        pairs = pd.Series(list(zip(study_idx, outcome_idx)))
        if pairs.duplicated().any():
            i = int(np.flatnonzero(pairs.duplicated().to_numpy())[0])
            raise DataError(Problem(WHERE, df.index[i], outcome, "a study reports the same outcome twice"))
        coords.update(outcome=list(levels), outcome_bis=list(levels))

    def build() -> pm.Model:
        return build_normal_model(y, se, w, study_idx, outcome_idx, coords, design, resolved)

    key = ("normal", multi, tuple(study_idx), tuple(outcome_idx), tuple(design.names), prior_structure(resolved))
    data = {"estimate": y, "std_err": se, "weight": w, **prior_data({k: v for k, v in resolved.items() if k != "beta" or design.names})}
    if design.names:
        data["X"] = np.nan_to_num(design.X)
    gate = ["mu", "z"] + (["tau"] if resolved["tau"]["dist"] != "Fixed" else []) + (["beta"] if design.names else [])
    idata, diag = sample_gated(build, key, data, settings, gate)

    return finish_idata(idata, build, key, settings, diag, resolved, design, row_labels, w,
                        observed={"estimate": y}, constant={"std_err": se, "weight": w},
                        loglik=lambda th: stats.norm.logpdf(y, th, se),
                        predict=lambda th, rng: rng.normal(th, se),
                        row_param=lambda group: study_effects(group, design, study_idx, outcome_idx, multi),
                        row_name="theta", outcome="estimate")
