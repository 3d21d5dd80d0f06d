"""The anakinra mortality analysis: strata -> binomial meta-regression -> clinical quantities.

What is reported follows where the data are: the headline is the mortality across the
included strata (each with its own trigger, age and route mix); a profile fixes one
covariate and takes the others as in the included strata; the reference level of each
covariate (the baseline of its odds ratios) is the level most patients of known composition
have, unless ``[model] reference`` says otherwise; a profile or odds ratio of a level that
no stratum of known composition holds is labelled an extrapolation.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping

import arviz as az
import numpy as np
import pandas as pd

from ..data import Dataset
from ..data.schema import AGE_GROUPS, TRIGGERS
from ..effects.mortality import resolve_mortality
from ..inference import ThinDataWarning
from ..models.binomial import prepare_binomial
from ..models.coding import CODINGS
from ..models.engine import ModelInputs, fit_model
from ..spec import Spec
from .compositions import UNOBSERVED, Compositions
from .crossval import PARETO_K_REFIT, exact_lpd, integrated_study_loglik, psis_lpd, study_loglik
from .base import PRIMARY, AnalysisType, FigureSpec, Quantity, Variant, keys_read, quantity_table
from .quantity_id import Contrast, QuantityId
from .support import CONFLICT, rests_note
from .families import SHARED, prior_family
from .judgements import judged
from .findings import binomial_findings
from .frames import kept_for_dataset
from .forest_rows import count_rows, group_name, subgroup_table
from .heterogeneity import mortality_heterogeneity
from .registry import register
from .selection import excluded_studies

PARTITION_ORDER = ("trigger", "underlying_diagnosis", "age", "overall")
COVARIATES = ("trigger", "age_group", "iv_fraction")
LEVELS = {"trigger": TRIGGERS, "age_group": AGE_GROUPS, "iv_fraction": ("subcutaneous", "intravenous")}
ROUTE_COLUMN = "iv_fraction"
THRESHOLDS = (10, 20, 30)
POPULATION = "all included strata (each with its own trigger, age and route mix)"
#: the headline: a typical study's mortality across the included strata (no covariate fixed)
POPULATION_ID = QuantityId("mortality", "mortality_typical")
PRIOR_SETS = [("tau", {"dist": "HalfNormal", "sigma": 0.5}), ("tau", {"dist": "HalfNormal", "sigma": 2.0}),
              ("tau", {"dist": "HalfCauchy", "beta": 1.0}), ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 3.0}),
              ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 0.75}), ("beta", {"dist": "Normal", "mu": 0.0, "sigma": 2.0}),
              ("beta", {"dist": "Normal", "mu": 0.0, "sigma": 0.5})]


def _column(cov: str, level: str) -> str:
    """The design column of a covariate level (the IV share stands for the intravenous level)."""
    return ROUTE_COLUMN if cov == "iv_fraction" else f"{cov}[{level}]"


def _covariates(spec: Spec, covariates: list[str] | None = None, key: str = "model.covariates") -> list[str]:
    covs = spec.get("model", "covariates") if covariates is None else covariates
    unknown = [c for c in covs if c not in COVARIATES]
    if unknown:
        raise spec.error(key, f"unknown covariate(s) {', '.join(map(str, unknown))}; choose from {', '.join(COVARIATES)}")
    return list(covs)


def check_covariate_sets(spec: Spec) -> None:
    """``[comparison] covariate_sets``: none, or two or more distinct lists of known covariates."""
    key = "comparison.covariate_sets"
    sets = spec.get("comparison", "covariate_sets")
    for s in sets:
        if not isinstance(s, list) or not all(isinstance(c, str) for c in s):
            raise spec.error(key, f"each set must be a list of covariate names, e.g. [[], [\"trigger\"]]; got {s!r}")
        _covariates(spec, s, key=key)
        if len(set(s)) != len(s):
            raise spec.error(key, f"the set {s!r} names a covariate twice")
    distinct = {frozenset(s) for s in sets}
    if len(distinct) != len(sets):
        raise spec.error(key, "a covariate set is listed twice")
    if len(sets) == 1:
        raise spec.error(key, "list two or more sets to compare (one set has nothing to be compared with), "
                              "or none")


def references(spec: Spec) -> dict[str, str]:
    """Reference level of each covariate as the (resolved) spec gives it."""
    given = spec.get("model", "reference")
    for cov, level in given.items():
        if cov not in LEVELS:
            raise spec.error(f"model.reference.{cov}", f"no such covariate; choose for {', '.join(LEVELS)}")
        if level not in LEVELS[cov]:
            raise spec.error(f"model.reference.{cov}", f"unknown level '{level}'; choose from {', '.join(LEVELS[cov])}")
    return {"trigger": TRIGGERS[0], "age_group": AGE_GROUPS[1], "iv_fraction": "subcutaneous", **given}


def design_columns(spec: Spec, covariates: list[str] | None = None, key: str = "model.covariates") -> dict[str, list[str]]:
    """Spec covariate -> its share columns (the composition group it forms)."""
    ref = references(spec)
    return {cov: [ROUTE_COLUMN] if cov == "iv_fraction" else [_column(cov, lv) for lv in LEVELS[cov] if lv != ref[cov]]
            for cov in _covariates(spec, covariates, key)}


def _shares(rec, studies: pd.DataFrame) -> dict[str, float]:
    """The stratum's share of every category (NaN: unknown)."""
    out = {}
    for cov in ("trigger", "age_group"):
        value = rec[cov]
        known = value in LEVELS[cov]
        for lv in LEVELS[cov]:
            out[_column(cov, lv)] = float(value == lv) if known else np.nan
    study = studies.loc[rec["study_id"]]
    iv = np.nan if pd.isna(study["n_iv"]) else study["n_iv"] / study["n_patients"]
    out[ROUTE_COLUMN] = 0.0 if study["route"] == "sc" else iv
    return out


