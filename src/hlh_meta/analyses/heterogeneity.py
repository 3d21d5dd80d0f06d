"""Heterogeneity as meta-analysts read it: a frequentist reference beside the Bayesian model.

Per outcome (mortality; each biomarker): k studies, Cochran's Q with its df and p-value,
I² and H², tau² by restricted maximum likelihood (REML) with its Q-profile 95% interval,
and the pooled estimate with its REML + Knapp-Hartung 95% confidence interval, as metafor's
``rma(yi, vi, method="REML", test="knha")`` and ``confint()`` print them. These figures do
not enter the Bayesian model and do not replace it: they are what a reader who knows the
standard random-effects output will look for first.

Which library does what:

* statsmodels (``stats.meta_analysis.combine_effects``) gives Q and its p-value (from which
  Higgins and Thompson's I² = (Q - df) / Q, floored at 0); ``WLS`` with the random-effects weights gives the pooled
  estimate and its Knapp-Hartung interval (the WLS scale is the Knapp-Hartung factor, the
  interval uses t with k - 1 df).
* statsmodels estimates tau² only by DerSimonian-Laird and Paule-Mandel, and neither it nor
  PyMARE gives the Q-profile interval next to REML, so those two are computed here with
  scipy: REML as the root of its score equation (Viechtbauer 2005, eq. 12), the Q-profile
  bounds as the tau² at which the generalised Q statistic equals the chi-square quantiles
  (Viechtbauer 2007). Both are a few lines and are checked against metafor's printed values
  (``tests/test_heterogeneity.py``).
* I² and H² follow metafor: from the REML tau² and the typical within-study variance
  (Higgins and Thompson 2002, eq. 9), so their intervals come from the tau² interval.
  ``I2_from_Q_percent`` keeps the Q-based I² most software prints.

Mortality. The units are studies, as in a standard meta-analysis of proportions: the strata
of a study's partition (disjoint by construction) are summed to one deaths/n per study,
since strata of one study share its setting and the heterogeneity of interest is between
studies. Each study's proportion enters on the logit scale, with variance 1/x + 1/(n - x);
a study with no deaths or only deaths gets 0.5 added to both cells (metafor's default for
``measure="PLO"``), the others none. No kept library fits a binomial-normal GLMM by maximum
likelihood (statsmodels' binomial mixed GLM is variational Bayes), so the normal
approximation on the logit scale is the reference here. The pooled logit back-transformed
is the mortality of a median study, not the patient-weighted mortality of the Bayesian
headline.

Biomarkers. Each study's log ratio of means (``yi``) with its standard error (``sei``), one
row per biomarker; the pooled log ratio is also given as a percent reduction,
100 (1 - exp(log ratio)), as the Bayesian tables give it.

When the Knapp-Hartung factor (the generalised Q at the REML tau², over k - 1) is below 1,
its interval is narrower than the unadjusted one; the row's note then gives the interval with
the factor floored at 1 (Röver, Knapp and Friede 2015; metafor's ``test="adhoc"``).

With one study nothing is estimable and the row says so; with two the figures are
computed, with a note that Q and I² on two studies say very little.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

LEVEL = 0.95
#: the largest tau² searched for a Q-profile bound; beyond it the bound is reported as infinite
TAU2_MAX = 1e6
ONE_STUDY = "not estimable (one study)"
NO_STUDY = "not estimable (no study)"
TWO_STUDIES = "two studies: Q, I² and the tau² interval are very uncertain"
COLUMNS = ["outcome", "studies", "Q", "df", "p_Q", "I2_percent", "I2_ci_low", "I2_ci_high", "I2_from_Q_percent",
           "H2", "H2_ci_low", "H2_ci_high", "tau2", "tau2_ci_low", "tau2_ci_high", "tau", "link", "estimate_link",
           "se_link", "ci_low_link", "ci_high_link", "scale", "estimate", "ci_low", "ci_high", "method", "note"]


def _q_general(tau2: float, yi: np.ndarray, vi: np.ndarray) -> float:
    """The generalised Q statistic: weighted squared deviations from the weighted mean."""
    w = 1.0 / (vi + tau2)
    mu = np.sum(w * yi) / np.sum(w)
    return float(np.sum(w * (yi - mu) ** 2))


def _reml_score(tau2: float, yi: np.ndarray, vi: np.ndarray) -> float:
    """Derivative of the restricted log-likelihood in tau² (up to the factor 1/2)."""
    w = 1.0 / (vi + tau2)
    mu = np.sum(w * yi) / np.sum(w)
    return float(np.sum(w**2 * (yi - mu) ** 2) - np.sum(w) + np.sum(w**2) / np.sum(w))


def _root_above(f, lo: float) -> float:
    """The root of a function positive at ``lo`` and negative far above it; inf if it stays
    positive up to TAU2_MAX."""
    hi = max(1.0, 2 * lo)
    while f(hi) > 0:
        if hi >= TAU2_MAX:
            return np.inf
        hi = min(hi * 4, TAU2_MAX)
    return optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-10)


def reml_tau2(yi: np.ndarray, vi: np.ndarray) -> float:
    """REML estimate of tau²: 0 when the score is not positive at 0, else its root."""
    if _reml_score(0.0, yi, vi) <= 0:
        return 0.0
    return _root_above(lambda t: _reml_score(t, yi, vi), 0.0)


def q_profile(yi: np.ndarray, vi: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Q-profile confidence interval of tau²: the tau² at which the generalised Q equals the
    upper and lower chi-square quantiles with k - 1 df (a bound that would be negative is 0)."""
    df = len(yi) - 1
    alpha = 1 - level
    bounds = []
    for crit in (stats.chi2.ppf(1 - alpha / 2, df), stats.chi2.ppf(alpha / 2, df)):
        f = lambda t, c=crit: _q_general(t, yi, vi) - c  # noqa: E731
        bounds.append(0.0 if f(0.0) <= 0 else _root_above(f, 0.0))
    return bounds[0], bounds[1]


