"""The anakinra mortality analysis: strata -> binomial meta-regression -> clinical quantities."""

from __future__ import annotations

import json
from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats

from ..data import Dataset
from ..data.schema import AGE_GROUPS, TRIGGERS
from ..effects.mortality import resolve_mortality
from ..models.binomial import prepare_binomial
from ..models.engine import ModelInputs, fit_model
from ..spec import Spec
from .base import PRIMARY, AnalysisType, FigureSpec, Quantity, Variant, quantity_table
from .families import SHARED, prior_family
from .registry import register

PARTITION_ORDER = ("trigger", "underlying_diagnosis", "age", "overall")
COVARIATES = ("trigger", "age_group", "iv_fraction")
DEFAULT_REFERENCE = {"trigger": "infection", "age_group": "adult"}
LEVELS = {"trigger": TRIGGERS, "age_group": AGE_GROUPS}
THRESHOLDS = (10, 20, 30)
PRIOR_SETS = [("tau", {"dist": "HalfNormal", "sigma": 0.5}), ("tau", {"dist": "HalfNormal", "sigma": 2.0}),
              ("tau", {"dist": "HalfCauchy", "beta": 1.0}), ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 3.0}),
              ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 0.75}), ("beta", {"dist": "Normal", "mu": 0.0, "sigma": 2.0}),
              ("beta", {"dist": "Normal", "mu": 0.0, "sigma": 0.5})]


def references(spec: Spec) -> dict[str, str]:
    """Reference level of each categorical covariate: ``[model] reference`` over the defaults."""
    given = spec.get("model", "reference")
    for cov, level in given.items():
        if cov not in LEVELS:
            raise spec.error(f"model.reference.{cov}", f"no reference level to choose; choose for {', '.join(LEVELS)}")
        if level not in LEVELS[cov]:
            raise spec.error(f"model.reference.{cov}", f"unknown level '{level}'; choose from {', '.join(LEVELS[cov])}")
    return {**DEFAULT_REFERENCE, **given}


def design_columns(spec: Spec, covariates: list[str] | None = None, key: str = "model.covariates") -> dict[str, list[str]]:
    """Spec covariate -> its share columns (the composition group it forms)."""
    covs = spec.get("model", "covariates") if covariates is None else covariates
    unknown = [c for c in covs if c not in COVARIATES]
    if unknown:
        raise spec.error(key, f"unknown covariate(s) {', '.join(map(str, unknown))}; choose from {', '.join(COVARIATES)}")
    ref = references(spec)
    out = {}
    for cov in covs:
        out[cov] = ["iv_fraction"] if cov == "iv_fraction" else [f"{cov}[{lv}]" for lv in LEVELS[cov] if lv != ref[cov]]
    return out


def _shares(rec, studies: pd.DataFrame) -> dict[str, float]:
    """The stratum's share of every category (NaN: unknown)."""
    out = {}
    for cov, levels in LEVELS.items():
        value = rec["trigger" if cov == "trigger" else "age_group"]
        known = value in levels
        for lv in levels:
            out[f"{cov}[{lv}]"] = float(value == lv) if known else np.nan
    study = studies.loc[rec["study_id"]]
    iv = np.nan if pd.isna(study["n_iv"]) else study["n_iv"] / study["n_patients"]
    out["iv_fraction"] = 0.0 if study["route"] == "sc" else iv
    return out


def _profiles(spec: Spec, covs: dict[str, list[str]]) -> pd.DataFrame:
    """The reference profile and each covariate level changed one at a time from it."""
    ref = references(spec)
    def label(trigger, age, route):
        return f"{trigger} trigger, {age}, {route}"
    base = {"trigger": ref["trigger"], "age_group": ref["age_group"], "iv_fraction": 0.0}
    rows = {f"{label(base['trigger'], base['age_group'], 'subcutaneous')} (the reference profile)": base}
    if "trigger" in covs:
        for t in TRIGGERS:
            if t != ref["trigger"]:
                rows[label(t, base["age_group"], "subcutaneous")] = {**base, "trigger": t}
    if "age_group" in covs:
        for a in AGE_GROUPS:
            if a != ref["age_group"]:
                rows[label(base["trigger"], a, "subcutaneous")] = {**base, "age_group": a}
    if "iv_fraction" in covs:
        rows[label(base["trigger"], base["age_group"], "intravenous")] = {**base, "iv_fraction": 1.0}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    out = pd.DataFrame(index=frame.index)
    for cov, cols in covs.items():
        if cov == "iv_fraction":
            out["iv_fraction"] = frame["iv_fraction"].astype(float)
        else:
            for col in cols:
                out[col] = (frame[cov] == col[len(cov) + 1:-1]).astype(float)
    return out