def _level_share(used: pd.DataFrame, cov: str, level: str) -> pd.Series:
    """Each row's known share of a covariate level (NaN where unknown)."""
    if cov == "iv_fraction":
        return used[ROUTE_COLUMN] if level == "intravenous" else 1 - used[ROUTE_COLUMN]
    return used[_column(cov, level)]


def _profiles(covs: list[str]) -> pd.DataFrame:
    """The population profile (every covariate as in the included strata), then each level
    of each covariate with the other covariates as in the included strata."""
    rows = {POPULATION: {}}
    for cov in covs:
        for level in LEVELS[cov]:
            label = (f"{level} trigger" if cov == "trigger" else f"{level} patients" if cov == "age_group"
                     else f"{level} anakinra")
            rows[f"{label} (other covariates as in the included strata)"] = {"covariate": cov, "level": level}
    columns = [ROUTE_COLUMN if c == "iv_fraction" else _column(c, lv) for c in covs for lv in LEVELS[c]
               if c != "iv_fraction" or lv == "intravenous"]
    out = pd.DataFrame(np.nan, index=list(rows), columns=list(dict.fromkeys(columns)))
    for label, what in rows.items():
        if what:
            cov, level = what["covariate"], what["level"]
            if cov == "iv_fraction":
                out.at[label, ROUTE_COLUMN] = 1.0 if level == "intravenous" else 0.0
            else:
                for lv in LEVELS[cov]:
                    out.at[label, _column(cov, lv)] = float(lv == level)
    return out


def _composition(frame: pd.DataFrame, refs: dict[str, str]) -> dict:
    """What the sources say about strata of unknown trigger mix (``trigger_excluded``,
    ``trigger_known``), as the engine's composition rules: excluded triggers, and known
    numbers of patients within some triggers (a share of the stratum's n)."""
    from ..data.consistency import parse_known

    def category(level: str) -> str:
        return "trigger[rest]" if level == refs["trigger"] else _column("trigger", level)

    rules = {}
    for rec in frame.itertuples():
        if rec.trigger != "unknown":
            continue
        rule = {}
        if isinstance(rec.trigger_excluded, str) and rec.trigger_excluded.strip():
            rule["exclude"] = [category(c.strip()) for c in rec.trigger_excluded.split(";") if c.strip()]
        if isinstance(rec.trigger_known, str) and rec.trigger_known.strip():
            rule["parts"] = [{"share": count / rec.n, "categories": [category(c) for c in cats]}
                             for count, cats in parse_known(rec.trigger_known)]
        if rule:
            rules[rec.label] = rule
    return {"trigger": rules} if rules else None


def _percent(a) -> np.ndarray:
    return 100 * np.asarray(a).reshape(-1)


def _draws(group, name: str, **sel) -> np.ndarray | None:
    if group is None or name not in group:
        return None
    return group[name].sel(**sel).values.reshape(-1)


#: an elpd difference under this is small whatever its standard error: the sets predict about
#: alike (rule of thumb of Sivula, Magnusson & Vehtari 2020, arXiv:2008.10296, as the loo
#: package's documentation gives it)
SMALL_ELPD_DIFFERENCE = 4.0
#: with fewer studies than this the standard error of a difference over studies is itself unreliable
FEW_FOLDS = 10


def loso_verdict(difference: float, se: float, folds: int) -> str:
    """The verdict on a covariate set whose leave-one-study-out elpd is ``difference`` below the
    best set's (standard error ``se`` over ``folds`` studies): worse only when the difference
    is over 4 and over two standard errors; with fewer than 10 studies the verdict says the
    standard error is itself uncertain."""
    caution = f"; with {folds} studies the SE is itself uncertain" if folds < FEW_FOLDS else ""
    if difference < SMALL_ELPD_DIFFERENCE:
        return f"indistinguishable from the best (difference {difference:.1f}, under 4: the sets predict about alike)"
    if se == 0 or difference < 2 * se:
        return f"indistinguishable from the best (difference {difference:.1f}, under 2 SE{caution})"
    return f"worse than the best (difference {difference:.1f}, over 4 and over 2 SE{caution})"


