"""The anakinra biomarker analysis: log ratios of CRP, ferritin, fibrinogen -> (multivariate) normal model.

A biomarker that one study reports is that study's estimate (its true change under mu's
prior), labelled ``one study``, not a pool widened by tau's prior; its new-study prediction
rests on tau's prior and is not given as a finding. The study effects of the biomarkers are
correlated (LKJ) only where two or more studies report one same pair (``[model]
multivariate``), and the estimates of one study's biomarkers are correlated in the
likelihood by ``[data] within_study_correlation``. Each biomarker's direction of improvement
is :data:`hlh_meta.effects.biomarkers.IMPROVEMENT`: a fall of fibrinogen is not called a benefit.
"""

from __future__ import annotations

from dataclasses import replace

import json
from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd

from ..data import Dataset
from ..effects.biomarkers import improvement, meaning, resolve_biomarkers
from ..models.engine import ModelInputs
from ..models.normal import MULTIVARIATE, prepare_normal
from ..models.priors import NORMAL_DEFAULTS, describe
from ..spec import Spec
from .base import PRIMARY, AnalysisType, FigureSpec, Quantity, Variant, correlation_ends, keys_read, quantity_table
from .quantity_id import Contrast, QuantityId
from .support import rests_note
from .families import SHARED, prior_family
from .heterogeneity import biomarker_heterogeneity
from .judgements import judged
from .registry import register
from .selection import excluded_studies

PRIOR_SETS = [("tau", {"dist": "HalfNormal", "sigma": 0.25}), ("tau", {"dist": "HalfNormal", "sigma": 1.0}),
              ("tau", {"dist": "HalfCauchy", "beta": 0.5}), ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 2.0}),
              ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 0.5})]
#: within-study correlations of one study's biomarkers compared by the ``within_correlation`` family
WITHIN_CORRELATIONS = (0.0, 0.5)
NAMES = {"crp": "CRP"}


def display(biomarker: str) -> str:
    return NAMES.get(biomarker, biomarker.capitalize())


def _reduction(log_ratio: np.ndarray) -> np.ndarray:
    """Percent reduction of a log ratio; -inf where the ratio is beyond floating point (a
    predictive draw of a heavy-tailed tau prior's variant), without numpy's overflow warning."""
    with np.errstate(over="ignore"):
        return 100 * (1 - np.exp(log_ratio))


def _change(outcome: str, reduction: tuple[float, float, float], interval: str = "95% CrI") -> str:
    """A reduction (median, lower, upper in %) in words: a reduction where a fall is improvement,
    otherwise the percent change (a fall of fibrinogen is not worded as a benefit)."""
    mid, lo, hi = reduction
    if improvement(outcome) == "fall":
        return f"reduction {mid:.1f}% ({interval} {lo:.1f} to {hi:.1f}%)"
    return f"change {-mid:+.1f}% ({interval} {-hi:+.1f} to {-lo:+.1f}%)"


def _one_study(idata: az.InferenceData) -> dict[str, str]:
    """Per outcome that one study (with weight 1) informs: what its estimate is, in words,
    with the study's own estimate and 95% CI from its log ratio and standard error."""
    keep, outcomes, sizes = _rows(idata)
    cd = idata.constant_data
    studies, y, se = cd["row_study"].values, idata.observed_data["estimate"].values, cd["std_err"].values
    mu = describe(json.loads(idata.posterior.attrs.get("priors", "{}")).get("mu", NORMAL_DEFAULTS["mu"]))
    out = {}
    for o in pd.unique(outcomes):
        mine = np.flatnonzero(keep & (outcomes == o))
        if len(set(studies[mine])) != 1:
            continue
        i = mine[0]
        own = _reduction(np.array([y[i], y[i] + 1.96 * se[i], y[i] - 1.96 * se[i]]))
        out[str(o)] = (f"one study ({studies[i]}, {int(sizes[i])} patients), not a pooled estimate: that study's true "
                       f"change under mu's prior {mu}, against the study's own {_change(str(o), tuple(own), '95% CI')}")
    return out


