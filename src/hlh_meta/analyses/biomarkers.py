"""The anakinra biomarker analysis: log ratios of CRP, ferritin, fibrinogen -> (multivariate) normal model."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd

from ..data import Dataset
from ..effects.biomarkers import resolve_biomarkers
from ..errors import SpecError
from ..models.normal import fit_normal
from ..spec import Spec


def biomarker_frame(ds: Dataset, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = resolve_biomarkers(ds, r=spec.get("data", "correlation", 0.5),
                              missing_dispersion=spec.get("data", "missing_dispersion", "impute_cv"))
    excluded_studies = set(spec.get("data", "exclude_studies", []))
    unknown = excluded_studies - set(ds.studies["study_id"])
    if unknown:
        raise SpecError(str(spec.path), "data.exclude_studies", f"unknown study '{sorted(unknown)[0]}'")
    primary = set(ds.studies.loc[ds.studies["include_primary"].astype(bool), "study_id"])
    reason = rows["reason"].where(~rows["usable"].astype(bool), "")
    reason = reason.mask(rows["study_id"].isin(excluded_studies) & (reason == ""), "study excluded by the spec")
    if spec.get("data", "primary_only", True):
        reason = reason.mask(~rows["study_id"].isin(primary) & (reason == ""), "study not in the primary analysis")
    used = rows[reason == ""].copy()
    used["label"] = used["study_id"] + ": " + used["biomarker"]
    left = rows[reason != ""].assign(excluded_because=reason[reason != ""])
    return used, left


def fit_biomarkers(ds: Dataset, spec: Spec, soft_exclude: frozenset[str] = frozenset(),
                   used: pd.DataFrame | None = None, progress: bool = False) -> az.InferenceData:
    """Fit the spec's model; ``soft_exclude`` (study ids) gives their rows weight 0 (same compiled model).

    ``used``: the rows of :func:`biomarker_frame` when the caller has them already.
    """
    used = biomarker_frame(ds, spec)[0] if used is None else used
    if used.empty:
        raise SpecError(str(spec.path), "data", "no biomarker row is usable")
    covs = spec.get("model", "covariates", [])
    multi = used["biomarker"].nunique() > 1
    return fit_normal(used.reset_index(drop=True), estimate="yi", std_err="sei", study="study_id", covariates=covs,
                      outcome="biomarker" if multi else None, label="label", priors=spec.section("priors"),
                      weights=(~used["study_id"].isin(soft_exclude)).astype(float).to_numpy(),
                      progress=progress, **spec.section("sampling"))


def _q(d: np.ndarray) -> dict:
    q = np.quantile(d, [0.025, 0.5, 0.975])
    return {"mean": float(d.mean()), "median": q[1], "q2.5": q[0], "q97.5": q[2]}


def reduction_draws(idata: az.InferenceData, seed: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Percent reduction draws per biomarker: ``pooled`` (mean study) and ``new`` (predictive)."""
    post = idata.posterior
    eps_rng = np.random.default_rng(seed)
    if "outcome" in post["mu"].dims:
        names = [str(o) for o in post["outcome"].values]
        mu = {n: post["mu"].sel(outcome=n).values.ravel() for n in names}
        tau = {n: post["tau"].sel(outcome=n).values.ravel() for n in names}
    else:
        names = [str(idata.posterior.attrs.get("outcome_name", "biomarker"))]
        mu = {names[0]: post["mu"].values.ravel()}
        tau = {names[0]: post["tau"].values.ravel()}
    out = {}
    for n in names:
        eps = eps_rng.standard_normal(mu[n].size)
        out[n] = {"pooled": 100 * (1 - np.exp(mu[n])), "new": 100 * (1 - np.exp(mu[n] + tau[n] * eps))}
    return out


def derived_biomarkers(idata: az.InferenceData, used: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    rows = []
    counts = used.groupby("biomarker")["study_id"].nunique()
    draws = reduction_draws(idata, seed)
    if len(draws) == 1 and len(counts) == 1:
        draws = {counts.index[0]: next(iter(draws.values()))}
    for name, d in draws.items():
        k = int(counts.get(name, 0))
        rows.append({"quantity": "pooled percent reduction", "biomarker": name, "n_studies": k, **_q(d["pooled"])})
        rows.append({"quantity": "predictive percent reduction", "biomarker": name, "n_studies": k, **_q(d["new"])})
    post = idata.posterior
    tau = post["tau"]
    for name in draws:
        t = tau.sel(outcome=name).values.ravel() if "outcome" in tau.dims else tau.values.ravel()
        rows.append({"quantity": "tau (between-study SD, log ratio)", "biomarker": name, **_q(t)})
    if "Omega" in post:
        names = list(post["outcome"].values)
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                d = post["Omega"].isel(outcome=i, outcome_bis=j).values.ravel()
                rows.append({"quantity": "between-biomarker correlation", "biomarker": f"{names[i]}~{names[j]}", **_q(d)})
    if "beta" in post:
        for name in post["covariate"].values:
            d = post["beta"].sel(covariate=name)
            for out in (d["outcome"].values if "outcome" in d.dims else [None]):
                dd = d.sel(outcome=out) if out is not None else d
                rows.append({"quantity": f"ratio of means per unit {name}", "biomarker": out or "",
                             **_q(np.exp(dd.values.ravel()))})
    frame = pd.DataFrame(rows)
    frame["n_studies"] = frame["n_studies"].astype("Int64")
    return frame


def biomarker_tables(ds: Dataset, spec: Spec, progress: bool = False) -> tuple[az.InferenceData, dict[str, pd.DataFrame]]:
    used, excluded = biomarker_frame(ds, spec)
    idata = fit_biomarkers(ds, spec, used=used, progress=progress)
    var_names = ["mu", "tau"] + (["beta"] if "beta" in idata.posterior else []) + (["Omega"] if "Omega" in idata.posterior else [])
    theta = idata.posterior["theta"]
    data_used = used.drop(columns=["usable", "reason", "label"]).assign(
        shrunken_percent_change=100 * (np.exp(theta.mean(("chain", "draw")).values) - 1))
    studies = ds.studies[ds.studies["study_id"].isin(used["study_id"])]
    tables = {
        "summary": az.summary(idata, var_names=var_names, hdi_prob=0.95),
        "derived": derived_biomarkers(idata, used, seed=spec.get("sampling", "seed")),
        "studies": studies[["study_id", "citation", "design", "n_patients", "age_group", "route", "risk_of_bias"]],
        "data_used": data_used,
        "excluded": excluded.drop(columns=["usable"]),
    }
    return idata, tables
