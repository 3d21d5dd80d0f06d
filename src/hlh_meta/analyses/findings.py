"""Summary of findings: one row per outcome in the GRADE layout.

Per outcome: studies and patients, the pooled estimate and the prediction interval in the
outcome's reported unit, the data-support label, and a judgement of each consideration
that lowers the certainty of evidence, with the reason in words:

- **risk of bias**: serious when studies rated high (or critical) risk of bias in
  ``studies.csv`` hold at least half the outcome's patients;
- **inconsistency**: not assessable when the data inform tau weakly or not at all
  (support ``weak`` or ``prior``); otherwise serious when tau's posterior median is 0.5 or more (a between-study
  SD of 0.5 on the logit or log-ratio scale);
- **imprecision**: serious when the 95% credible interval contains the decision threshold
  of ``[report] threshold``; not assessed when the spec declares none; the reason also names
  the quantity's caveats (e.g. standard errors resting on imputed SDs);
- **indirectness**: serious when the estimate is an extrapolation, rests on COVID-19
  series, or no included study is known to include an age group the question covers
  (``[report] population``, default paediatric and adult: an estimate from children alone
  is indirect for adults);
- **publication bias** (reporting bias): ``suspected`` when studies that would otherwise
  enter the analysis do not report the outcome in what was read (their rows are left out
  as not reported: the outcome may be missing because of its result), naming them and
  their patients; otherwise not assessable with fewer than 10 studies (an asymmetry test
  has too little power), and with 10 or more serious when Egger's regression of the
  standardised effect on precision gives p < 0.10.

Each row also carries its **context** in words where the analysis gives one (e.g. that
uncontrolled series have no comparator, the case mix behind the pooled figure and the
follow-up of the sources).

Certainty starts at ``high`` when every study is randomised and ``low`` otherwise, and
drops one level per serious consideration, down to ``very low``. An estimate whose support
is ``prior`` is marked "not informed by the data" whatever the rest says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from ..data.schema import AGE_GROUPS
from .quantity_id import QuantityId

if TYPE_CHECKING:
    from .base import Quantity

LEVELS = ("very low", "low", "moderate", "high")
#: the considerations that lower certainty, in the table's order
VERDICTS = ("risk_of_bias", "inconsistency", "imprecision", "indirectness", "publication_bias")
HIGH_RISK = ("high", "critical")
TAU_SERIOUS = 0.5
MIN_STUDIES_FOR_ASYMMETRY = 10
EGGER_ALPHA = 0.10
#: judgements that lower the certainty one level
DOWNGRADE = ("serious", "suspected")


def fmt_value(x: float, scale: str) -> str:
    """A value in the outcome's reported unit: percentages to one decimal, ratios to two."""
    if x is None or not np.isfinite(x):
        return ""
    return f"{x:.1f}%" if scale.startswith("percent") else f"{x:.2f}"


def fmt_interval(mid: float, lo: float, hi: float, scale: str) -> str:
    """``median (lo to hi)`` in one cell."""
    return f"{fmt_value(mid, scale)} ({fmt_value(lo, scale)} to {fmt_value(hi, scale)})"


def egger(y: np.ndarray, se: np.ndarray) -> tuple[float, float]:
    """Egger's regression test: the intercept of y/se on 1/se and its two-sided p-value."""
    z, precision = y / se, 1 / se
    X = np.column_stack([np.ones_like(precision), precision])
    coef, *_ = np.linalg.lstsq(X, z, rcond=None)
    resid = z - X @ coef
    dof = len(z) - 2
    sigma2 = float(resid @ resid) / dof
    cov = sigma2 * np.linalg.inv(X.T @ X)
    t = coef[0] / np.sqrt(cov[0, 0])
    return float(coef[0]), float(2 * stats.t.sf(abs(t), dof))


def _risk_of_bias(studies: pd.DataFrame, patients: Mapping[str, float]) -> tuple[str, str]:
    if "risk_of_bias" not in studies or not patients:
        return "not assessed", "no risk-of-bias ratings"
    rob = studies.set_index("study_id")["risk_of_bias"].astype(str).str.lower()
    total = sum(patients.values())
    high = [s for s in patients if rob.get(s, "") in HIGH_RISK]
    share = sum(patients[s] for s in high) / total if total else 0.0
    why = (f"{len(high)} of {len(patients)} stud{'y' if len(patients) == 1 else 'ies'} "
           f"({share:.0%} of patients) rated high risk of bias")
    return ("serious" if share >= 0.5 else "not serious"), why


def _inconsistency(tau: Quantity | None) -> tuple[str, str]:
    if tau is None:
        return "not assessable", "no between-study SD in the model"
    s = tau.summary()
    if tau.label_support != "data" or tau.extrapolation:
        how = "not" if tau.label_support == "prior" or tau.extrapolation else "only weakly"
        return "not assessable", (f"between-study SD {s['median']:.2f} (95% CrI {s['q2.5']:.2f} to {s['q97.5']:.2f}) "
                                  f"is {how} informed by the data")
    verdict = "serious" if s["median"] >= TAU_SERIOUS else "not serious"
    return verdict, f"between-study SD {s['median']:.2f} (95% CrI {s['q2.5']:.2f} to {s['q97.5']:.2f})"


