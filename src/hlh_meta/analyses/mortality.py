"""The anakinra mortality analysis: strata -> binomial meta-regression -> clinical quantities."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
from scipy.special import expit

from ..data import Dataset
from ..data.schema import TRIGGERS
from ..effects.mortality import resolve_mortality
from ..errors import SpecError
from ..models.binomial import fit_binomial
from ..spec import Spec

PARTITION_ORDER = ("trigger", "underlying_diagnosis", "age", "overall")
#: spec covariate -> design columns and the fraction group they form
COVARIATES = {
    "trigger": [f"trigger[{t}]" for t in TRIGGERS if t != "infection"],
    "age_group": ["age_group[paediatric]"],
    "iv_fraction": ["iv_fraction"],
}
THRESHOLDS = (10, 20, 30)


def _shares(rec, studies) -> dict[str, float]:
    known = rec["trigger"] != "unknown"
    trig = {f"trigger[{t}]": float(rec["trigger"] == t) if known else np.nan for t in TRIGGERS if t != "infection"}
    age = rec["age_group"]
    paed = 1.0 if age == "paediatric" else 0.0 if age == "adult" else np.nan
    study = studies.loc[rec["study_id"]]
    iv = np.nan if pd.isna(study["n_iv"]) else study["n_iv"] / study["n_patients"]
    if study["route"] == "sc":
        iv = 0.0
    return {**trig, "age_group[paediatric]": paed, "iv_fraction": iv}


def mortality_frame(ds: Dataset, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Strata entering the model, and every other row of mortality.csv with why it is left out."""
    strata = resolve_mortality(ds, attribution=spec.get("data", "attribution", "primary"))
    studies = ds.studies.set_index("study_id")
    chosen: dict[str, str] = dict(spec.get("data", "partitions", {}))
    excluded_studies = set(spec.get("data", "exclude_studies", []))
    for sid in set(chosen) | excluded_studies:
        if sid not in studies.index:
            raise SpecError(str(spec.path), "data", f"unknown study '{sid}'")
    for sid, part in chosen.items():
        if not ((strata["study_id"] == sid) & (strata["partition"] == part)).any():
            raise SpecError(str(spec.path), f"data.partitions.{sid}", f"study has no partition '{part}'")
    primary_only = spec.get("data", "primary_only", True)
    reasons = pd.Series("", index=strata.index, dtype=object)
    for sid, rows in strata.groupby("study_id"):
        if sid in excluded_studies:
            reasons[rows.index] = "study excluded by the spec"
            continue
        if primary_only and not bool(studies.at[sid, "include_primary"]):
            reasons[rows.index] = "study not in the primary analysis (include_primary = false)"
            continue
        part = chosen.get(sid)
        if part is None:
            usable_parts = [p for p in PARTITION_ORDER if rows.loc[rows["partition"] == p, "usable"].any()]
            part = usable_parts[0] if usable_parts else None
        for r, rec in rows.iterrows():
            if part is None or rec["partition"] != part:
                reasons[r] = f"partition '{part}' used for this study" if part else rec["reason"] or "no usable stratum"
            elif not rec["usable"]:
                reasons[r] = rec["reason"]
    used = strata[reasons == ""].copy()
    shares = pd.DataFrame([_shares(rec, studies) for _, rec in used.iterrows()], index=used.index)
    used = pd.concat([used, shares], axis=1)
    used["label"] = used["study_id"] + ": " + used["stratum"]
    left = strata[reasons != ""].assign(excluded_because=reasons[reasons != ""])
    return used, left


def _design_columns(spec: Spec, covs: list[str]) -> list[str]:
    unknown = [c for c in covs if c not in COVARIATES]
    if unknown:
        raise SpecError(str(spec.path), "model.covariates",
                        f"unknown covariate(s) {', '.join(unknown)}; choose from {', '.join(COVARIATES)}")
    return [c for cov in covs for c in COVARIATES[cov]]


def fit_mortality(ds: Dataset, spec: Spec, covariates: list[str] | None = None, structure: list[str] | None = None,
                  soft_exclude: frozenset[str] = frozenset(), counts: dict | None = None,
                  frame: pd.DataFrame | None = None, progress: bool = False) -> az.InferenceData:
    """Fit the spec's model (or the given covariate set).

    ``structure`` lists the covariates of the compiled model; those not in ``covariates``
    are switched off by the covariate mask, so nested sets share one compiled model.
    ``soft_exclude`` (study ids) gives their rows weight 0 and ``counts`` replaces
    ``(study_id, stratum) -> (deaths, n)``: both keep the compiled model. ``frame``: the
    rows of :func:`mortality_frame` when the caller has them already.
    """
    frame = (mortality_frame(ds, spec)[0] if frame is None else frame).copy()
    for (sid, stratum), (deaths, n) in (counts or {}).items():
        hit = (frame["study_id"] == sid) & (frame["stratum"] == stratum)
        if not hit.any():
            raise ValueError(f"no stratum '{stratum}' of '{sid}' in the model")
        frame.loc[hit, ["deaths", "n"]] = [deaths, n]
    covs = list(spec.get("model", "covariates", []) if covariates is None else covariates)
    structure = covs if structure is None else list(structure)
    columns = _design_columns(spec, structure)
    active = set(_design_columns(spec, covs))
    if not active <= set(columns):
        raise SpecError(str(spec.path), "comparison.covariate_sets", "a covariate set is not part of the model structure")
    frame = frame.reset_index(drop=True)
    frame[["deaths", "n"]] = frame[["deaths", "n"]].astype(int)
    return fit_binomial(frame, events="deaths", total="n", study="study_id", covariates=columns,
                        fractions={cov: COVARIATES[cov] for cov in structure}, label="label",
                        shared={"iv_fraction": "study_id"} if "iv_fraction" in structure else None,
                        covariate_mask=[1.0 if c in active else 0.0 for c in columns],
                        weights=(~frame["study_id"].isin(soft_exclude)).astype(float).to_numpy(),
                        priors=spec.section("priors"), progress=progress, **spec.section("sampling"))