@register
class Mortality(AnalysisType):
    kind = "mortality"
    spec_keys = keys_read(data={"partitions", "attribution"}, report={"group_by"}, comparison={"covariate_sets"},
                          model={"covariates", "reference", "likelihood", "composition", "coding"})
    group_by = "trigger"
    group_columns = ("trigger", "age_group", "partition")
    families = {"priors": prior_family(PRIOR_SETS), **SHARED}
    robustness_keys = ("mortality_typical", "mortality_own_strata", "odds_ratio", "tau")
    #: the mixture likelihood over latent trigger strata compiles longest: on an empty compile
    #: cache on a 2-core AMD EPYC VM a first ``hlh-meta fit`` of the bundled model took 40.5 s,
    #: and the biomarkers model compiled in 28 s while the mortality model compiled beside it
    compile_weight = 2
    indexed_tables = ("summary",)
    threshold_range = (0.0, 100.0, "mortality in percent")
    figures = (
        FigureSpec("forest", "forest", "Each stratum's deaths/n, observed mortality (exact 95% CI) and the model's "
                   "estimate (95% CrI), as marks and as numbers; strata grouped by trigger, each group with the model's "
                   "mortality among its patients (grey diamond); the mortality of a typical study across the included "
                   "strata (red diamond) and the 95% prediction interval for a new study. † marks counts reconstructed "
                   "from a printed percentage, as the remainder of a partition or by matching a source's lists of "
                   "patients and deaths."),
        FigureSpec("subgroups", "densities", "Posterior distribution of the mortality of a typical study for each "
                   "profile the data inform (extrapolations left out).", select=("mortality_typical",),
                   title="Posterior mortality of a typical study", xlabel="mortality of a typical study (%)"),
        FigureSpec("odds_ratios", "intervals", "Covariate effects as odds ratios of death (posterior median and 95% "
                   "credible interval); the reference level of each is named.", select=("odds_ratio",),
                   title="Covariate effects", xlabel="odds ratio of death (median, 95% CrI; log scale)", log_x=True,
                   reference_line=1.0),
        FigureSpec("shrinkage", "shrinkage", "Each row's estimate as the between-study SD (tau) varies, and tau's "
                   "prior and posterior beneath: where the lines fan out the estimates depend on tau, and where the "
                   "posterior sits on its prior the data do not decide it.", select=("p",)),
        FigureSpec("trace", "trace", "Density and rank plots of the main parameters, one line per chain."),
        FigureSpec("prior_posterior", "prior_posterior", "Prior against posterior for the intercept and the "
                   "between-study SD."),
        FigureSpec("ppc", "ppc", "Posterior predictive check: each observed value against the distribution of "
                   "replicated values."),
    )

    def check_spec(self, spec: Spec) -> None:
        """The base checks, the model's covariates and ``[comparison] covariate_sets``: a list of
        two or more distinct sets of known covariates (before any sampling)."""
        super().check_spec(spec)
        _covariates(spec)
        check_covariate_sets(spec)

    # ---- frame
    def frame(self, ds: Dataset, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
        ds = judged(ds, spec)
        attribution = spec.get("data", "attribution")
        strata = kept_for_dataset(("mortality strata", attribution), ds,
                                  lambda: resolve_mortality(ds, attribution=attribution)).copy()
        studies = ds.studies.set_index("study_id")
        chosen: dict[str, str] = spec.get("data", "partitions")
        for sid in sorted(chosen):
            if sid not in studies.index:
                raise spec.error("data", f"unknown study '{sid}'")
        for sid, part in chosen.items():
            if not ((strata["study_id"] == sid) & (strata["partition"] == part)).any():
                raise spec.error(f"data.partitions.{sid}", f"study has no partition '{part}'")
        usable = list(pd.unique(strata.loc[strata["usable"].astype(bool), "study_id"]))
        left_out = excluded_studies(ds, spec, usable)
        reasons = pd.Series("", index=strata.index, dtype=object)
        for sid, rows in strata.groupby("study_id", sort=False):
            if sid in left_out:
                reasons[rows.index] = left_out[sid]
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
        shares = pd.DataFrame([_shares(rec, studies) for _, rec in used.iterrows()], index=used.index,
                              columns=[_column(c, lv) for c in ("trigger", "age_group") for lv in LEVELS[c]] + [ROUTE_COLUMN])
        used = pd.concat([used, shares], axis=1)
        used["label"] = used["study_id"] + ": " + used["stratum"]
        left = strata[reasons != ""].assign(excluded_because=reasons[reasons != ""])
        return used, left

    def resolve(self, ds: Dataset, spec: Spec) -> Spec:
        """Reference levels not given by the spec: the level with most patients of known composition."""
        given = spec.get("model", "reference")
        missing = [c for c in ("trigger", "age_group") if c not in given and c in _covariates(spec)]
        if not missing:
            return spec
        used, _ = self.frame(ds, spec)
        chosen = {}
        for cov in missing:
            patients = {lv: float((_level_share(used, cov, lv).fillna(0) * used["n"]).sum()) for lv in LEVELS[cov]}
            chosen[cov] = max(LEVELS[cov], key=lambda lv: (patients[lv], -LEVELS[cov].index(lv)))
        return spec.patched({"model": {"reference": {**given, **chosen}}})

    # ---- model inputs
    def inputs(self, ds: Dataset, spec: Spec, used: pd.DataFrame, variant: Variant = PRIMARY,
               covariates: list[str] | None = None, structure: list[str] | None = None,
               profiles: pd.DataFrame | None = None) -> ModelInputs:
        """``structure``: the covariates of the compiled model (default: the spec's); those
        not in ``covariates`` are switched off by the covariate mask, so nested covariate
        sets share one compiled model. ``profiles``: prediction profiles by design column
        (NaN: as in the included strata) instead of the analysis's own (:func:`_profiles`)."""
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
        likelihood = spec.get("model", "likelihood")
        if likelihood not in ("mixture", "linear"):
            raise spec.error("model.likelihood", f"must be 'mixture' or 'linear', got '{likelihood}'")
        coding = spec.get("model", "coding")
        if coding not in CODINGS:
            raise spec.error("model.coding", f"must be one of {', '.join(CODINGS)}, got '{coding}'")
        profiles = _profiles(list(struct)) if profiles is None else profiles
        told = spec.get("model", "composition")
        if told not in ("sources", "flat"):
            raise spec.error("model.composition", f"must be 'sources' or 'flat', got '{told}'")
        composition = _composition(frame, references(spec)) if "trigger" in struct and told == "sources" else None
        inputs = prepare_binomial(
            frame, events="deaths", total="n", study="study_id", covariates=columns, fractions=struct, label="label",
            shared={"iv_fraction": "study_id"} if "iv_fraction" in struct else None, likelihood=likelihood,
            composition=composition,
            covariate_mask=[1.0 if c in on else 0.0 for c in columns], coding=coding,
            weights=(~frame["study_id"].isin(variant.soft_exclude)).astype(float).to_numpy(),
            profiles=profiles[[c for c in profiles.columns if c in columns]], priors=spec.section("priors"))
        inputs.attrs["references"] = json.dumps({c: references(spec)[c] for c in struct})
        return inputs

    # ---- quantities
    def quantities(self, idata: az.InferenceData) -> list[Quantity]:
        post, prior = idata.posterior, getattr(idata, "prior", None)
        cd = idata.constant_data
        keep = cd["weight"].values > 0
        n_rows = cd["total"].values
        row_study = cd["row_study"].values
        studies_in = sorted(set(row_study[keep]))
        values = json.loads(post.attrs.get("profiles", "{}"))
        refs = json.loads(post.attrs.get("references", "{}"))
        columns = list(map(str, post["covariate"].values)) if "covariate" in post.dims else []

        comp = Compositions(cd, refs)
        informing = comp.informing
        observed = idata.observed_data["events"].values if "observed_data" in idata.groups() else None

        def rest_of(group: str) -> str:
            return f"{group}[rest]"

        out = []
        for label in map(str, post["profile"].values) if "profile" in post.dims else []:
            fixed = {c: v for c, v in values.get(label, {}).items() if v is not None and not pd.isna(v)}
            cols = [c for c, v in fixed.items() if v > 0]
            for g in ("trigger", "age_group", "iv_fraction"):
                grp = [c for c in fixed if (c == ROUTE_COLUMN if g == "iv_fraction" else c.startswith(f"{g}["))]
                if grp and all(fixed[c] == 0 for c in grp):
                    cols.append(rest_of(g))                           # the profile holds the group's rest
            s, p, extra = informing(cols) if cols else (len(studies_in), int(n_rows[keep].sum()), False)
            caveats = ()
            if len(cols) == 1 and not extra:
                pairs, share = comp.unobserved(cols[0])
                if share > 0:
                    extra = True
                    caveats = (f"{UNOBSERVED} it pairs {comp.name(cols[0])} with levels no "
                               f"stratum of known composition holds ({', '.join(pairs)}; {100 * share:.0f}% of the "
                               "included patients), so it describes patients no study observed",)
            levels = _levels(fixed, refs)
            for key, var, words in (("mortality_typical", "p_typical", "mortality, typical study (%)"),
                                    ("mortality_new", "p_new", "mortality, new study (predictive, %)")):
                pr = _draws(prior, var, profile=label)
                out.append(Quantity(key=key, outcome="mortality", label=label, description=words, scale="percent",
                                    draws=_percent(post[var].sel(profile=label)),
                                    prior=None if pr is None else _percent(pr), profile=fixed, levels=levels,
                                    thresholds=THRESHOLDS, n_studies=len(studies_in),
                                    source=(var, {"profile": label}), studies_informing=s, patients_informing=p,
                                    extrapolation=extra,
                                    rests_on=_prediction_rests_on(levels) if key == "mortality_new" else (),
                                    caveats=caveats))
            if len(cols) == 1 and comp.pure(cols[0]).any():
                out.append(_own_strata(post, prior, comp, cols[0], label, fixed, levels, observed, len(studies_in)))
        for name in columns if "beta" in post else []:
            group = _group_of(name)
            ref = refs.get(group, "subcutaneous")
            level = "intravenous" if group == "iv_fraction" else name[len(group) + 1:-1]
            e1, e0 = informing([name])[2], informing([rest_of(group)])[2]
            studies_both, patients_both = comp.holding_any([name, rest_of(group)])
            pr = _draws(prior, "beta", covariate=name)
            what = f"{level} vs {ref}" + (" trigger" if group == "trigger" else "")
            between = () if e1 or e0 or comp.within_study(name, rest_of(group)) else (
                "between studies only: no study holds patients of both levels, so the contrast compares studies and "
                "is confounded with whatever else differs between them",)
            out.append(Quantity(key="odds_ratio", outcome="mortality", label=what, description="odds ratio",
                                scale="odds ratio", draws=np.exp(post["beta"].sel(covariate=name).values.reshape(-1)),
                                prior=None if pr is None else np.exp(pr), contrast=Contrast(group, level, ref),
                                n_studies=len(studies_in), source=("beta", {"covariate": name}),
                                studies_informing=studies_both, patients_informing=patients_both,
                                extrapolation=e1 or e0, caveats=between))
        out.append(Quantity(key="tau", outcome="mortality", label="between studies",
                            description="tau (between-study SD, logit scale)", scale="SD (logit scale)",
                            draws=post["tau"].values.reshape(-1), prior=_draws(prior, "tau"), n_studies=len(studies_in),
                            source=("tau", {}), studies_informing=len(studies_in),
                            patients_informing=int(n_rows[keep].sum()), extrapolation=len(studies_in) < 2))
        return out

    # ---- tables
    def tables(self, ds, spec, used, excluded, idata, quantities, progress=False) -> dict[str, pd.DataFrame]:
        var_names = ["mu", "tau"] + (["beta"] if "beta" in idata.posterior else [])
        p = idata.posterior["p"]
        cd = idata.constant_data
        refs = json.loads(idata.posterior.attrs.get("references", "{}"))
        priors = {}
        for g in ("trigger", "age_group", "iv_fraction"):
            if f"composition_prior_{g}" in cd:
                text = pd.Series(cd[f"composition_prior_{g}"].values, index=list(map(str, cd["row"].values)))
                rest = refs.get(g, "subcutaneous")
                text = (text.reindex(used["label"].to_numpy()).fillna("").str.replace(f"{g}[rest]", rest, regex=False)
                        .str.replace(f"{g}[", "", regex=False).str.replace("]", "", regex=False))
                if g == "iv_fraction":
                    text = text.str.replace(ROUTE_COLUMN, "intravenous", regex=False)
                priors[f"{g}_prior"] = text.to_numpy()
        data_used = used.drop(columns=["usable", "reason", "label"]).assign(
            **priors,
            observed_percent=100 * used["deaths"].astype(float) / used["n"].astype(float),
            fitted_percent_mean=100 * p.mean(("chain", "draw")).values,
            fitted_percent_q2_5=100 * p.quantile(0.025, ("chain", "draw")).values,
            fitted_percent_q97_5=100 * p.quantile(0.975, ("chain", "draw")).values,
        )
        studies = ds.studies[ds.studies["study_id"].isin(used["study_id"])]
        keep = [c for c in ("study_id", "citation", "grade", "read", "followup", "design", "n_patients", "age_group", "route", "n_iv",
                            "trigger_mix", "risk_of_bias", "overlaps_with", "covid19") if c in studies.columns]
        tables = {
            "summary": self.summary(idata, quantities, var_names),
            "studies": studies[keep],
            "derived": quantity_table(quantities),
            "data_used": data_used,
            "excluded": excluded.drop(columns=["usable"]),
            "heterogeneity": mortality_heterogeneity(data_used),
        }
        column = spec.get("report", "group_by") or self.group_by
        if column != "none":
            tables["subgroups"] = subgroup_table(p, data_used, column)
        return tables

    def compare(self, ds: Dataset, spec: Spec, used: pd.DataFrame, progress: bool = False,
                primary: az.InferenceData | None = None, step: Callable[[str], None] | None = None,
                refit_k: float = PARETO_K_REFIT) -> pd.DataFrame:
        """Leave-one-study-out cross-validation of the covariate sets under [comparison].

        Each set is fitted to every study (``primary``, the analysis's own fit, serves the
        set that is the model's covariates) and each study's log predictive density given the
        others is estimated by Pareto-smoothed importance sampling, the study's effect integrated
        out of its likelihood where the fit keeps its unconstrained draws
        (:func:`.crossval.integrated_study_loglik`); a study whose Pareto k is
        above ``refit_k`` is refitted without its rows instead (weight 0 on the compiled model
        holding the union of the sets' covariates) and its strata are scored by their log
        predictive density, the study effect drawn from its prior (:mod:`.crossval`).
        The sets' fits and refits use ``[sensitivity] draws`` and ``tune``. Differences from
        the best set carry their standard error over studies and each set's elpd its Monte
        Carlo SE; :func:`loso_verdict` words each.
        """
        sets = [list(s) for s in spec.get("comparison", "covariate_sets")]
        if len(sets) < 2:
            return pd.DataFrame()
        for s in sets:
            _covariates(spec, s, key="comparison.covariate_sets")
        model = list(spec.get("model", "covariates"))
        union = list(dict.fromkeys(model + [c for s in sets for c in s]))
        studies = list(pd.unique(used["study_id"]))
        if len(studies) < 2:
            return pd.DataFrame([{"covariate_set": " + ".join(s) or "intercept only", "elpd_loso": np.nan,
                                  "verdict": "not compared: leave-one-study-out needs at least two studies"}
                                 for s in sets])
        # the sets' fits and refits use the sensitivity variants' draws: each study's density is
        # a mean over draws whose Monte Carlo SE is reported (elpd_mcse)
        settings = self.settings(spec, progress=progress, draws=spec.get("sensitivity", "draws"),
                                 tune=spec.get("sensitivity", "tune"))
        lpd, info = {}, {}
        say = step or (lambda text: None)
        for i, covs in enumerate(sets):
            name = " + ".join(covs) if covs else "intercept only"
            where = f"comparing covariate sets: {i + 1}/{len(sets)} ({name})"
            inputs = self.inputs(ds, spec, used, PRIMARY, covariates=covs, structure=union)
            if primary is not None and set(covs) == set(model) and union == model:
                full = primary
            else:
                say(f"{where}: fitting")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ThinDataWarning)
                    full = fit_model(inputs, settings, extras=False)
            say(f"{where}: importance sampling")
            integrated = integrated_study_loglik(inputs, full)
            approx = psis_lpd(study_loglik(full, "events") if integrated is None else integrated)
            values, errors, refits = [], [], 0
            for sid in studies:
                est, se, k = approx[sid]
                if not k <= refit_k:
                    say(f"{where}: refitting without {sid} (Pareto k {k:.2f})")
                    held = Variant(f"without {sid}", "cross-validation", soft_exclude=frozenset({sid}))
                    with warnings.catch_warnings():      # a fold of one study is expected to leave tau at its prior
                        warnings.simplefilter("ignore", ThinDataWarning)
                        idata = fit_model(self.inputs(ds, spec, used, held, covariates=covs, structure=union), settings,
                                          extras=False)
                    est, se = exact_lpd(idata.heldout_log_likelihood["events"].sum("row").values)
                    refits += 1
                values.append(est)
                errors.append(se)
            lpd[name] = np.array(values)
            info[name] = {"elpd_mcse": float(np.sqrt(np.sum(np.square(errors)))), "refits": refits,
                          "max_pareto_k": max(k for _, _, k in approx.values()),
                          "weights": "study effect integrated" if integrated is not None else "study effect as sampled"}
        best = max(lpd, key=lambda k: lpd[k].sum())
        rows = []
        for name, v in lpd.items():
            weights = info[name].pop("weights")
            diff = lpd[best] - v
            se = float(np.sqrt(len(diff) * np.var(diff, ddof=1))) if name != best else 0.0
            d = float(diff.sum())
            verdict = "best" if name == best else loso_verdict(d, se, len(studies))
            rows.append({"covariate_set": name, "elpd_loso": float(v.sum()), "elpd_difference": -d,
                         "difference_se": se, "studies": len(studies), **info[name],
                         "method": f"importance sampling ({weights}); {info[name]['refits']} of "
                                   f"{len(studies)} studies refitted (Pareto k > {refit_k:g})", "verdict": verdict})
        return pd.DataFrame(rows)

    # ---- prediction
    def predict(self, ds: Dataset, spec: Spec, idata: az.InferenceData, profiles: pd.DataFrame) -> pd.DataFrame:
        """Typical-study and new-study mortality of new profiles from the fit's stored draws
        (:mod:`.prediction`)."""
        from .prediction import design_profiles, predict_profiles

        covs = _covariates(spec)
        design = design_profiles(profiles, covs, LEVELS, list(_profiles(covs).columns), _column, ROUTE_COLUMN)
        return predict_profiles(self, ds, spec, idata, design)

    # ---- report
    def statements(self, quantities: list[Quantity]) -> list[tuple[Quantity, str]]:
        by_id = {q.id: q for q in quantities}
        out = []
        for q in (q for q in quantities if q.key == "mortality_typical"):
            s = q.summary()
            own = by_id.get(q.id.of_kind("mortality_own_strata"))
            see = ""
            if own is not None:
                o = own.summary()
                see = (f" {_cap(own.label)}: the model gives {_fmt(o['median'])}% (95% CrI {_fmt(o['q2.5'])}–"
                       f"{_fmt(o['q97.5'])}%).")
            pairs = [c for c in q.caveats if c.startswith(UNOBSERVED)]
            if q.extrapolation and pairs:
                out.append((q, f"{_cap(q.label)}: {pairs[0]}; its mortality ({_fmt(s['median'])}%, 95% CrI "
                               f"{_fmt(s['q2.5'])}–{_fmt(s['q97.5'])}%) is an extrapolation, not a finding.{see}"))
                continue
            if q.extrapolation:
                out.append((q, f"{_cap(q.label)}: no stratum of known composition holds this level, so its mortality "
                               f"({_fmt(s['median'])}%, 95% CrI {_fmt(s['q2.5'])}–{_fmt(s['q97.5'])}%) is prior and "
                               "extrapolation, not a finding."))
                continue
            size = (f"mortality of a typical study {_fmt(s['median'])}% (95% CrI {_fmt(s['q2.5'])}–"
                    f"{_fmt(s['q97.5'])}%); {_prediction(by_id[q.id.of_kind('mortality_new')])}")
            below = f"P(mortality < 20%) {_prob(s['P(<20%)'])}"
            body = (f"{below}; {_conflict_words(q)}: {size}" if q.conflict else f"{size}; {below}")
            note = " These are uncontrolled series without a comparator: mortality on anakinra, not an effect of it." \
                if q.id == POPULATION_ID else ""
            out.append((q, f"{_cap(q.label)}: {body}; {_informed(q)}{_difference_caveat(q, quantities)}.{note}"))
        for q in (q for q in quantities if q.key == "mortality_own_strata"):
            s = q.summary()
            size = (f"the model's mortality among these strata's patients {_fmt(s['median'])}% (95% CrI "
                    f"{_fmt(s['q2.5'])}–{_fmt(s['q97.5'])}%)")
            below = f"P(mortality < 20%) {_prob(s['P(<20%)'])}"
            body = f"{below}; {_conflict_words(q)}: {size}" if q.conflict else size
            out.append((q, f"{_cap(q.label)}: {body}; {_informed(q)}."))
        for q in (q for q in quantities if q.key == "odds_ratio"):
            s = q.summary()
            size = f"{s['median']:.2f} (95% CrI {s['q2.5']:.2f}–{s['q97.5']:.2f})"
            above = float((q.draws > 1).mean())
            text = (f"Odds ratio of death, {q.label}: P(OR > 1) {_prob(above)}, P(OR < 1) {_prob(1 - above)}; "
                    f"{_conflict_words(q)}: {size}" if q.conflict else
                    f"Odds ratio of death, {q.label}: {size}; P(OR < 1) = {float((q.draws < 1).mean()):.2f}")
            said = "".join(f"; {c}" for c in q.caveats if not c.startswith(CONFLICT))
            out.append((q, text + ("; one of the two levels has no stratum of known composition, so this is prior "
                                   "and extrapolation." if q.extrapolation else f"; {_informed(q)}{said}.")))
        for q in (q for q in quantities if q.key == "tau"):
            s = q.summary()
            out.append((q, f"Between-study SD (logit scale): {s['median']:.2f} (95% CrI {s['q2.5']:.2f}–"
                           f"{s['q97.5']:.2f}); {_informed(q)}"
                           + (" (one study cannot inform it)." if q.extrapolation else ".")))
        return out

    def methods(self, idata: az.InferenceData) -> str:
        form = idata.posterior.attrs.get("likelihood", "linear")
        mix = ("a stratum that mixes triggers, age groups or routes has the mixture likelihood: its probability of "
               "death is the share-weighted mean of the probabilities of its categories (the groups' shares taken as "
               "independent within a stratum)" if form == "mixture" else
               "a stratum that mixes triggers, age groups or routes enters with its shares inside the linear predictor")
        refs = json.loads(idata.posterior.attrs.get("references", "{}"))
        ref = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in refs.items())
        return ("Deaths in each stratum follow a binomial distribution; the log-odds of death is an intercept (mu) plus "
                "covariate effects (beta) plus a study effect drawn from Normal(0, tau) (non-centred). Each study enters "
                f"through one partition of its patients, and sources that may share patients are not pooled together, "
                f"so no patient is counted twice; {mix}. Shares a source does not report are unknowns with a flat "
                "Dirichlet prior over the categories the source allows. Profiles fix one covariate and take the others "
                "as in the included strata; the headline averages over the included strata."
                + (" The levels of each covariate are exchangeable a priori: each level's effect is drawn around the "
                   "mean of the levels (a sum-to-zero Normal prior under which a contrast of two levels has the beta "
                   "prior, and mu's prior is that of the mean of the levels' log-odds), so no level's estimate depends "
                   "on which level is the reference." if idata.posterior.attrs.get("coding") == "exchangeable" and ref
                   else " Covariates are treatment-coded: the reference levels' log-odds is mu with mu's prior and "
                        "each other level has its own beta prior, so the estimates depend on the reference."
                   if ref else "")
                + (f" Reference levels ({ref}) are the levels most patients of known composition have; they choose "
                   "which odds ratios are printed." if ref else ""))

    def findings_rows(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> list[dict]:
        rows = binomial_findings(tables, quantities, "mortality", POPULATION_ID, POPULATION_ID.of_kind("mortality_new"))
        for row in rows:
            row["context"] = headline_context(tables)
        return rows

    def forest(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> dict[str, pd.DataFrame]:
        used = tables["data_used"]
        rows = count_rows(used, tables.get("studies"), "stratum")
        groups = pd.DataFrame()
        if "subgroups" in tables:
            sub = tables["subgroups"]
            column = str(sub["group_by"].iloc[0]) if len(sub) else ""
            rows["group"] = used[column].astype(str).map(lambda v: group_name(column, v)).to_numpy() if column in used else ""
            groups = pd.DataFrame({"group": [group_name(column, str(g)) for g in sub["group"]],
                                   "label": "model: these strata's patients", "estimate": sub["median"],
                                   "lo": sub["q2.5"], "hi": sub["q97.5"]})
        by_id = {q.id: q for q in quantities}
        ref = by_id.get(POPULATION_ID)
        summaries = []
        if ref is not None:
            new = by_id[ref.id.of_kind("mortality_new")]
            for q, what, kind in ((ref, "pooled: typical study", "pooled"), (new, "prediction: new study", "prediction")):
                s = q.summary()
                summaries.append({"label": what, "estimate": s["median"], "lo": s["q2.5"], "hi": s["q97.5"], "kind": kind,
                                  "note": q.label})
        return {"rows": rows, "groups": groups, "summaries": pd.DataFrame(summaries), "xlabel": "mortality (%)",
                "observed_name": "observed (exact 95% CI)", "fitted_name": "model estimate (95% CrI)",
                "title": "pooled over the included strata" if ref is not None else "", "scale": "percent",
                "counts_header": "deaths/n"}


def _counts(used: pd.DataFrame, column: str, levels) -> str:
    n = used.groupby(used[column].astype(str))["n"].sum()
    parts = [f"{lv.replace('_', ' ')} {int(n[lv])}" for lv in levels if lv in n.index]
    rest = int(n[[v for v in n.index if v not in levels]].sum())
    return ", ".join(parts + ([f"unknown or mixed {rest}"] if rest else []))


def headline_context(tables: Mapping[str, pd.DataFrame]) -> str:
    """What the pooled mortality is and is not, in words: uncontrolled series without a
    comparator (mortality on anakinra, not an effect of it), the case mix behind it, the
    study holding most of its patients, and the follow-up of deaths the sources state."""
    used = tables["data_used"]
    total = int(used["n"].sum())
    per_study = used.groupby("study_id", sort=False)["n"].sum().sort_values(ascending=False)
    top = (f"; {per_study.index[0]} holds {per_study.iloc[0] / total:.0%} of them" if len(per_study) > 1 else "")
    text = (f"uncontrolled series without a comparator: the figure is mortality on anakinra, not an effect of "
            f"anakinra; its {total} patients by trigger: {_counts(used, 'trigger', TRIGGERS)}; by age group: "
            f"{_counts(used, 'age_group', AGE_GROUPS)}{top}")
    studies = tables.get("studies")
    if studies is not None and "followup" in studies:
        ids = list(per_study.index)
        follow = studies.set_index("study_id").reindex(ids)["followup"].astype("string").fillna("unknown")
        stated = {s: f for s, f in follow.items() if f.strip().lower() not in ("", "unknown")}
        text += (f"; follow-up of deaths not stated in {len(ids) - len(stated)} of {len(ids)} studies"
                 + (f" ({'; '.join(f'{s}: {f}' for s, f in stated.items())})" if stated else ""))
    return text


OWN_STRATA = "their own strata"


def _own_strata(post, prior, comp: Compositions, category: str, label: str, fixed: dict, levels: dict, observed,
                n_studies: int) -> Quantity:
    """The model's mortality among the patients of a level's own strata (every patient of
    known composition at that level): the patient-weighted mean of those strata's fitted
    probabilities, per draw. Patients who exist, beside the standardised profile."""
    rows = comp.pure(category)
    w = comp.n * rows / comp.n[rows].sum()

    def mean(group):
        if group is None or "p" not in group:
            return None
        return 100 * (group["p"].values.reshape(-1, rows.size) * w[None, :]).sum(axis=1)

    counts = f"{int(observed[rows].sum())}/{int(comp.n[rows].sum())}" if observed is not None else ""
    stem = label.split(" (", 1)[0]
    return Quantity(key="mortality_own_strata", outcome="mortality",
                    label=f"{stem}, {OWN_STRATA}" + (f" (observed {counts})" if counts else ""),   # no colon: sentences put one after it
                    description="mortality among the level's own strata (%)", scale="percent", draws=mean(post),
                    prior=mean(prior), profile=fixed, levels=levels, thresholds=THRESHOLDS, n_studies=n_studies,
                    studies_informing=len(set(comp.study[rows])), patients_informing=int(comp.n[rows].sum()))


def _fmt(x, digits: int = 1) -> str:
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _group_of(column: str) -> str:
    """The covariate a design column belongs to (``trigger[malignancy]`` -> ``trigger``)."""
    return "iv_fraction" if column == ROUTE_COLUMN else column.split("[", 1)[0]


def _difference_caveat(q: Quantity, quantities: list[Quantity]) -> str:
    """For a profile that fixes one covariate: a caveat when the odds ratios that set it
    apart from the other levels of that covariate are not supported by the data (the
    profile's own interval can be data-driven while its difference from the others is not)."""
    own = {c for c, v in q.profile.items() if v > 0}          # the profile's level (none: the reference level)
    groups = {_group_of(c) for c in q.profile}

    def sets_apart(column: str) -> bool:     # a non-reference level: its own odds ratio; the reference: all of them
        return _group_of(column) in groups and (column in own or not own & {c for c in q.profile
                                                                               if _group_of(c) == _group_of(column)})

    loose = [r for r in quantities if r.key == "odds_ratio" and r.contrast is not None
             and sets_apart(_column(r.contrast.covariate, r.contrast.level))
             and r.label_support != "data"]
    if not loose:
        return ""
    return ("; the odds ratios that set it apart from the other levels are not data-supported: "
            + ", ".join(f"odds ratio {r.label} is {r.label_support or 'prior'}" for r in loose))


def _prediction_rests_on(levels: Mapping[str, str]) -> tuple[QuantityId, ...]:
    """What a new study's mortality for a profile (its covariate levels) is built from: the
    profile's typical-study mortality and the between-study SD."""
    return (QuantityId.of("mortality", "mortality_typical", levels), QuantityId("mortality", "tau"))


def _levels(fixed: Mapping[str, float], refs: Mapping[str, str]) -> dict[str, str]:
    """The covariate levels a profile fixes (covariate -> level) from its design values: a
    covariate whose columns are all 0 is at its reference level; the route is ``intravenous``
    (1), ``subcutaneous`` (0) or a share of IV patients between (e.g. ``0.5``)."""
    out: dict[str, str] = {}
    for column, value in fixed.items():
        group = _group_of(column)
        if group == "iv_fraction":
            out[group] = "intravenous" if value == 1 else "subcutaneous" if value == 0 else f"{float(value):.15g}"
        elif value == 1:
            out[group] = column[len(group) + 1:-1]
        elif value == 0:
            out.setdefault(group, refs.get(group, "reference"))
        else:
            raise ValueError(f"profile value {value!r} of {column}: a categorical level is 0 or 1")
    return out


def _prediction(q: Quantity) -> str:
    """A new study's range, with the reason when it is less supported than the typical study's."""
    s, note = q.summary(), rests_note(q, {"mortality_typical": "the typical study's mortality"})
    return f"a new study could see {_fmt(s['q2.5'])}–{_fmt(s['q97.5'])}%" + (f" ({note})" if note else "")


def _prob(p: float) -> str:
    """A posterior probability to two decimals, without rounding a tail to a certainty."""
    return "> 0.99" if p > 0.995 else "< 0.01" if p < 0.005 else f"= {p:.2f}"


def _conflict_words(q: Quantity) -> str:
    """For a quantity in prior-data conflict: its size is the prior's as much as the data's."""
    sup = q.support
    return (f"prior and data disagree on the size (prior sensitivity {sup['prior_sensitivity']:.2f}, likelihood "
            f"sensitivity {sup['likelihood_sensitivity']:.2f}), so the size depends on the prior")


def _informed(q: Quantity) -> str:
    k, n = q.studies_informing or 0, q.patients_informing or 0
    return f"{n} patients in {k} stud{'y' if k == 1 else 'ies'} inform it"


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


def _coding(analysis, ds, spec, used) -> list[Variant]:
    other = "treatment" if spec.get("model", "coding") == "exchangeable" else "exchangeable"
    return [Variant(f"{other} coding of covariate levels", "coding", patch={"model": {"coding": other}})]


def _composition_priors(analysis, ds, spec, used) -> list[Variant]:
    """Flat priors for every unknown trigger mix (only where a source says something of one)."""
    if spec.get("model", "composition") == "flat" or "trigger" not in _covariates(spec):
        return []
    told = used[(used["trigger"] == "unknown") & (used["trigger_excluded"].notna() | used["trigger_known"].notna())]
    if told.empty:
        return []
    return [Variant("flat composition priors (what the sources say of unknown trigger mixes ignored)", "composition",
                    patch={"model": {"composition": "flat"}})]


def _likelihood(analysis, ds, spec, used) -> list[Variant]:
    other = "linear" if spec.get("model", "likelihood") == "mixture" else "mixture"
    return [Variant(f"{other} likelihood for mixed strata", "likelihood", patch={"model": {"likelihood": other}})]


Mortality.families = {**Mortality.families, "attribution": _attribution, "count_alternatives": _count_alternatives,
                      "partition": _partition, "likelihood": _likelihood, "coding": _coding,
                      "composition": _composition_priors}