def _imprecision(q: Quantity, threshold: float | None) -> tuple[str, str]:
    s = q.summary()
    span = s["q97.5"] - s["q2.5"]
    width = f"95% CrI width {span:.1f} percentage points" if q.scale.startswith("percent") else \
        f"95% CrI width {fmt_value(span, q.scale)}"
    if threshold is None:
        return "not assessed", f"{width}; no decision threshold declared ([report] threshold)"
    crosses = s["q2.5"] < threshold < s["q97.5"]
    where = "contains" if crosses else "lies on one side of"
    return ("serious" if crosses else "not serious"), f"{width}; the interval {where} the threshold " \
                                                      f"{fmt_value(threshold, q.scale)}"


#: the age groups a study's ``age_group`` shows it includes (``unknown`` shows none)
AGE_COVERAGE = {"paediatric": ("paediatric",), "adult": ("adult",), "mixed": AGE_GROUPS}
POPULATION = AGE_GROUPS
_PATIENTS = {"paediatric": "children", "adult": "adults"}


def _uncovered(studies: pd.DataFrame, ids: list[str], population) -> str | None:
    """Why the included studies do not cover the question's age groups, or None when they do."""
    if not population or "age_group" not in studies:
        return None
    ages = studies.loc[studies["study_id"].isin(ids), "age_group"].astype(str)
    covered = {g for a in ages for g in AGE_COVERAGE.get(a, ())}
    missing = [g for g in population if g not in covered]
    if not missing:
        return None
    wanted = " and ".join(_PATIENTS.get(g, g) for g in population)
    if not covered:
        return f"the age group of the included patients is not reported; the question covers {wanted}"
    return (f"no included study is known to include {' or '.join(_PATIENTS.get(g, g) for g in missing)} "
            f"(the question covers {wanted})")


def _indirectness(q: Quantity, studies: pd.DataFrame, ids: list[str], population=POPULATION) -> tuple[str, str]:
    reasons = []
    if q.extrapolation:
        reasons.append("the profile is outside the observed covariate range (extrapolation)")
    if "covid19" in studies:
        flag = studies.set_index("study_id")["covid19"].astype(str).str.lower().isin(("true", "1"))
        covid = [s for s in ids if flag.get(s, False)]
        if covid:
            reasons.append(f"COVID-19 series included ({', '.join(covid)})")
    uncovered = _uncovered(studies, ids, population)
    if uncovered:
        reasons.append(uncovered)
    if reasons:
        return "serious", "; ".join(reasons)
    ages = sorted(set(studies.loc[studies["study_id"].isin(ids), "age_group"].astype(str))) if "age_group" in studies else []
    return "not serious", "populations as in the included studies" + (f" ({', '.join(ages)})" if ages else "")


def unreported(excluded: pd.DataFrame | None, studies: pd.DataFrame) -> dict[str, int]:
    """Studies left out only because they do not report the outcome (in what was read), with
    their patients: rows whose derivation is ``not reported`` and whose reason for leaving
    out is that (not an overlap, a setting or a partition)."""
    if excluded is None or excluded.empty or not {"derivation", "reason", "excluded_because"} <= set(excluded):
        return {}
    rows = excluded[(excluded["derivation"].astype(str) == "not reported")
                    & (excluded["excluded_because"].astype(str) == excluded["reason"].astype(str))]
    size = studies.set_index("study_id")["n_patients"] if "n_patients" in studies else pd.Series(dtype=float)
    n = pd.to_numeric(rows["n"], errors="coerce") if "n" in rows else pd.Series(np.nan, index=rows.index)
    out = {}
    for sid, idx in rows.groupby("study_id", sort=False).groups.items():
        count = n[idx].sum(min_count=1)
        count = count if pd.notna(count) else size.get(sid, np.nan)
        out[str(sid)] = int(count) if pd.notna(count) else 0
    return out


def _publication_bias(k: int, effects: tuple[np.ndarray, np.ndarray] | None,
                      missing: Mapping[str, int] | None = None, included: int = 0) -> tuple[str, str]:
    if missing:
        names = ", ".join(f"{s} ({n} patients)" for s, n in missing.items())
        return "suspected", (f"{len(missing)} stud{'y' if len(missing) == 1 else 'ies'} that would otherwise enter "
                             f"do not report the outcome in what was read: {names}; {sum(missing.values())} patients "
                             f"beside the {included} included")
    if k >= MIN_STUDIES_FOR_ASYMMETRY and effects is None:
        return "not assessed", "no per-study effect to test for asymmetry"
    if k < MIN_STUDIES_FOR_ASYMMETRY:
        return "not assessable", (f"{k} stud{'y' if k == 1 else 'ies'}: an asymmetry test needs at least "
                                  f"{MIN_STUDIES_FOR_ASYMMETRY}")
    intercept, p = egger(*effects)  # type: ignore[misc]
    return ("serious" if p < EGGER_ALPHA else "not serious"), f"Egger's test intercept {intercept:.2f}, p = {p:.3f}"