def _profiles(names: list[str]) -> dict[str, dict[str, float]]:
    profiles = {"infection trigger (adult, subcutaneous; the reference profile)": {}}
    for t in TRIGGERS[1:]:
        if f"trigger[{t}]" in names:
            profiles[f"{t} trigger (adult, subcutaneous)"] = {f"trigger[{t}]": 1.0}
    if "age_group[paediatric]" in names:
        profiles["paediatric (infection trigger, subcutaneous)"] = {"age_group[paediatric]": 1.0}
    if "iv_fraction" in names:
        profiles["intravenous (infection trigger, adult)"] = {"iv_fraction": 1.0}
    return profiles


def _row(quantity: str, profile: str, draws: np.ndarray, thresholds=THRESHOLDS) -> dict:
    q = np.quantile(draws, [0.025, 0.5, 0.975])
    row = {"quantity": quantity, "profile": profile, "mean": draws.mean(), "median": q[1], "q2.5": q[0], "q97.5": q[2]}
    for t in thresholds:
        row[f"P(<{t}%)"] = float((draws < t).mean())
    return row


def profile_draws(idata: az.InferenceData, seed: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Mortality draws (percent) per covariate profile: ``typical`` study and a ``new`` study."""
    post = idata.posterior
    mu = post["mu"].values.ravel()
    tau = post["tau"].values.ravel()
    names = list(post["covariate"].values) if "beta" in post else []
    beta = post["beta"].values.reshape(-1, len(names)) if names else np.zeros((mu.size, 0))
    eps = np.random.default_rng(seed).standard_normal(mu.size)
    out = {}
    for label, x in _profiles(names).items():
        eta = mu + sum(beta[:, names.index(k)] * v for k, v in x.items())
        out[label] = {"typical": 100 * expit(eta), "new": 100 * expit(eta + tau * eps)}
    return out


def derived_mortality(idata: az.InferenceData, seed: int | None = None) -> pd.DataFrame:
    """Clinical quantities in percent: typical-study and predictive mortality per profile, odds ratios, tau."""
    rows = []
    for label, draws in profile_draws(idata, seed).items():
        rows.append(_row("mortality, typical study (%)", label, draws["typical"]))
        rows.append(_row("mortality, new study (predictive, %)", label, draws["new"]))
    post = idata.posterior
    if "beta" in post:
        for name in post["covariate"].values:
            rows.append(_row("odds ratio", str(name), np.exp(post["beta"].sel(covariate=name).values.ravel()), thresholds=()))
    rows.append(_row("tau (between-study SD, logit scale)", "", post["tau"].values.ravel(), thresholds=()))
    return pd.DataFrame(rows)


def compare_covariate_sets(ds: Dataset, spec: Spec, primary: az.InferenceData | None = None,
                           frame: pd.DataFrame | None = None, progress: bool = False) -> pd.DataFrame:
    """PSIS-LOO (arviz) of the covariate sets listed under [comparison].

    All sets are fitted on one compiled model holding the union of their covariates,
    with the unused ones masked off.
    """
    sets = [list(s) for s in spec.get("comparison", "covariate_sets", [])]
    if len(sets) < 2:
        return pd.DataFrame()
    primary_covs = list(spec.get("model", "covariates", []))
    union = primary_covs + [c for s in sets for c in s if c not in primary_covs]
    union = list(dict.fromkeys(union))
    frame = mortality_frame(ds, spec)[0] if frame is None else frame
    fits = {}
    for covs in sets:
        label = " + ".join(covs) if covs else "intercept only"
        if primary is not None and covs == primary_covs and union == primary_covs:
            fits[label] = primary
        else:
            fits[label] = fit_mortality(ds, spec, covariates=covs, structure=union, frame=frame, progress=progress)
    return az.compare(fits, ic="loo")


def mortality_tables(ds: Dataset, spec: Spec, progress: bool = False) -> tuple[az.InferenceData, dict[str, pd.DataFrame]]:
    """Fit the primary model and the LOO comparison; return the tables of the results folder."""
    used, excluded = mortality_frame(ds, spec)
    idata = fit_mortality(ds, spec, frame=used, progress=progress)
    var_names = ["mu", "tau"] + (["beta"] if "beta" in idata.posterior else [])
    summary = az.summary(idata, var_names=var_names, hdi_prob=0.95)
    p = idata.posterior["p"]
    data_used = used.drop(columns=["usable", "reason", "label"]).assign(
        observed_percent=100 * used["deaths"].astype(float) / used["n"].astype(float),
        fitted_percent_mean=100 * p.mean(("chain", "draw")).values,
        fitted_percent_q2_5=100 * p.quantile(0.025, ("chain", "draw")).values,
        fitted_percent_q97_5=100 * p.quantile(0.975, ("chain", "draw")).values,
    )
    studies = ds.studies[ds.studies["study_id"].isin(used["study_id"])]
    tables = {
        "summary": summary,
        "studies": studies[["study_id", "citation", "design", "n_patients", "age_group", "route", "n_iv",
                            "trigger_mix", "risk_of_bias"]],
        "derived": derived_mortality(idata, seed=spec.get("sampling", "seed")),
        "data_used": data_used,
        "excluded": excluded.drop(columns=["usable"]),
    }
    comparison = compare_covariate_sets(ds, spec, primary=idata, frame=used, progress=progress)
    if not comparison.empty:
        tables["comparison"] = comparison
    return idata, tables
