"""Comparative evidence: the odds ratio of death, anakinra vs control, from ``arms.csv``.

Each arm of a comparative source is one row of the binomial engine with a 0/1 covariate
``anakinra``; the study's random intercept is shared by its two arms, so each study is
compared within itself and the odds ratio exp(beta) is common to the studies (they may
differ in their control-arm mortality, by tau on the logit scale). The mortality of each
arm is reported for a typical study (study effect 0) and a new study (study effect drawn
with tau).

Only studies with both arms' deaths and n enter; the spec's exclusions, the primary-
analysis flag, the COVID-19 setting and the overlap rule apply as in the other analyses.
A folder without a usable comparative study gives an empty ``used`` frame from
:meth:`Comparison.frame` (nothing to fit; ``inputs`` then refuses with a spec error).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd

from ..data import Dataset
from ..models.binomial import prepare_binomial
from ..models.engine import ModelInputs
from ..spec import Spec
from .base import PRIMARY, AnalysisType, FigureSpec, Quantity, Variant, keys_read, quantity_table
from .quantity_id import Contrast, QuantityId
from .families import SHARED, prior_family
from .judgements import judged
from .findings import binomial_findings
from .forest_rows import count_rows
from .registry import register
from .selection import excluded_studies

COVARIATE = "anakinra"
ARMS = ("control", "anakinra")
#: the odds ratio of death, the anakinra arm against the control arm
ODDS_RATIO_ID = QuantityId("mortality", "odds_ratio", contrast=Contrast("arm", "anakinra", "control"))
PROFILES = pd.DataFrame({COVARIATE: [0.0, 1.0]}, index=list(ARMS))
THRESHOLDS = (10, 20, 30)
COLUMNS = ["study_id", "arm", "design", "deaths", "n", "count_method", "row"]
PRIOR_SETS = [("tau", {"dist": "HalfNormal", "sigma": 0.5}), ("tau", {"dist": "HalfNormal", "sigma": 2.0}),
              ("tau", {"dist": "HalfCauchy", "beta": 1.0}), ("mu", {"dist": "Normal", "mu": 0.0, "sigma": 3.0}),
              ("beta", {"dist": "Normal", "mu": 0.0, "sigma": 2.0}),
              ("beta", {"dist": "Normal", "mu": 0.0, "sigma": 0.5})]
DESIGN_WORDS = {"randomised": "randomised", "randomised_post_hoc_subgroup": "post-hoc subgroup of a randomised trial",
                "observational": "observational"}


def _studies_phrase(k: int) -> str:
    return "rests on one study" if k == 1 else f"rests on {k} studies"


def _draws(group, name: str, **sel) -> np.ndarray | None:
    if group is None or name not in group:
        return None
    return group[name].sel(**sel).values.reshape(-1)


def _percent(a) -> np.ndarray:
    return 100 * np.asarray(a, dtype=float).reshape(-1)


@register
class Comparison(AnalysisType):
    kind = "comparison"
    spec_keys = keys_read(model={"covariates"})      # read to refuse any: the arm is the model's one covariate
    families = {"priors": prior_family(PRIOR_SETS), **SHARED}
    robustness_keys = ("odds_ratio", "mortality_typical", "tau")
    threshold_range = (0.0, None, "the odds ratio of death, anakinra vs control")
    figures = (
        FigureSpec("forest", "forest", "Observed mortality of each arm (exact 95% CI) with the model's estimate, and "
                   "the mortality of each arm in a typical study with the prediction interval for a new study."),
        FigureSpec("odds_ratio", "intervals", "Odds ratio of death, anakinra vs control (posterior median and 95% "
                   "credible interval).", select=("odds_ratio",), title="Anakinra vs control",
                   xlabel="odds ratio of death (median, 95% CrI; log scale)", log_x=True, reference_line=1.0),
        FigureSpec("shrinkage", "shrinkage", "Each row's estimate as the between-study SD (tau) varies, and tau's "
                   "prior and posterior beneath: where the lines fan out the estimates depend on tau, and where the "
                   "posterior sits on its prior the data do not decide it.", select=("p",)),
        FigureSpec("trace", "trace", "Density and rank plots of the main parameters, one line per chain."),
        FigureSpec("prior_posterior", "prior_posterior", "Prior against posterior for the intercept (control-arm "
                   "log-odds) and the between-study SD."),
        FigureSpec("ppc", "ppc", "Posterior predictive check: each observed value against the distribution of "
                   "replicated values."),
    )

    # ---- frame
    def _check_spec(self, spec: Spec) -> None:
        if spec.get("model", "covariates"):
            raise spec.error("model.covariates", "the comparison analysis has one covariate, the arm (anakinra vs "
                                                 "control); leave covariates empty")
        if spec.get("comparison", "covariate_sets"):
            raise spec.error("comparison.covariate_sets", "the comparison analysis has no covariate sets to compare")

    def frame(self, ds: Dataset, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Arm rows entering the model (two per study), and every other arm row with why not.
        An arms table with no usable comparative study gives an empty ``used`` frame."""
        self._check_spec(spec)
        ds = judged(ds, spec)
        arms = ds.arms.assign(row=ds.arms.index.astype(int))[COLUMNS].copy()
        reasons = pd.Series("", index=arms.index, dtype=object)
        for sid, rows in arms.groupby("study_id", sort=False):
            missing = [a for a in ARMS if a not in set(rows["arm"])]
            unreported = rows["count_method"] != "reported"
            if missing:
                reasons[rows.index] = f"no {missing[0]} arm in arms.csv"
            elif unreported.any():
                reasons[rows.index] = "deaths not reported for " + " and ".join(sorted(rows.loc[unreported, "arm"])) + \
                    " arm" + ("s" if unreported.sum() > 1 else "")
        candidates = list(pd.unique(arms.loc[reasons == "", "study_id"]))
        left_out = excluded_studies(ds, spec, candidates)
        hit = (reasons == "") & arms["study_id"].isin(left_out)
        reasons[hit] = arms.loc[hit, "study_id"].map(left_out)
        used = arms[reasons == ""].copy()
        used[COVARIATE] = (used["arm"] == "anakinra").astype(float)
        used["label"] = used["study_id"] + ": " + used["arm"]
        left = arms[reasons != ""].assign(excluded_because=reasons[reasons != ""].astype(str))
        return used, left

    # ---- model inputs
    def inputs(self, ds: Dataset, spec: Spec, used: pd.DataFrame, variant: Variant = PRIMARY,
               covariates: list[str] | None = None) -> ModelInputs:
        if used.empty:
            raise spec.error("data", "no comparative study with both arms' deaths and n in arms.csv: nothing to compare")
        frame = used.reset_index(drop=True).copy()
        weights = (~frame["study_id"].isin(variant.soft_exclude)).astype(float).to_numpy()
        if not weights.any():
            raise spec.error("data", "no comparative study left to compare")
        frame[["deaths", "n"]] = frame[["deaths", "n"]].astype(int)
        inputs = prepare_binomial(frame, events="deaths", total="n", study="study_id", covariates=[COVARIATE],
                                  label="label", profiles=PROFILES, priors=spec.section("priors"), weights=weights)
        inputs.row_info["row_arm"] = frame["arm"].astype(str).to_numpy()
        designs = frame.drop_duplicates("study_id").set_index("study_id")["design"].astype(str).to_dict()
        inputs.attrs["designs"] = json.dumps(designs)
        return inputs

    # ---- quantities
    def quantities(self, idata: az.InferenceData) -> list[Quantity]:
        post, prior = idata.posterior, getattr(idata, "prior", None)
        cd = idata.constant_data
        keep = cd["weight"].values > 0
        n_rows = cd["total"].values
        row_study = cd["row_study"].values
        row_arm = cd["row_arm"].values.astype(str)
        studies_in = sorted(set(row_study[keep]))
        k, patients = len(studies_in), int(n_rows[keep].sum())
        out = []
        for arm in map(str, post["profile"].values):
            hit = keep & (row_arm == arm)
            s, p = len(set(row_study[hit])), int(n_rows[hit].sum())
            for key, var, words in (("mortality_typical", "p_typical", f"mortality, {arm} arm, typical study (%)"),
                                    ("mortality_new", "p_new", f"mortality, {arm} arm, new study (predictive, %)")):
                pr = _draws(prior, var, profile=arm)
                levels = {"arm": arm}
                out.append(Quantity(key=key, outcome="mortality", label=f"{arm} arm", description=words,
                                    scale="percent", draws=_percent(post[var].sel(profile=arm)),
                                    prior=None if pr is None else _percent(pr),
                                    profile={COVARIATE: float(arm == "anakinra")}, levels=levels, thresholds=THRESHOLDS,
                                    n_studies=k, source=(var, {"profile": arm}), studies_informing=s,
                                    patients_informing=p, extrapolation=s == 0,
                                    rests_on=(QuantityId.of("mortality", "mortality_typical", levels),
                                              QuantityId("mortality", "tau")) if key == "mortality_new" else ()))
        pr = _draws(prior, "beta", covariate=COVARIATE)
        out.append(Quantity(key="odds_ratio", outcome="mortality", label="anakinra vs control",
                            description="odds ratio of death", scale="odds ratio",
                            draws=np.exp(post["beta"].sel(covariate=COVARIATE).values.reshape(-1)),
                            prior=None if pr is None else np.exp(pr), contrast=ODDS_RATIO_ID.contrast, n_studies=k,
                            source=("beta", {"covariate": COVARIATE}), studies_informing=k, patients_informing=patients,
                            extrapolation=k == 0))
        out.append(Quantity(key="tau", outcome="mortality", label="between studies",
                            description="tau (between-study SD, logit scale)", scale="SD (logit scale)",
                            draws=post["tau"].values.reshape(-1), prior=_draws(prior, "tau"), n_studies=k,
                            source=("tau", {}), studies_informing=k, patients_informing=patients, extrapolation=k < 2))
        return out

    # ---- tables
    def tables(self, ds, spec, used, excluded, idata, quantities, progress=False) -> dict[str, pd.DataFrame]:
        p = idata.posterior["p"]
        data_used = used.drop(columns=["label"]).assign(
            observed_percent=100 * used["deaths"].astype(float) / used["n"].astype(float),
            fitted_percent_mean=100 * p.mean(("chain", "draw")).values,
            fitted_percent_q2_5=100 * p.quantile(0.025, ("chain", "draw")).values,
            fitted_percent_q97_5=100 * p.quantile(0.975, ("chain", "draw")).values,
        )
        studies = ds.studies[ds.studies["study_id"].isin(used["study_id"])]
        keep = [c for c in ("study_id", "citation", "grade", "design", "n_patients", "age_group", "route",
                            "risk_of_bias", "overlaps_with", "covid19") if c in studies.columns]
        return {
            "summary": self.summary(idata, quantities, ["mu", "tau", "beta"]),
            "studies": studies[keep],
            "derived": quantity_table(quantities),
            "data_used": data_used,
            "excluded": excluded,
        }

    # ---- report
    def headline(self, quantities: list[Quantity]) -> str:
        """The odds ratio in one sentence, saying how many studies it rests on."""
        q = next(q for q in quantities if q.key == "odds_ratio")
        s, k = q.summary(), q.studies_informing or 0
        return (f"Odds ratio of death, anakinra vs control: {s['median']:.2f} (95% CrI {s['q2.5']:.2f}–"
                f"{s['q97.5']:.2f}); P(OR < 1) = {float((q.draws < 1).mean()):.2f}; it {_studies_phrase(k)} "
                f"({q.patients_informing} patients).")

    def statements(self, quantities: list[Quantity]) -> list[tuple[Quantity, str]]:
        out = []
        orq = next((q for q in quantities if q.key == "odds_ratio"), None)
        if orq is not None:
            out.append((orq, self.headline(quantities)))
        by_id = {q.id: q for q in quantities}
        for q in (q for q in quantities if q.key == "mortality_typical"):
            s, pn = q.summary(), by_id[q.id.of_kind("mortality_new")].summary()
            out.append((q, f"Mortality in the {q.label} of a typical study: {s['median']:.1f}% (95% CrI "
                           f"{s['q2.5']:.1f}–{s['q97.5']:.1f}%); a new study could see {pn['q2.5']:.1f}–"
                           f"{pn['q97.5']:.1f}%; {q.patients_informing} patients in {q.studies_informing} "
                           f"stud{'y' if q.studies_informing == 1 else 'ies'} inform it."))
        for q in (q for q in quantities if q.key == "tau"):
            s = q.summary()
            out.append((q, f"Between-study SD of the control-arm log-odds: {s['median']:.2f} (95% CrI {s['q2.5']:.2f}–"
                           f"{s['q97.5']:.2f})" + ("; one study cannot inform it." if q.extrapolation else ".")))
        return out

    def methods(self, idata: az.InferenceData) -> str:
        designs = json.loads(idata.posterior.attrs.get("designs", "{}"))
        keep = idata.constant_data["weight"].values > 0
        studies = sorted(set(idata.constant_data["row_study"].values[keep]))
        what = "; ".join(f"{sid}: {DESIGN_WORDS.get(designs.get(sid, ''), designs.get(sid, ''))}" for sid in studies)
        return ("Deaths in each arm of a comparative source follow a binomial distribution; the log-odds of death is "
                "an intercept (mu: the control arm of a typical study) plus the log odds ratio (beta) in the anakinra "
                "arm plus a study effect drawn from Normal(0, tau) (non-centred) that the study's two arms share, so "
                "each study is compared within itself. The odds ratio is taken as common to the studies; they may "
                "differ in their control-arm mortality. Only arm counts that the source's own text prints enter. "
                f"The estimate {_studies_phrase(len(studies))} ({what})"
                + (", so tau and a new study's prediction interval are their prior." if len(studies) == 1 else "."))

    def findings_rows(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> list[dict]:
        rows = binomial_findings(tables, quantities, "mortality, anakinra vs control", ODDS_RATIO_ID, None)
        for r in rows:
            r["effects"] = None          # the asymmetry test would need each study's odds ratio
        return rows

    def forest(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> dict[str, pd.DataFrame]:
        used = tables["data_used"]
        rows = count_rows(used, tables.get("studies"), "arm")
        rows["group"] = [f"arm: {a}" for a in used["arm"]]
        by_id = {q.id: q for q in quantities}
        summaries = []
        for q in (q for q in quantities if q.key == "mortality_typical"):
            new = by_id[q.id.of_kind("mortality_new")]
            for src, what, kind in ((q, f"typical study: {q.label}", "pooled"), (new, f"new study: {q.label}",
                                                                                 "prediction")):
                s = src.summary()
                summaries.append({"label": what, "estimate": s["median"], "lo": s["q2.5"], "hi": s["q97.5"],
                                  "kind": kind, "note": ""})
        return {"rows": rows, "summaries": pd.DataFrame(summaries), "xlabel": "mortality (%)",
                "observed_name": "observed (exact 95% CI)", "fitted_name": "model estimate (95% CrI)",
                "title": "anakinra vs control, by arm", "scale": "percent",
                "counts_header": "deaths/n", "label_header": "study: arm"}
