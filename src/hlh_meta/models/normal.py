"""Normal-normal hierarchical meta-regression with known standard errors (biomarkers).

Univariate:   y_r ~ Normal(theta_r, se_r),  theta_r = mu + x_r . beta + u_s[r],  u_s = tau z_s
Multivariate (``outcome=`` names a column with K >= 2 levels):
              theta_r = mu_k[r] + x_r . beta_k[r] + u_{s[r], k[r]},
              u_s ~ MvNormal(0, diag(tau) Omega diag(tau)),  Omega ~ LKJ(2)   (non-centred)
Studies may report any subset of outcomes. Rows carry 0/1 log-likelihood weights.

Defined once, in the graph: each row's true effect ``theta``, its log-likelihood
``loglik`` (the weighted sum is the sampled density; log se is data), and for prediction
profiles the mean effect ``theta_typical`` and a new study's effect ``theta_new``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from ..errors import DataError, InputError, Problem
from ..inference import SamplerSettings
from .design import build_design, column_list
from .engine import ModelInputs, fixed_data, fit_model, log_prior, onehot, profile_values
from .inputs import WHERE, numeric_column, prepare_rows, require_frame
from .priors import NORMAL_DEFAULTS, families, hyperparameters, make_rv, prior_data, resolve_priors
from .structure import Structure

LKJ_ETA = 2.0


def observation(theta, constant):
    """The distribution of a row's estimate given its true effect (and the constant data
    ``std_err``): replicated data are drawn from it."""
    return pm.Normal.dist(mu=theta, sigma=constant["std_err"])


def _sd_dist(spec: Mapping, k: int):
    return getattr(pm, spec["dist"]).dist(**hyperparameters("tau", spec), shape=k)


def build_normal_model(inp: ModelInputs) -> pm.Model:
    design, d, coords = inp.design, inp.data, inp.all_coords()
    multi = "outcome" in coords
    k = len(coords.get("outcome", [None]))
    with pm.Model(coords=coords) as model:
        of_study = onehot(inp.study_index, len(inp.studies)).T                          # (rows, studies)
        y = fixed_data("estimate", d["estimate"], dims="row")
        se = fixed_data("std_err", d["std_err"], dims="row")
        w = fixed_data("weight", d["weight"], dims="row")
        X = fixed_data("X", d["X"], dims=("row", "covariate")) if design.names else None
        Xp = fixed_data("profile_X", d["profile_X"]) if design.names and inp.profiles else None
        z_new, top = None, []
        if multi:
            mu = make_rv("mu", inp.priors["mu"], dims="outcome")
            z = pm.Normal("z", 0.0, 1.0, dims=("study", "outcome"))
            if inp.priors["tau"]["dist"] == "Fixed":     # common-effect (or fixed-spread) model: no correlation to learn
                tau = make_rv("tau", inp.priors["tau"], shape=k, dims="outcome")
                top.append(tau)
                pm.Deterministic("Omega", pt.eye(k), dims=("outcome", "outcome_bis"))
                chol = pt.diag(tau)
            else:
                chol, corr, tau = pm.LKJCholeskyCov("chol", n=k, eta=LKJ_ETA, sd_dist=_sd_dist(inp.priors["tau"], k),
                                                    compute_corr=True, store_in_trace=False)
                top.append(model["chol"])
                pm.Deterministic("tau", tau, dims="outcome")
                pm.Deterministic("Omega", corr, dims=("outcome", "outcome_bis"))
            of_outcome = onehot(inp.outcome_index, k).T                               # (rows, outcomes)
            u = (z[:, None, :] * chol[None, :, :]).sum(axis=2)                          # (studies, outcomes)
            beta = make_rv("beta", inp.priors["beta"], dims=("outcome", "covariate")) if X is not None else None
            top += [mu, beta]
            each = mu[None, :] + (of_study[:, :, None] * u[None, :, :]).sum(axis=1)    # (rows, outcomes)
            if beta is not None:
                each = each + (X[:, None, :] * beta[None, :, :]).sum(axis=2)
            theta = (of_outcome * each).sum(axis=1)
            if inp.profiles:
                z_new = pm.Normal("z_new", 0.0, 1.0, dims="outcome")
                typical = pt.ones((len(inp.profiles), 1)) * mu[None, :]
                if beta is not None:
                    typical = typical + (Xp[:, None, :] * beta[None, :, :]).sum(axis=2)
                new = typical + (chol * z_new[None, :]).sum(axis=1)[None, :]
                dims = ("profile", "outcome")
        else:
            mu = make_rv("mu", inp.priors["mu"])
            tau = make_rv("tau", inp.priors["tau"])
            z = pm.Normal("z", 0.0, 1.0, dims="study")
            beta = make_rv("beta", inp.priors["beta"], dims="covariate") if X is not None else None
            top += [mu, tau, beta]
            theta = mu + (of_study * (tau * z)[None, :]).sum(axis=1)
            if beta is not None:
                theta = theta + (X * beta[None, :]).sum(axis=1)
            if inp.profiles:
                z_new = pm.Normal("z_new", 0.0, 1.0)
                typical = mu * pt.ones(len(inp.profiles))
                if beta is not None:
                    typical = typical + (Xp * beta[None, :]).sum(axis=1)
                new = typical + tau * z_new
                dims = ("profile",)
        log_prior([v for v in top if v is not None])
        pm.Deterministic("theta", theta, dims="row")
        loglik = pm.Deterministic("loglik", -0.5 * pt.sqr((y - theta) / se) - pt.log(se) - 0.5 * np.log(2 * np.pi),
                                  dims="row")
        pm.Potential("weighted_loglik", pt.sum(w * loglik))
        if z_new is not None:
            pm.Deterministic("theta_typical", typical, dims=dims)
            pm.Deterministic("theta_new", new, dims=dims)
    return model


def prepare_normal(df: pd.DataFrame, estimate: str = "yi", std_err: str | None = None, study: str = "study", *,
                   variance: str | None = None, covariates: Sequence[str] = (), priors: Mapping | None = None,
                   outcome: str | None = None, reference: Mapping[str, str] | None = None,
                   profiles: pd.DataFrame | None = None, label: str | None = None,
                   weights: str | Sequence[float] | None = None, size: str | None = None) -> ModelInputs:
    """Check the data and build the inputs of the normal model (nothing is compiled).
    ``std_err`` or ``variance`` (exactly one): the column of standard errors, or of sampling
    variances (metafor's ``vi``; the standard error is its square root).
    ``size``: a column with each row's number of patients (kept with the constant data)."""
    if (std_err is None) == (variance is None):
        raise InputError("give the column of standard errors (std_err='sei') or of sampling variances "
                         f"(variance='vi'), not {'both' if std_err is not None else 'neither'}")
    spread, role = (std_err, "std_err") if std_err is not None else (variance, "variance")
    require_frame(df, [estimate, spread, study] + ([outcome] if outcome else []),
                  ["estimate", role, "study"] + (["outcome"] if outcome else []))
    y = numeric_column(df, estimate)
    se = numeric_column(df, spread, minimum=0, strictly=True)      # a variance must be > 0 (and finite) too
    if variance is not None:
        se = np.sqrt(se)
    resolved = resolve_priors(priors, NORMAL_DEFAULTS)
    studies, study_idx, row_labels, w = prepare_rows(df, study, label, weights)
    design = build_design(df, column_list(covariates, "covariates"), reference=reference, labels=row_labels)
    coords: dict[str, list] = {}
    row_info: dict[str, np.ndarray] = {}
    outcome_idx = np.zeros(len(df), dtype=int)
    if outcome is not None:
        if df[outcome].isna().any():
            raise DataError(Problem(WHERE, df.index[df[outcome].isna().to_numpy()][0], outcome, "outcome is missing"))
        labels_ = df[outcome].astype(str).to_numpy()
        row_info["row_outcome"] = labels_
        levels = list(pd.unique(labels_))
        outcome_idx = np.array([levels.index(v) for v in labels_])
        pairs = pd.Series(list(zip(study_idx, outcome_idx)))
        if pairs.duplicated().any():
            i = int(np.flatnonzero(pairs.duplicated().to_numpy())[0])
            raise DataError(Problem(WHERE, df.index[i], outcome, "a study reports the same outcome twice"))
        if len(levels) > 1:
            coords.update(outcome=levels, outcome_bis=levels)
    if size is not None:
        row_info["row_n"] = numeric_column(df, size, integer=True, minimum=0)
    data = {"estimate": y, "std_err": se, "weight": w,
            **prior_data({k: v for k, v in resolved.items() if k != "beta" or design.names})}
    if design.names:
        data["X"] = design.X
    if profiles is None:
        profiles = None if design.names else pd.DataFrame(index=["pooled"])
    profile_labels: list[str] = []
    if profiles is not None:
        if not isinstance(profiles, pd.DataFrame) or len(profiles) == 0:
            raise InputError("profiles must be a non-empty DataFrame: one row per profile, its index the label")
        if design.names:
            data["profile_X"] = design.encode(profiles)
        profile_labels = [str(i) for i in profiles.index]
    structure = Structure(
        engine="normal", study_index=tuple(int(i) for i in study_idx), covariates=tuple(design.names), groups=(),
        latent=(), priors=families(resolved), profiles=len(profile_labels),
        outcome_index=tuple(int(i) for i in outcome_idx) if "outcome" in coords else ())
    gate = ["mu", "z"] + (["tau"] if resolved["tau"]["dist"] != "Fixed" else []) + (["beta"] if design.names else [])
    return ModelInputs(structure=structure, build=build_normal_model, study_index=study_idx,
                       outcome_index=outcome_idx if "outcome" in coords else None, data=data, gate=gate, design=design,
                       priors=resolved, row_labels=row_labels, studies=studies, weights=w, profiles=profile_labels,
                       observed={"estimate": y}, constant={"std_err": se, "weight": w}, row_param="theta",
                       observation=observation, coords=coords, row_info=row_info,
                       profile_values=profile_values(profiles, profile_labels))


def fit_normal(df: pd.DataFrame, estimate: str = "yi", std_err: str | None = None, study: str = "study", *,
               variance: str | None = None, covariates: Sequence[str] = (), priors: Mapping | None = None,
               outcome: str | None = None, reference: Mapping[str, str] | None = None,
               profiles: pd.DataFrame | None = None, label: str | None = None,
               weights: str | Sequence[float] | None = None, size: str | None = None,
               sampling: SamplerSettings | Mapping | None = None, **sampler_options) -> az.InferenceData:
    """Fit the normal-normal hierarchical model to estimates with known standard errors.

    Give each row's known sampling error as a column of standard errors (``std_err="sei"``)
    or, as metafor's ``rma(yi, vi)`` takes it, of sampling variances (``variance="vi"``):
    exactly one of the two. A variance enters as its square root, so ``variance="vi"``
    gives the same fit (the same draws for the same seed) as ``std_err`` naming a column
    holding ``sqrt(vi)``.

    Other parameters mirror :func:`hlh_meta.fit_binomial`. With ``outcome`` naming a
    column of two or more levels the model is multivariate (with one level it is
    univariate, the level naming the outcome): ``mu``, ``tau`` (and ``beta``) gain an
    ``outcome`` dimension and ``Omega`` is the between-outcome correlation of the study
    effects. The posterior also holds ``theta``, each row's true effect, and for each
    prediction profile (without covariates: one, ``pooled``) ``theta_typical`` (the mean
    effect) and ``theta_new`` (a new study's). Defaults: mu ~ Normal(0, 1),
    beta ~ Normal(0, 1), tau ~ HalfNormal(0.5).
    """
    inputs = prepare_normal(df, estimate, std_err, study, variance=variance, covariates=covariates, priors=priors,
                            outcome=outcome, reference=reference, profiles=profiles, label=label, weights=weights,
                            size=size)
    return fit_model(inputs, SamplerSettings.of(sampling, **sampler_options))