def random_effects(yi, vi, level: float = LEVEL) -> dict:
    """Q, I², H², REML tau² with its Q-profile interval and the pooled estimate with its
    Knapp-Hartung interval for estimates ``yi`` with within-study variances ``vi`` (k >= 2)."""
    from statsmodels.regression.linear_model import WLS     # not statsmodels.api, which imports all of it
    from statsmodels.stats.meta_analysis import combine_effects

    yi, vi = np.asarray(yi, float), np.asarray(vi, float)
    k = len(yi)
    if k < 2:
        raise ValueError("a random-effects meta-analysis needs at least two studies")
    with np.errstate(invalid="ignore"):   # only Q is read; its DL tau² is not truncated at 0 (sqrt of < 0 then)
        combined = combine_effects(yi, vi, method_re="dl")
    homogeneity = combined.test_homogeneity()
    q = float(homogeneity.statistic)
    tau2 = reml_tau2(yi, vi)
    tau2_lo, tau2_hi = q_profile(yi, vi, level)
    w = 1.0 / vi
    typical = (k - 1) * w.sum() / (w.sum() ** 2 - (w**2).sum())   # typical within-study variance
    i2 = lambda t: 100 * t / (t + typical) if np.isfinite(t) else 100.0  # noqa: E731
    h2 = lambda t: (t + typical) / typical  # noqa: E731
    fit = WLS(yi, np.ones(k), weights=1.0 / (vi + tau2)).fit()   # scale estimated: Knapp-Hartung
    lo, hi = fit.conf_int(alpha=1 - level)[0]
    floored = WLS(yi, np.ones(k), weights=1.0 / (vi + tau2)).fit(cov_type="fixed scale", use_t=True,
                                                                   cov_kwds={"scale": max(1.0, fit.scale)})
    return {"studies": k, "Q": q, "df": k - 1, "p_Q": float(homogeneity.pvalue),
            "I2_percent": i2(tau2), "I2_ci_low": i2(tau2_lo), "I2_ci_high": i2(tau2_hi),
            "I2_from_Q_percent": 100 * max(0.0, 1 - (k - 1) / q) if q > 0 else 0.0,
            "H2": h2(tau2), "H2_ci_low": h2(tau2_lo), "H2_ci_high": h2(tau2_hi),
            "tau2": tau2, "tau2_ci_low": tau2_lo, "tau2_ci_high": tau2_hi, "tau": np.sqrt(tau2),
            "estimate_link": float(fit.params[0]), "se_link": float(fit.bse[0]),
            "ci_low_link": float(lo), "ci_high_link": float(hi), "knha_factor": float(fit.scale),
            "ci_floored_link": tuple(float(v) for v in floored.conf_int(alpha=1 - level)[0])}