def _rows(idata: az.InferenceData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of the fit: whether it has weight 1, its outcome and its patients."""
    cd = idata.constant_data
    keep = cd["weight"].values > 0
    outcomes = cd["row_outcome"].values if "row_outcome" in cd else np.full(keep.size, "")
    sizes = cd["row_n"].values if "row_n" in cd else np.zeros(keep.size)
    return keep, outcomes, sizes


def _imputed(idata: az.InferenceData) -> dict[str, str]:
    """Per outcome, a caveat naming the studies and patients (with weight 1) whose standard
    error rests on an SD imputed from other studies' coefficient of variation."""
    if "row_dispersion" not in idata.constant_data:
        return {}
    keep, outcomes, sizes = _rows(idata)
    imputed = idata.constant_data["row_dispersion"].values == "imputed"
    out = {}
    for o in pd.unique(outcomes):
        mine = keep & (outcomes == o)
        k, n = int((mine & imputed).sum()), int(sizes[mine & imputed].sum())
        if k:
            out[str(o)] = (f"the standard error of {k} of {int(mine.sum())} stud{'y' if mine.sum() == 1 else 'ies'} "
                           f"({n} of {int(sizes[mine].sum())} patients) rests on an SD imputed from other studies' "
                           "coefficient of variation")
    return out


def _informing(idata: az.InferenceData) -> dict[str, tuple[int, int]]:
    """Studies and patients with weight 1, per outcome."""
    keep, outcomes, sizes = _rows(idata)
    studies = idata.constant_data["row_study"].values
    return {str(o): (len(set(studies[keep & (outcomes == o)])), int(sizes[keep & (outcomes == o)].sum()))
            for o in pd.unique(outcomes)}


@register
class Biomarkers(AnalysisType):
    kind = "biomarkers"
    spec_keys = keys_read(data={"correlation", "correlation_range", "missing_dispersion", "within_study_correlation"},
                          model={"covariates", "reference", "multivariate"})
    prior_defaults = NORMAL_DEFAULTS
    families = {"priors": prior_family(PRIOR_SETS), **SHARED}
    robustness_keys = ("reduction_pooled", "tau")
    figures = (
        FigureSpec("biomarker_forest", "forest", "Each study's change from baseline (95% CI, from its log ratio of "
                   "means) and the model's estimate, as marks and as numbers, with the patients behind each; rows grouped "
                   "by biomarker with the pooled change (grey diamond), and the 95% prediction interval for a new study "
                   "of each biomarker; a biomarker that one study reports has that study's estimate ('one study') "
                   "and no prediction interval. † marks a study whose dispersion was imputed."),
        FigureSpec("reductions", "densities", "Posterior distribution of the percent reduction of each biomarker: "
                   "pooled where two or more studies report it, that study's own where one does (a negative reduction "
                   "is an increase; a fall of fibrinogen is not a benefit).",
                   select=("reduction_pooled",), title="Percent reduction per biomarker",
                   xlabel="percent reduction (%)"),
        FigureSpec("shrinkage", "shrinkage", "Each row's estimate as the between-study SD (tau) varies, and tau's "
                   "prior and posterior beneath: where the lines fan out the estimates depend on tau, and where the "
                   "posterior sits on its prior the data do not decide it.", select=("theta",)),
        FigureSpec("trace", "trace", "Density and rank plots of the main parameters, one line per chain."),
        FigureSpec("prior_posterior", "prior_posterior", "Prior against posterior for the intercept and the "
                   "between-study SD."),
        FigureSpec("ppc", "ppc", "Posterior predictive check: each observed value against the distribution of "
                   "replicated values."),
    )

    threshold_range = (None, 100.0, "a percent reduction (100 would be a fall to zero; negative: an increase)")

    def check_spec(self, spec: Spec) -> None:
        super().check_spec(spec)
        if spec.get("model", "multivariate") not in MULTIVARIATE:
            raise spec.error("model.multivariate", f"choose from {', '.join(MULTIVARIATE)}, "
                                                   f"got {spec.get('model', 'multivariate')!r}")
        rho = spec.get("data", "within_study_correlation")
        if not -1 < rho < 1:
            raise spec.error("data.within_study_correlation", f"must lie strictly between -1 and 1, got {rho:g}")

    def frame(self, ds: Dataset, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
        ds = judged(ds, spec)
        rows = resolve_biomarkers(ds, r=spec.get("data", "correlation"),
                                  missing_dispersion=spec.get("data", "missing_dispersion"))
        reason = rows["reason"].where(~rows["usable"].astype(bool), "")
        left_out = excluded_studies(ds, spec, list(pd.unique(rows.loc[reason == "", "study_id"])))
        reason = reason.mask((reason == "") & rows["study_id"].isin(left_out), rows["study_id"].map(left_out))
        used = rows[reason == ""].copy()
        used["label"] = used["study_id"] + ": " + used["biomarker"]
        left = rows[reason != ""].assign(excluded_because=reason[reason != ""])
        return used, left

    def inputs(self, ds: Dataset, spec: Spec, used: pd.DataFrame, variant: Variant = PRIMARY,
               covariates: list[str] | None = None) -> ModelInputs:
        if used.empty:
            raise spec.error("data", "no biomarker row is usable")
        frame = used.reset_index(drop=True)
        inputs = prepare_normal(frame, estimate="yi", std_err="sei", study="study_id",
                                covariates=spec.get("model", "covariates") if covariates is None else covariates,
                                outcome="biomarker", label="label", priors=spec.section("priors"),
                                reference=spec.get("model", "reference") or None,
                                profiles=None if spec.get("model", "covariates") else pd.DataFrame(index=["pooled"]),
                                weights=(~frame["study_id"].isin(variant.soft_exclude)).astype(float).to_numpy(),
                                size="n", multivariate=spec.get("model", "multivariate"),
                                within_correlation=spec.get("data", "within_study_correlation"))
        inputs.row_info["row_dispersion"] = frame["dispersion"].astype(str).to_numpy()    # reported, derived, imputed
        return inputs

    def quantities(self, idata: az.InferenceData) -> list[Quantity]:
        post, prior = idata.posterior, getattr(idata, "prior", None)
        counts, imputed, single = _informing(idata), _imputed(idata), _one_study(idata)
        multi = "outcome" in post.dims
        names = [str(o) for o in post["outcome"].values] if multi else list(counts)
        out = []

        def add(key, name, words, scale, var, fn, label=None, informing=None, contrast=None, rests_on=(), caveats=(),
                basis="", **sel):
            pr = prior[var].sel(**sel).values.reshape(-1) if prior is not None and var in prior else None
            k, n = informing or counts.get(name, (0, 0))
            caveats = ((imputed[name],) if name in imputed and key.startswith("reduction") else ()) + caveats
            out.append(Quantity(key=key, outcome=name, label=label or name, description=words, scale=scale,
                                draws=fn(post[var].sel(**sel).values.reshape(-1)), prior=None if pr is None else fn(pr),
                                contrast=contrast, n_studies=k, source=(var, sel), studies_informing=k,
                                patients_informing=n, extrapolation=key == "tau" and k < 2, rests_on=rests_on,
                                caveats=caveats, basis=basis))

        if "theta_typical" in post:
            for name in names:
                sel = {"outcome": name} if multi else {}
                sel["profile"] = str(post["profile"].values[0])
                one = name in single
                k = counts.get(name, (0, 0))[0]
                add("reduction_pooled", name, "percent reduction in one study (not a pooled estimate)" if one
                    else "pooled percent reduction", "percent reduction", "theta_typical", _reduction,
                    basis=single[name] if one else f"pooled ({k} stud{'y' if k == 1 else 'ies'})", **sel)
                add("reduction_new", name, "predictive percent reduction", "percent reduction", "theta_new",
                    _reduction, rests_on=(QuantityId(name, "reduction_pooled"), QuantityId(name, "tau")),
                    caveats=("one study: a new study's spread is tau's prior alone, not an estimate",) if one else (),
                    basis="tau's prior (one study)" if one else f"pooled ({k} stud{'y' if k == 1 else 'ies'}) and tau",
                    **sel)
        for name in names:
            add("tau", name, "tau (between-study SD, log ratio)", "SD (log ratio)", "tau", lambda a: a,
                **({"outcome": name} if multi else {}))
        if "Omega" in post and multi:
            cd = idata.constant_data
            keep = cd["weight"].values > 0
            for i in range(len(names)):
                for j in range(i + 1, len(names)):
                    pair = f"{names[i]}~{names[j]}"
                    both = (set(cd["row_study"].values[keep & (cd["row_outcome"].values == names[i])])
                            & set(cd["row_study"].values[keep & (cd["row_outcome"].values == names[j])]))
                    add("correlation", pair, "between-biomarker correlation", "correlation", "Omega", lambda a: a,
                        informing=(len(both), 0), outcome=names[i], outcome_bis=names[j])
        if "beta" in post:
            for cov in map(str, post["covariate"].values):
                for name in names:
                    add("ratio_of_means", name, f"ratio of means per unit {cov}", "ratio of means", "beta", np.exp,
                        label=f"{name}: {cov}", contrast=Contrast(cov, "1", "0"),
                        **{"covariate": cov, **({"outcome": name} if multi else {})})
        return out

    def tables(self, ds, spec, used, excluded, idata, quantities, progress=False) -> dict[str, pd.DataFrame]:
        post = idata.posterior
        var_names = ["mu", "tau"] + (["beta"] if "beta" in post else []) + (["Omega"] if "Omega" in post else [])
        theta = post["theta"]
        data_used = used.drop(columns=["usable", "reason", "label"]).assign(
            shrunken_percent_change=100 * (np.exp(theta.mean(("chain", "draw")).values) - 1),
            shrunken_q2_5=100 * (np.exp(theta.quantile(0.025, ("chain", "draw")).values) - 1),
            shrunken_q97_5=100 * (np.exp(theta.quantile(0.975, ("chain", "draw")).values) - 1))
        studies = ds.studies[ds.studies["study_id"].isin(used["study_id"])]
        return {
            "summary": self.summary(idata, quantities, var_names),
            "derived": quantity_table(quantities),
            "studies": studies[[c for c in ("study_id", "citation", "grade", "read", "design", "n_patients", "age_group", "route",
                                            "risk_of_bias", "overlaps_with", "covid19") if c in studies.columns]],
            "data_used": data_used,
            "excluded": excluded.drop(columns=["usable"]),
            "heterogeneity": biomarker_heterogeneity(data_used),
        }

    def statements(self, quantities: list[Quantity]) -> list[tuple[Quantity, str]]:
        new = {q.outcome: q for q in quantities if q.key == "reduction_new"}
        out = []
        for q in (q for q in quantities if q.key == "reduction_pooled"):
            s, pn, k = q.summary(), new[q.outcome].summary(), q.studies_informing or 0
            name, said = display(q.outcome), _change(q.outcome, (s["median"], s["q2.5"], s["q97.5"]))
            if k == 1:
                text = (f"{name}: {said} from {q.basis}. No range for a new study is given: with one study the "
                        "between-study spread is tau's prior alone")
            else:
                note = rests_note(new[q.outcome], {"reduction_pooled": "the pooled reduction"})
                fall = improvement(q.outcome) == "fall"
                lo, hi = (pn["q2.5"], pn["q97.5"]) if fall else (-pn["q97.5"], -pn["q2.5"])
                notes = (["a negative reduction is an increase"] if fall else []) + ([note] if note else [])
                text = (f"{name}: pooled {said}, from {k} studies ({q.patients_informing} patients); in a new study "
                        f"the {'reduction' if fall else 'change'} could lie between {lo:.1f}% and {hi:.1f}%"
                        + (f" ({'; '.join(notes)})" if notes else ""))
            sense = meaning(q.outcome, NAMES.get(q.outcome, q.outcome))
            out.append((q, text + "".join(f"; {c}" for c in q.caveats) + f". {sense}."))
        for q in (q for q in quantities if q.key == "tau"):
            s = q.summary()
            out.append((q, f"{display(q.outcome)}: between-study SD (log ratio) {s['median']:.2f} (95% CrI "
                           f"{s['q2.5']:.2f}–{s['q97.5']:.2f})"
                           + ("; one study cannot inform it (it only spreads a new study's prediction)."
                              if q.extrapolation else ".")))
        for q in (q for q in quantities if q.key == "correlation"):
            s = q.summary()
            out.append((q, f"Correlation of the study effects on {q.label.replace('~', ' and ')}: {s['median']:.2f} "
                           f"(95% CrI {s['q2.5']:.2f} to {s['q97.5']:.2f}), {q.studies_informing} "
                           f"stud{'y reports' if q.studies_informing == 1 else 'ies report'} both."))
        return out

    def methods(self, idata: az.InferenceData) -> str:
        attrs = idata.posterior.attrs
        if "Omega" in idata.posterior and attrs.get("between_outcomes", "").startswith("correlated"):
            corr = (" and are correlated across biomarkers through an LKJ(2) prior "
                    f"({attrs.get('between_outcomes_reason', '')})")
        elif "outcome" in idata.posterior.dims:
            why = attrs.get("between_outcomes_reason", "")
            corr = ("; each biomarker has its own model (study effects independent across biomarkers"
                    f"{': ' + why if why else ''})")
        else:
            corr = ""
        rho = float(attrs.get("within_correlation", 0) or 0)
        within = (f" The estimates of two biomarkers of one study are correlated {rho:g} in the likelihood (a "
                  "block-diagonal within-study covariance)." if rho else
                  " The estimates of one study's biomarkers are taken as uncorrelated within the study "
                  "([data] within_study_correlation = 0).")
        single = ", ".join(NAMES.get(o, o) for o in _one_study(idata))
        one = (f" A biomarker that one study reports ({single}) has no between-study term: its estimate is that "
               "study's true change under mu's prior, not a pooled estimate, and a new study's prediction for it "
               "would rest on tau's prior alone." if single else "")
        return ("Each study's log ratio of means (follow-up / baseline) follows a normal distribution around its true "
                "value with the derived standard error; true values vary around a pooled mean (mu) per biomarker with "
                f"between-study SD tau{corr}.{within}{one} Percent reduction = 100 (1 − exp(log ratio)); a fall of "
                "CRP or ferritin is improvement, while a fall of fibrinogen is not counted as benefit (it is also "
                "consumed in HLH).")

    def findings_rows(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> list[dict]:
        used = tables["data_used"]
        new = {q.outcome: q for q in quantities if q.key == "reduction_new"}
        tau = {q.outcome: q for q in quantities if q.key == "tau"}
        rows = []
        for q in (q for q in quantities if q.key == "reduction_pooled"):
            mine = used[used["biomarker"] == q.outcome]
            one = q.studies_informing == 1              # one study's estimate: no new-study range, labelled
            extra = {}
            if improvement(q.outcome) is None:          # no direction of benefit: a change, judged without a threshold
                q = replace(q, draws=-np.asarray(q.draws), prior=None if q.prior is None else -np.asarray(q.prior),
                            description="change of the mean (%)", scale="percent change")
                extra["threshold"] = ("no direction of benefit is declared for this marker, so no reduction "
                                      "threshold applies")
            rows.append({"outcome": display(q.outcome) + (" (one study)" if one else ""), "pooled": q, **extra,
                         "new": None if one else new.get(q.outcome), "tau": tau.get(q.outcome),
                         "patients": mine.groupby("study_id", sort=False)["n"].sum().astype(float).to_dict(),
                         "effects": (mine["yi"].to_numpy(float), mine["sei"].to_numpy(float))})
        return rows

    def forest(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> dict[str, pd.DataFrame]:
        used = tables["data_used"]
        studies = tables.get("studies")
        grade = studies.set_index("study_id")["grade"] if studies is not None and "grade" in studies else pd.Series(dtype=object)
        yi, se = used["yi"].to_numpy(float), used["sei"].to_numpy(float)
        pct = lambda v: 100 * (np.exp(v) - 1)  # noqa: E731 - percent change from a log ratio
        rows = pd.DataFrame({
            "label": [f"{r.study_id}: {display(r.biomarker)}" for r in used.itertuples()],
            "study_id": used["study_id"].to_numpy(),
            "grade": [str(grade.get(sid, "")).replace("_", " ") for sid in used["study_id"]],
            "counts": [f"{int(r.n)}" for r in used.itertuples()],
            "reconstructed": (used["dispersion"] == "imputed").to_numpy(),
            "observed": pct(yi), "observed_lo": pct(yi - 1.96 * se), "observed_hi": pct(yi + 1.96 * se),
            "fitted": used["shrunken_percent_change"].to_numpy(), "fitted_lo": used["shrunken_q2_5"].to_numpy(),
            "fitted_hi": used["shrunken_q97_5"].to_numpy(),
            "group": [f"biomarker: {display(b)}" for b in used["biomarker"]]})
        groups, summaries = [], []
        new = {q.outcome: q for q in quantities if q.key == "reduction_new"}
        for q in (q for q in quantities if q.key == "reduction_pooled"):
            s, pn = q.summary(), new[q.outcome].summary()      # a reduction of r% is a change of -r%
            one = q.studies_informing == 1
            groups.append({"group": f"biomarker: {display(q.outcome)}", "label": "one study" if one else "pooled",
                           "estimate": -s["median"], "lo": -s["q97.5"], "hi": -s["q2.5"]})
            if not one:                                       # with one study the spread would be tau's prior
                summaries.append({"label": f"new study: {display(q.outcome)}", "estimate": -pn["median"],
                                  "lo": -pn["q97.5"], "hi": -pn["q2.5"], "kind": "prediction", "note": ""})
        return {"rows": rows, "groups": pd.DataFrame(groups), "summaries": pd.DataFrame(summaries),
                "xlabel": "change from baseline to follow-up (%)", "observed_name": "observed (95% CI)",
                "fitted_name": "model estimate (95% CrI)", "title": "", "zero_line": 0.0, "scale": "percent",
                "counts_header": "n", "reconstructed_note": "dispersion imputed", "label_header": "study: biomarker"}


def _correlation(analysis, ds, spec, used) -> list[Variant]:
    return [Variant(f"pre/post correlation r = {r:g}", "correlation", patch={"data": {"correlation": r}})
            for r in correlation_ends(spec)]


def _missing_dispersion(analysis, ds, spec, used) -> list[Variant]:
    other = "exclude" if spec.get("data", "missing_dispersion") == "impute_cv" else "impute_cv"
    return [Variant(f"missing dispersion: {other}", "missing_dispersion", patch={"data": {"missing_dispersion": other}})]


def _within_correlation(analysis, ds, spec, used) -> list[Variant]:
    """The within-study correlation of one study's biomarkers at the values of
    :data:`WITHIN_CORRELATIONS` other than the primary's (only where a study reports several)."""
    if not used.groupby("study_id")["biomarker"].nunique().gt(1).any():
        return []
    primary = spec.get("data", "within_study_correlation")
    return [Variant(f"within-study correlation = {r:g}", "within_correlation",
                    patch={"data": {"within_study_correlation": r}}) for r in WITHIN_CORRELATIONS if r != primary]


Biomarkers.families = {**Biomarkers.families, "correlation": _correlation, "missing_dispersion": _missing_dispersion,
                       "within_correlation": _within_correlation}