def binomial_findings(tables, quantities, outcome: str, pooled: QuantityId, new: QuantityId | None) -> list[dict]:
    """The summary-of-findings row of a binomial analysis: its headline quantity (id
    ``pooled``), a new study's (id ``new``), tau, the patients of each study and each study's
    log odds (0.5 added to every cell) for the asymmetry test; ``outcome``: the row's outcome
    as shown."""
    by_id = {q.id: q for q in quantities}
    q = by_id.get(pooled)
    if q is None:
        return []
    per_study = tables["data_used"].groupby("study_id", sort=False)[["deaths", "n"]].sum().astype(float)
    d, n = per_study["deaths"].to_numpy() + 0.5, per_study["n"].to_numpy() + 1.0
    effects = (np.log(d / (n - d)), np.sqrt(1 / d + 1 / (n - d)))
    return [{"outcome": outcome, "pooled": q,
             "new": None if new is None else by_id.get(new),
             "tau": by_id.get(QuantityId(pooled.outcome, "tau")),
             "patients": per_study["n"].to_dict(), "effects": effects,
             "unreported": unreported(tables.get("excluded"), tables.get("studies", pd.DataFrame()))}]


def certainty(randomised: bool, judgements: list[str]) -> str:
    """GRADE certainty: start high (randomised) or low, one level down per serious concern."""
    level = LEVELS.index("high" if randomised else "low") - sum(j in DOWNGRADE for j in judgements)
    return LEVELS[max(level, 0)]


def summary_of_findings(rows: list[dict], studies: pd.DataFrame, threshold: float | None,
                        population=POPULATION) -> pd.DataFrame:
    """The table from each outcome's headline: ``rows`` holds dicts with ``outcome``,
    ``pooled`` and ``new`` (Quantity), ``tau`` (Quantity or None), ``patients`` (study id ->
    patients in the outcome) and ``effects`` ((y, se) per study for the asymmetry test, or None);
    ``population``: the age groups the question covers (indirectness)."""
    out = []
    for r in rows:
        q, new = r["pooled"], r.get("new")
        s = q.summary()
        pn = new.summary() if new is not None else None
        ids = list(r["patients"])
        designs = studies.loc[studies["study_id"].isin(ids), "design"].astype(str) if "design" in studies else pd.Series()
        lowered = designs.str.lower()
        randomised = bool(len(designs)) and (lowered.str.contains("randomi")
                                             & ~lowered.str.contains(r"non[-_ ]?randomi")).all()
        own = r.get("threshold")             # a row's reason why the analysis's threshold does not apply to it
        imprecision = (("not assessed", f"{_imprecision(q, None)[1].split(';')[0]}; {own}") if isinstance(own, str)
                       else _imprecision(q, threshold))
        judged = dict(zip(VERDICTS, (_risk_of_bias(studies, r["patients"]), _inconsistency(r.get("tau")),
                                     imprecision, _indirectness(q, studies, ids, population),
                                     _publication_bias(len(ids), r.get("effects"), r.get("unreported"),
                                                       int(round(sum(r["patients"].values())))))))
        if q.caveats:                   # an interval whose width rests on imputed dispersion says so
            verdict, why = judged["imprecision"]
            judged["imprecision"] = verdict, "; ".join([why, *q.caveats])
        level = certainty(randomised, [v for v, _ in judged.values()])
        if q.label_support == "prior":
            level = "not informed by the data"
        row = {
            "id": str(q.id), "outcome": r["outcome"], "quantity": q.description, "studies": len(ids),
            "patients": int(round(sum(r["patients"].values()))),
            "estimate": fmt_interval(s["median"], s["q2.5"], s["q97.5"], q.scale),
            "prediction_interval": "" if pn is None else f"{fmt_value(pn['q2.5'], q.scale)} to "
                                                          f"{fmt_value(pn['q97.5'], q.scale)}",
            "support": q.label_support, "design": "randomised" if randomised else "non-randomised",
            "context": r.get("context", ""),
        }
        for name, (verdict, why) in judged.items():
            row[name] = verdict
            row[f"{name}_reason"] = why
        row.update({"certainty": level, "median": s["median"], "q2.5": s["q2.5"], "q97.5": s["q97.5"],
                    "pi_2.5": np.nan if pn is None else pn["q2.5"], "pi_97.5": np.nan if pn is None else pn["q97.5"],
                    "threshold": np.nan if threshold is None or isinstance(own, str) else threshold, "scale": q.scale})
        out.append(row)
    return pd.DataFrame(out)