def _percent(a) -> np.ndarray:
    return 100 * np.asarray(a).reshape(-1)


def _draws(group, name: str, **sel) -> np.ndarray | None:
    if group is None or name not in group:
        return None
    return group[name].sel(**sel).values.reshape(-1)


@register
class Mortality(AnalysisType):
    kind = "mortality"
    families = {"priors": prior_family(PRIOR_SETS), **SHARED}
    robustness_keys = ("mortality_typical", "odds_ratio", "tau")
    indexed_tables = ("summary", "comparison")
    figures = (
        FigureSpec("forest", "forest", "Observed mortality of each stratum (exact 95% CI) with the model's estimate, "
                   "the pooled typical-study estimate and the prediction interval for a new study."),
        FigureSpec("subgroups", "densities", "Posterior distribution of the mortality of a typical study for each "
                   "covariate profile.", select=("mortality_typical",),
                   title="Posterior mortality by trigger, age group and route", xlabel="mortality of a typical study (%)"),
        FigureSpec("odds_ratios", "intervals", "Covariate effects as odds ratios of death (posterior median and 95% "
                   "credible interval).", select=("odds_ratio",), title="Covariate effects",
                   xlabel="odds ratio of death (median, 95% CrI; log scale)", log_x=True, reference_line=1.0),
        FigureSpec("trace", "trace", "Trace and rank plots of the main parameters."),
        FigureSpec("prior_posterior", "prior_posterior", "Prior against posterior for the intercept and the "
                   "between-study SD."),
        FigureSpec("ppc", "ppc", "Posterior predictive check: each observed value against the distribution of "
                   "replicated values."),
    )

    # ---- frame
    def frame(self, ds: Dataset, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
        strata = resolve_mortality(ds, attribution=spec.get("data", "attribution"))
        studies = ds.studies.set_index("study_id")
        chosen: dict[str, str] = spec.get("data", "partitions")
        excluded_studies = set(spec.get("data", "exclude_studies"))
        for sid in sorted(set(chosen) | excluded_studies):
            if sid not in studies.index:
                raise spec.error("data", f"unknown study '{sid}'")
        for sid, part in chosen.items():
            if not ((strata["study_id"] == sid) & (strata["partition"] == part)).any():
                raise spec.error(f"data.partitions.{sid}", f"study has no partition '{part}'")
        primary_only = spec.get("data", "primary_only")
        reasons = pd.Series("", index=strata.index, dtype=object)
        for sid, rows in strata.groupby("study_id", sort=False):
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

    # ---- model inputs
    def inputs(self, ds: Dataset, spec: Spec, used: pd.DataFrame, variant: Variant = PRIMARY,
               covariates: list[str] | None = None, structure: list[str] | None = None) -> ModelInputs:
        """``structure``: the covariates of the compiled model (default: the spec's); those
        not in ``covariates`` are switched off by the covariate mask, so nested covariate
        sets share one compiled model."""
        frame = used.reset_index(drop=True).copy()
        for (sid, stratum), (deaths, n) in variant.counts.items():
            hit = (frame["study_id"] == sid) & (frame["stratum"] == stratum)
            if not hit.any():
                raise spec.error("sensitivity", f"no stratum '{stratum}' of '{sid}' in the model")
            frame.loc[hit, ["deaths", "n"]] = [deaths, n]
        frame[["deaths", "n"]] = frame[["deaths", "n"]].astype(int)
        struct = design_columns(spec, structure)
        active = design_columns(spec, covariates, key="comparison.covariate_sets") if covariates is not None else struct
        if not set(active) <= set(struct):
            raise spec.error("comparison.covariate_sets", "a covariate set is not part of the model structure")
        columns = [c for cols in struct.values() for c in cols]
        on = {c for cols in active.values() for c in cols}
        return prepare_binomial(
            frame, events="deaths", total="n", study="study_id", covariates=columns, fractions=struct, label="label",
            shared={"iv_fraction": "study_id"} if "iv_fraction" in struct else None,
            covariate_mask=[1.0 if c in on else 0.0 for c in columns],
            weights=(~frame["study_id"].isin(variant.soft_exclude)).astype(float).to_numpy(),
            profiles=_profiles(spec, struct), priors=spec.section("priors"))

    # ---- quantities
    def quantities(self, idata: az.InferenceData) -> list[Quantity]:
        post, prior = idata.posterior, getattr(idata, "prior", None)
        values = json.loads(post.attrs.get("profiles", "{}"))
        n = len(post["study"]) if "study" in post.dims else None
        out = []
        for label in map(str, post["profile"].values) if "profile" in post.dims else []:
            for key, var, words in (("mortality_typical", "p_typical", "mortality, typical study (%)"),
                                    ("mortality_new", "p_new", "mortality, new study (predictive, %)")):
                pr = _draws(prior, var, profile=label)
                out.append(Quantity(key, "mortality", label, words, "percent", _percent(post[var].sel(profile=label)),
                                    None if pr is None else _percent(pr), values.get(label, {}), THRESHOLDS, n))
        for name in map(str, post["covariate"].values) if "beta" in post else []:
            pr = _draws(prior, "beta", covariate=name)
            out.append(Quantity("odds_ratio", "mortality", name, "odds ratio", "odds ratio",
                                np.exp(post["beta"].sel(covariate=name).values.reshape(-1)),
                                None if pr is None else np.exp(pr), {"covariate": name}, (), n))
        tau_prior = _draws(prior, "tau")
        out.append(Quantity("tau", "mortality", "", "tau (between-study SD, logit scale)", "SD (logit scale)",
                            post["tau"].values.reshape(-1), tau_prior, {}, (), n))
        return out

    # ---- tables
    def tables(self, ds, spec, used, excluded, idata, quantities, progress=False) -> dict[str, pd.DataFrame]:
        var_names = ["mu", "tau"] + (["beta"] if "beta" in idata.posterior else [])
        p = idata.posterior["p"]
        data_used = used.drop(columns=["usable", "reason", "label"]).assign(
            observed_percent=100 * used["deaths"].astype(float) / used["n"].astype(float),
            fitted_percent_mean=100 * p.mean(("chain", "draw")).values,
            fitted_percent_q2_5=100 * p.quantile(0.025, ("chain", "draw")).values,
            fitted_percent_q97_5=100 * p.quantile(0.975, ("chain", "draw")).values,
        )
        studies = ds.studies[ds.studies["study_id"].isin(used["study_id"])]
        tables = {
            "summary": az.summary(idata, var_names=var_names, hdi_prob=0.95),
            "studies": studies[["study_id", "citation", "design", "n_patients", "age_group", "route", "n_iv",
                                "trigger_mix", "risk_of_bias"]],
            "derived": quantity_table(quantities),
            "data_used": data_used,
            "excluded": excluded.drop(columns=["usable"]),
        }
        comparison = self.compare(ds, spec, used, idata, progress=progress)
        if not comparison.empty:
            tables["comparison"] = comparison
        return tables

    def compare(self, ds: Dataset, spec: Spec, used: pd.DataFrame, primary: az.InferenceData | None = None,
                progress: bool = False) -> pd.DataFrame:
        """PSIS-LOO (arviz) of the covariate sets listed under [comparison], all fitted on one
        compiled model holding the union of their covariates (the unused ones masked off)."""
        sets = [list(s) for s in spec.get("comparison", "covariate_sets")]
        if len(sets) < 2:
            return pd.DataFrame()
        primary_covs = spec.get("model", "covariates")
        union = list(dict.fromkeys(primary_covs + [c for s in sets for c in s]))
        settings = self.settings(spec, progress=progress)
        fits = {}
        for covs in sets:
            label = " + ".join(covs) if covs else "intercept only"
            if primary is not None and covs == primary_covs and union == primary_covs:
                fits[label] = primary
            else:
                fits[label] = fit_model(self.inputs(ds, spec, used, covariates=covs, structure=union), settings,
                                        extras=False)
        return az.compare(fits, ic="loo")

    # ---- report
    def headline(self, quantities: list[Quantity]) -> list[str]:
        new = {q.label: q for q in quantities if q.key == "mortality_new"}
        out = []
        for q in (q for q in quantities if q.key == "mortality_typical"):
            s, pn = q.summary(), new[q.label].summary()
            out.append(f"{q.label[0].upper() + q.label[1:]}: mortality of a typical study {_fmt(s['median'])}% "
                       f"(95% CrI {_fmt(s['q2.5'])}–{_fmt(s['q97.5'])}%); a new study could see "
                       f"{_fmt(pn['q2.5'])}–{_fmt(pn['q97.5'])}%. P(mortality < 20%) = {s['P(<20%)']:.2f}.")
        return out

    def methods(self, idata: az.InferenceData) -> str:
        form = idata.posterior.attrs.get("likelihood", "linear")
        mix = ("a stratum that mixes triggers, age groups or routes has the mixture likelihood: its probability of "
               "death is the share-weighted mean of the probabilities of its categories" if form == "mixture" else
               "a stratum that mixes triggers, age groups or routes enters with its shares inside the linear predictor")
        return ("Deaths in each stratum follow a binomial distribution; the log-odds of death is an intercept (mu) plus "
                "covariate effects (beta) plus a study effect drawn from Normal(0, tau) (non-centred). Each study enters "
                f"through one partition of its patients, so no patient is counted twice; {mix}, and shares a source "
                "does not report are unknowns with a flat Dirichlet/Beta prior rather than dropped rows.")

    def forest(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> dict[str, pd.DataFrame]:
        used = tables["data_used"]
        deaths, n = used["deaths"].to_numpy(float), used["n"].to_numpy(float)
        lo = np.where(deaths > 0, stats.beta.ppf(0.025, deaths, n - deaths + 1), 0) * 100
        hi = np.where(deaths < n, stats.beta.ppf(0.975, deaths + 1, n - deaths), 1) * 100
        rows = pd.DataFrame({
            "label": [f"{r.study_id}: {str(r.stratum).replace('_', ' ')} ({int(r.deaths)}/{int(r.n)})"
                      for r in used.itertuples()],
            "observed": 100 * deaths / n, "observed_lo": lo, "observed_hi": hi,
            "fitted": used["fitted_percent_mean"].to_numpy(), "fitted_lo": used["fitted_percent_q2_5"].to_numpy(),
            "fitted_hi": used["fitted_percent_q97_5"].to_numpy()})
        ref = next((q for q in quantities if q.key == "mortality_typical"), None)
        summaries = []
        if ref is not None:
            new = next(q for q in quantities if q.key == "mortality_new" and q.label == ref.label)
            for q, what, kind in ((ref, "pooled: typical study", "pooled"), (new, "pooled: new study", "prediction")):
                s = q.summary()
                summaries.append({"label": what, "estimate": s["median"], "lo": s["q2.5"], "hi": s["q97.5"], "kind": kind,
                                  "note": q.label})
        return {"rows": rows, "summaries": pd.DataFrame(summaries), "xlabel": "mortality (%)",
                "observed_name": "observed (exact 95% CI)", "fitted_name": "model estimate (95% CrI)",
                "title": f"reference profile: {ref.label}" if ref is not None else ""}


def _fmt(x, digits: int = 1) -> str:
    return "" if pd.isna(x) else f"{x:.{digits}f}"


# ---- mortality-only sensitivity families
def _attribution(analysis, ds, spec, used) -> list[Variant]:
    return [Variant("alternative death attribution", "attribution", patch={"data": {"attribution": "alternative"}})]


def _count_alternatives(analysis, ds, spec, used) -> list[Variant]:
    return [Variant(f"counts {r['study_id']}/{r['stratum']} = {deaths}/{n}", "count_alternatives",
                    counts={(r["study_id"], r["stratum"]): (deaths, n)})
            for _, r in used.iterrows() for deaths, n in r["alternatives"]]


def _partition(analysis, ds, spec, used) -> list[Variant]:
    strata = resolve_mortality(ds)
    used_parts = spec.get("data", "partitions")
    chosen = used.groupby("study_id", sort=False)["partition"].first().to_dict()
    out = []
    for sid in pd.unique(used["study_id"]):
        usable = strata[(strata["study_id"] == sid) & strata["usable"].astype(bool)]["partition"].unique()
        for part in usable:
            if part != chosen.get(sid):
                out.append(Variant(f"partition {sid} = {part}", "partition",
                                   patch={"data": {"partitions": {**used_parts, sid: part}}}))
    return out


Mortality.families = {**Mortality.families, "attribution": _attribution, "count_alternatives": _count_alternatives,
                      "partition": _partition}
