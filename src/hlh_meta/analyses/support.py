"""How much the data moved each reported quantity: its support.

For every quantity (and model parameter) three measures, each from the fit itself:

- **contraction** = 1 - Var(posterior) / Var(prior), on the scale where the quantity is
  unbounded (logit of a percentage, log of a ratio or of a percent reduction's ratio,
  Fisher z of a correlation; an SD as it is): 0 means the data left the prior as it was,
  1 that they pinned the quantity down;
- **prior and likelihood sensitivity**: ArviZ's power-scaling diagnostic (``az.psens``,
  Kallioinen et al. 2024): how far the posterior moves when the prior (or the likelihood)
  is raised to a power near 1. Below 0.05 counts as insensitive, the threshold those
  authors use;
- **the studies and patients that inform it**: rows of known composition in the quantity's
  categories (a profile of categories no row holds is an extrapolation).

The label (thresholds documented in docs/methods.md):

- ``prior``: no study informs it, it is an extrapolation, or contraction < 0.1 (the
  posterior SD is above 95% of the prior SD);
- ``data``: contraction >= 0.5 (posterior SD at most about 71% of the prior's) and the
  prior does not move it (prior sensitivity < 0.05). The likelihood sensitivity is
  reported beside: with a prior sensitivity it marks a conflict between prior and data,
  on its own it is small whenever the data dominate, so it is not part of the rule;
- ``weak``: everything between.

A quantity built from others (a new study's prediction: the pooled estimate and tau) is
labelled no stronger than the weakest of them.

**Conflict**: when both the prior and the likelihood sensitivity reach 0.05 (for a quantity
the data inform: an extrapolation is prior in any case), prior and data pull the quantity
different ways (Kallioinen et al. 2024): the quantity is flagged
(``conflict``), carries a caveat in words, and its statement leads with what the data fix
(the direction: a probability) rather than its size, which the prior then sets.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
from scipy.special import logit

CONTRACTION_PRIOR = 0.1
CONTRACTION_DATA = 0.5
SENSITIVITY = 0.05
LABELS = ("data", "weak", "prior")


def _unbounded(values: np.ndarray, scale: str) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if scale == "percent":
            return logit(np.clip(v / 100, 1e-12, 1 - 1e-12))
        if scale in ("odds ratio", "ratio of means"):
            return np.log(v)
        if scale == "percent reduction":
            return np.log(np.clip(1 - v / 100, 1e-300, None))
        if scale == "correlation":
            return np.arctanh(np.clip(v, -1 + 1e-12, 1 - 1e-12))
    return v


def contraction(posterior: np.ndarray, prior: np.ndarray | None, scale: str) -> float:
    if prior is None or len(prior) < 2:
        return float("nan")
    post, pri = _unbounded(posterior, scale), _unbounded(prior, scale)
    post, pri = post[np.isfinite(post)], pri[np.isfinite(pri)]
    var_prior = float(np.var(pri))
    if var_prior <= 0 or post.size < 2:
        return float("nan")
    return float(1.0 - np.var(post) / var_prior)


def _psens(idata: az.InferenceData, component: str) -> dict:
    """Power-scaling sensitivity of every posterior variable (NaN where it cannot be computed)."""
    group = "log_prior" if component == "prior" else "log_likelihood"
    if group not in idata.groups():
        return {}
    names = [v for v in idata.posterior.data_vars if idata.posterior[v].dtype.kind == "f"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = az.psens(idata, component=component, var_names=names)
    except (ValueError, KeyError, TypeError, IndexError):
        return {}
    # one variable comes back as a DataArray, several as a Dataset
    return dict(out.data_vars) if hasattr(out, "data_vars") else {names[0]: out}


def label(contraction_: float, prior_sens: float, like_sens: float, studies: int | None, extrapolation: bool) -> str:
    if extrapolation or studies == 0 or not np.isfinite(contraction_) or contraction_ < CONTRACTION_PRIOR:
        return "prior"
    if contraction_ >= CONTRACTION_DATA and (not np.isfinite(prior_sens) or prior_sens < SENSITIVITY):
        return "data"
    return "weak"


def conflict(prior_sens: float, like_sens: float) -> bool:
    """Prior-data conflict: both power-scaling sensitivities at or above the threshold."""
    return bool(np.isfinite(prior_sens) and np.isfinite(like_sens) and prior_sens >= SENSITIVITY
                and like_sens >= SENSITIVITY)


#: how the caveat of a quantity in prior-data conflict begins
CONFLICT = "prior-data conflict"


def conflict_caveat(row: dict) -> str:
    """The caveat of a quantity in prior-data conflict, in words."""
    return (f"{CONFLICT}: the prior and the data pull it different ways (prior sensitivity "
            f"{row['prior_sensitivity']:.2f}, likelihood sensitivity {row['likelihood_sensitivity']:.2f}, both "
            f"at or above {SENSITIVITY:g}), so its size depends on the prior")


def _at(sens: dict, source) -> float:
    if source is None or source[0] not in sens:
        return float("nan")
    var, sel = source
    try:
        return float(sens[var].sel(**sel).values) if sel else float(sens[var].values)
    except (KeyError, ValueError, TypeError):
        return float("nan")


def _psens_of(idata: az.InferenceData, draws: np.ndarray, component: str) -> float:
    """Power-scaling sensitivity of a quantity computed from the draws (no posterior variable
    holds it, e.g. a patient-weighted mean of rows): the same diagnostic on those draws."""
    import xarray as xr

    group = "log_prior" if component == "prior" else "log_likelihood"
    post = idata.posterior
    shape = (post.sizes.get("chain", 0), post.sizes.get("draw", 0))
    if group not in idata.groups() or np.size(draws) != shape[0] * shape[1] or shape[0] == 0:
        return float("nan")
    one = az.InferenceData(posterior=xr.Dataset({"q": (("chain", "draw"), np.asarray(draws, float).reshape(shape))}),
                           **{group: idata[group]})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = az.psens(one, component=component, var_names=["q"])
            return float((out["q"] if "q" in getattr(out, "data_vars", {}) else out).values)
    except (ValueError, KeyError, TypeError, IndexError):
        return float("nan")


def support(idata: az.InferenceData, quantities: list) -> list[dict]:
    """The support measures and label of each quantity (in order). A quantity built from
    others (``rests_on``: their ids) is labelled no stronger than the weakest of them, and
    ``limited_by`` names the kinds of those that are weaker than its own measures say."""
    prior_s, like_s = _psens(idata, "prior"), _psens(idata, "likelihood")
    out = []
    for q in quantities:
        c = contraction(q.draws, q.prior, q.scale)
        if q.source is None:
            ps, ls = _psens_of(idata, q.draws, "prior"), _psens_of(idata, q.draws, "likelihood")
        else:
            ps, ls = _at(prior_s, q.source), _at(like_s, q.source)
        out.append({"support": label(c, ps, ls, q.studies_informing, q.extrapolation), "contraction": c,
                    "prior_sensitivity": ps, "likelihood_sensitivity": ls,
                    "studies_informing": q.studies_informing, "patients_informing": q.patients_informing,
                    "extrapolation": q.extrapolation, "limited_by": "",
                    "conflict": conflict(ps, ls) and not q.extrapolation and bool(q.studies_informing)})
    own = {q.id: row["support"] for q, row in zip(quantities, out)}
    for q, row in zip(quantities, out):
        parts = [(rid, own[rid]) for rid in q.rests_on if rid in own]
        weaker = [(rid, s) for rid, s in parts if LABELS.index(s) > LABELS.index(row["support"])]
        if weaker:
            row["support"] = max((s for _, s in weaker), key=LABELS.index)
            row["limited_by"] = ", ".join(f"{rid.kind} ({s})" for rid, s in weaker)
    return out


def rests_note(q, names: dict[str, str] | None = None) -> str:
    """Why a quantity is less supported than its own measures say: e.g. ``weak: it rests on
    the between-study SD (weak)``; empty when nothing it rests on limits it. ``names`` words
    the quantity keys (tau is the between-study SD)."""
    limited = q.support.get("limited_by", "") if q.support else ""
    if not limited:
        return ""
    words = {"tau": "the between-study SD", **(names or {})}
    parts = []
    for part in limited.split(", "):
        key, _, rest = part.partition(" (")
        parts.append(f"{words.get(key, key)} ({rest}")
    return f"{q.label_support}: it rests on {', '.join(parts)}"


def with_support(frame: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """``frame`` with the support columns appended (``rows`` in the frame's row order)."""
    extra = pd.DataFrame(rows, index=frame.index)
    for col in ("studies_informing", "patients_informing"):
        if col in extra:
            extra[col] = extra[col].astype("Int64")
    return pd.concat([frame, extra], axis=1)
