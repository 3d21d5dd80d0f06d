"""Normal-normal hierarchical meta-regression with known standard errors (biomarkers).

Univariate:   y_r ~ Normal(theta_r, se_r),  theta_r = mu + x_r . beta + u_s[r],  u_s = tau z_s
Multivariate (``outcome=`` names a column with K >= 2 levels):
              theta_r = mu_k[r] + x_r . beta_k[r] + u_{s[r], k[r]},
              u_s ~ MvNormal(0, diag(tau) Omega diag(tau))   (non-centred)
              Omega ~ LKJ(2) (correlated), or Omega = I (independent: one normal-normal model
              per outcome); ``multivariate="auto"`` picks LKJ only where the data can inform it
              (:func:`between_outcomes`).
Studies may report any subset of outcomes. Rows carry 0/1 log-likelihood weights.

An outcome that one study (with weight 1) informs has no between-study term: its mu_k is
that study's true effect, y ~ Normal(mu_k, se) under mu's prior (the ``pooled`` mask is 0
for it), so its estimate is the study's, not a pool widened by tau's prior; tau_k then
only spreads a new study's prediction (``theta_new``) and stays its prior.

Within a study the estimates of several outcomes may be correlated (``within_correlation``
rho, the same for every pair): the rows of a study then have the sampling covariance
D R D (D = diag(se), R_ij = rho between two rows of one study with weight 1), block-diagonal
across studies. Its Cholesky factor D L gives each row's log-likelihood as the density of
its estimate given the study's earlier rows: with e = L^-1 ((y - theta) / se),
loglik_r = -0.5 e_r^2 - log se_r - log L_rr - 0.5 log(2 pi), summing to the joint density
(rho = 0: L = I, the independent rows).

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
#: how the study effects of several outcomes relate: ``auto`` (correlated where the data can
#: inform the correlation, see :func:`between_outcomes`), ``always`` (LKJ), ``never`` (independent)
MULTIVARIATE = ("auto", "always", "never")


def shared_studies(study_index: np.ndarray, outcome_index: np.ndarray, weights: np.ndarray) -> int:
    """The most studies (with weight 1) that report one same pair of outcomes."""
    keep = np.asarray(weights) > 0
    reported: dict[int, set[int]] = {}
    for s, k in zip(np.asarray(study_index)[keep], np.asarray(outcome_index)[keep]):
        reported.setdefault(int(s), set()).add(int(k))
    pairs: dict[tuple[int, int], int] = {}
    for ks in reported.values():
        ks_ = sorted(ks)
        for i, a in enumerate(ks_):
            for b in ks_[i + 1:]:
                pairs[(a, b)] = pairs.get((a, b), 0) + 1
    return max(pairs.values(), default=0)


def between_outcomes(mode: str, study_index: np.ndarray, outcome_index: np.ndarray,
                     weights: np.ndarray) -> tuple[bool, str]:
    """Whether the study effects of the outcomes are correlated (LKJ) and why, in words.

    ``auto``: correlated only when at least two studies report one same pair of outcomes;
    otherwise the correlation would be its prior alone (a single study reporting several
    outcomes cannot separate between-study correlation from chance), so the outcomes are
    modelled independently. A within-study correlation enters the likelihood either way.
    """
    if mode not in MULTIVARIATE:
        raise InputError(f"multivariate must be one of {', '.join(MULTIVARIATE)}, got {mode!r}")
    k = shared_studies(study_index, outcome_index, weights)
    if mode != "auto":
        return mode == "always", f"multivariate = '{mode}'"
    if k >= 2:
        return True, f"{k} studies report one same pair of outcomes"
    return False, (f"no pair of outcomes is reported by two or more studies ({'one study' if k else 'no study'} "
                   "at most), so the between-outcome correlation would be its prior alone")


def within_factor(study_index: np.ndarray, weights: np.ndarray, rho: float) -> np.ndarray:
    """L^-1 for the within-study correlation matrix R of the rows (R = L L'): R_ij = rho for two
    rows of one study that both have weight 1, else the identity. Raises InputError when R is
    not positive definite (rho <= -1/(m - 1) for a study with m such rows)."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float, np.integer, np.floating)) or not -1 < rho < 1:
        raise InputError(f"the within-study correlation must be a number in (-1, 1), got {rho!r}")
    idx, keep = np.asarray(study_index), np.asarray(weights) > 0
    same = (idx[:, None] == idx[None, :]) & keep[:, None] & keep[None, :]
    R = np.where(same, float(rho), 0.0)
    np.fill_diagonal(R, 1.0)
    try:
        L = np.linalg.cholesky(R)
    except np.linalg.LinAlgError:
        most = int(np.bincount(idx[keep]).max())
        raise InputError(f"a within-study correlation of {rho:g} is impossible for a study with {most} outcomes "
                         f"(it must exceed {-1 / (most - 1):.3g})") from None
    return np.linalg.solve(L, np.eye(len(idx)))


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
        within = fixed_data("within", d["within"])                                  # L^-1 of the within-study R
        pooled = fixed_data("pooled", d["pooled"])                                  # 0: one study, no u
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
            elif ("Omega", "LKJ") not in inp.structure.priors:    # independent: a normal-normal model per outcome
                tau = make_rv("tau", inp.priors["tau"], shape=k, dims="outcome")
                top.append(tau)
                chol = pt.diag(tau)
            else:
                chol, corr, tau = pm.LKJCholeskyCov("chol", n=k, eta=LKJ_ETA, sd_dist=_sd_dist(inp.priors["tau"], k),
                                                    compute_corr=True, store_in_trace=False)
                top.append(model["chol"])
                pm.Deterministic("tau", tau, dims="outcome")
                pm.Deterministic("Omega", corr, dims=("outcome", "outcome_bis"))
            of_outcome = onehot(inp.outcome_index, k).T                               # (rows, outcomes)
            u = (z[:, None, :] * chol[None, :, :]).sum(axis=2) * pooled[None, :]        # (studies, outcomes)
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
            theta = mu + (of_study * (pooled[0] * tau * z)[None, :]).sum(axis=1)
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
        e = pt.dot(within, (y - theta) / se)           # = (y - theta) / se when no study has correlated rows
        loglik = pm.Deterministic("loglik", -0.5 * pt.sqr(e) - pt.log(se) + pt.log(pt.diagonal(within))
                                  - 0.5 * np.log(2 * np.pi), dims="row")
        pm.Potential("weighted_loglik", pt.sum(w * loglik))
        if z_new is not None:
            pm.Deterministic("theta_typical", typical, dims=dims)
            pm.Deterministic("theta_new", new, dims=dims)
    return model


def prepare_normal(df: pd.DataFrame, estimate: str = "yi", std_err: str | None = None, study: str = "study", *,
                   variance: str | None = None, covariates: Sequence[str] = (), priors: Mapping | None = None,
                   outcome: str | None = None, reference: Mapping[str, str] | None = None,
                   profiles: pd.DataFrame | None = None, label: str | None = None,
                   weights: str | Sequence[float] | None = None, size: str | None = None,
                   multivariate: str = "auto", within_correlation: float = 0.0) -> ModelInputs:
    """Check the data and build the inputs of the normal model (nothing is compiled).
    ``std_err`` or ``variance`` (exactly one): the column of standard errors, or of sampling
    variances (metafor's ``vi``; the standard error is its square root).
    ``size``: a column with each row's number of patients (kept with the constant data).
    ``multivariate``: ``auto``, ``always`` or ``never`` (:func:`between_outcomes`);
    ``within_correlation``: the correlation of the estimates of two outcomes of one study."""
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
    k = len(coords.get("outcome", [None]))
    correlated, why = between_outcomes(multivariate, study_idx, outcome_idx, w)
    if k == 1:
        correlated, why = False, "one outcome"
    elif resolved["tau"]["dist"] == "Fixed":
        correlated, why = False, "tau is fixed by its prior: no study effects to correlate"
    informing = [len(set(study_idx[(w > 0) & (outcome_idx == j)])) for j in range(k)]
    data = {"estimate": y, "std_err": se, "weight": w, "within": within_factor(study_idx, w, within_correlation),
            "pooled": np.array([float(n >= 2) for n in informing]),
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
        latent=(), priors=families(resolved) + ((("Omega", "LKJ" if correlated else "Identity"),) if k > 1 else ()),
        profiles=len(profile_labels),
        outcome_index=tuple(int(i) for i in outcome_idx) if "outcome" in coords else ())
    gate = ["mu", "z"] + (["tau"] if resolved["tau"]["dist"] != "Fixed" else []) + (["beta"] if design.names else [])
    return ModelInputs(structure=structure, build=build_normal_model, study_index=study_idx,
                       outcome_index=outcome_idx if "outcome" in coords else None, data=data, gate=gate, design=design,
                       priors=resolved, row_labels=row_labels, studies=studies, weights=w, profiles=profile_labels,
                       observed={"estimate": y}, constant={"std_err": se, "weight": w}, row_param="theta",
                       observation=observation, coords=coords, row_info=row_info,
                       profile_values=profile_values(profiles, profile_labels),
                       attrs={"between_outcomes": "correlated (LKJ)" if correlated else "independent",
                              "between_outcomes_reason": why,
                              "within_correlation": f"{float(within_correlation):g}"})


def fit_normal(df: pd.DataFrame, estimate: str = "yi", std_err: str | None = None, study: str = "study", *,
               variance: str | None = None, covariates: Sequence[str] = (), priors: Mapping | None = None,
               outcome: str | None = None, reference: Mapping[str, str] | None = None,
               profiles: pd.DataFrame | None = None, label: str | None = None,
               weights: str | Sequence[float] | None = None, size: str | None = None,
               multivariate: str = "auto", within_correlation: float = 0.0,
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
    ``outcome`` dimension and, where the study effects are correlated, ``Omega`` is their
    between-outcome correlation. ``multivariate``: ``"auto"`` (default) correlates them
    (LKJ(2)) only when at least two studies report one same pair of outcomes, otherwise each
    outcome has its own normal-normal model; ``"always"`` or ``"never"`` force the choice.
    ``within_correlation``: the correlation of the estimates of two outcomes within one
    study (default 0), in the likelihood. An outcome with one study is that study's true
    effect under mu's prior (no between-study term; tau is then its prior and only spreads
    a new study's prediction). The posterior also holds ``theta``, each row's true effect,
    and for each prediction profile (without covariates: one, ``pooled``) ``theta_typical``
    (the mean effect) and ``theta_new`` (a new study's). Defaults: mu ~ Normal(0, 1),
    beta ~ Normal(0, 1), tau ~ HalfNormal(0.5).
    """
    inputs = prepare_normal(df, estimate, std_err, study, variance=variance, covariates=covariates, priors=priors,
                            outcome=outcome, reference=reference, profiles=profiles, label=label, weights=weights,
                            size=size, multivariate=multivariate, within_correlation=within_correlation)
    return fit_model(inputs, SamplerSettings.of(sampling, **sampler_options))