def _row(outcome: str, yi, vi, link: str, scale: str, to_scale, method: str, notes: list[str]) -> dict:
    k = len(yi)
    row: dict[str, Any] = dict.fromkeys(COLUMNS, np.nan) | {"outcome": outcome, "studies": k, "link": link, "scale": scale,
                                             "method": method}
    if k < 2:
        row["note"] = "; ".join([ONE_STUDY if k == 1 else NO_STUDY] + notes)
        return row
    row |= random_effects(yi, vi)
    ends = sorted(to_scale(np.array([row["ci_low_link"], row["ci_high_link"]])))
    if row["knha_factor"] < 1:
        wide = sorted(to_scale(np.array(row["ci_floored_link"])))
        notes = notes + [f"Knapp-Hartung factor {row['knha_factor']:.2f} (below 1: this interval is narrower than the "
                         f"unadjusted one); with the factor floored at 1 (Röver et al. 2015) it is {wide[0]:.1f} to "
                         f"{wide[1]:.1f}"]
    row |= {"estimate": float(to_scale(row["estimate_link"])), "ci_low": ends[0], "ci_high": ends[1],
            "note": "; ".join(([TWO_STUDIES] if k == 2 else []) + notes)}
    return row


def _frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out.astype({"studies": int, "note": object}).assign(note=out["note"].fillna(""))


MORTALITY_METHOD = ("deaths/n per study (its strata summed); logit of the proportion, 0.5 added to both cells of a "
                    "study with no or only deaths; REML tau² with Q-profile 95% CI; pooled logit with REML weights "
                    "and Knapp-Hartung 95% CI (t, k-1 df), back-transformed to %")


def mortality_heterogeneity(rows: pd.DataFrame, study: str = "study_id", events: str = "deaths",
                            total: str = "n") -> pd.DataFrame:
    """One row for mortality from the rows of the analysis (one per stratum): the strata of
    each study are summed to one count, each study's logit proportion pooled (module text)."""
    counts = rows.groupby(study, sort=False)[[events, total]].sum().astype(float)
    x, n = counts[events].to_numpy(), counts[total].to_numpy()
    corrected = (x == 0) | (x == n)
    xc, nc = x + 0.5 * corrected, n + 1.0 * corrected
    yi = np.log(xc / (nc - xc))
    vi = 1 / xc + 1 / (nc - xc)
    notes = ([f"0.5 added to the cells of {', '.join(map(str, counts.index[corrected]))} (no or only deaths)"]
             if corrected.any() else [])
    return _frame([_row("mortality", yi, vi, "logit", "mortality (%)", lambda v: 100 * stats.logistic.cdf(v),
                        MORTALITY_METHOD, notes)])


BIOMARKER_METHOD = ("log ratio of means (follow-up / baseline) per study; REML tau² with Q-profile 95% CI; pooled "
                    "log ratio with REML weights and Knapp-Hartung 95% CI (t, k-1 df); "
                    "reduction = 100 (1 - exp(log ratio))")


def biomarker_heterogeneity(rows: pd.DataFrame, outcome: str = "biomarker", estimate: str = "yi",
                            std_err: str = "sei") -> pd.DataFrame:
    """One row per biomarker from the rows of the analysis (one per study x biomarker)."""
    out = []
    for name, mine in rows.groupby(outcome, sort=False):
        yi, se = mine[estimate].to_numpy(float), mine[std_err].to_numpy(float)
        out.append(_row(str(name), yi, se**2, "log ratio", "reduction (%)", lambda v: 100 * (1 - np.exp(v)),
                        BIOMARKER_METHOD, []))
    return _frame(out)
