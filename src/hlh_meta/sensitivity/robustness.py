"""Judging whether a conclusion holds across sensitivity variants.

Each quantity is judged on its unbounded scale (logit of a percentage, log of a ratio or
of an SD, log of a percent reduction's ratio), where a posterior SD measures the same
thing at 5% mortality as at 50% and an odds ratio of 40 is not a thousand SDs from one of 6.
A variant *moves* a quantity when its posterior median lies at least :data:`SHIFT_SD`
primary posterior SDs from the primary median, or when its 95% interval is at least
:data:`WIDTH_RATIO` times as wide or as narrow; it *flips* a clinical conclusion when the
probability of the conclusion (mortality below 20%; a ratio below 1) changes by at least
:data:`FLIP_PROBABILITY` or crosses 0.5.

The verdict on a quantity:

- ``not assessable``: its primary support is ``prior`` (the data do not inform it, so
  there is no conclusion to be robust);
- ``NOT robust``: a variant of an analysis choice (priors, partitions, attribution, ...)
  whose fit passed the diagnostics gate moves it or flips it;
- ``undetermined``: none of those moves it, but a variant failed the diagnostics gate (it
  is named: its result cannot be judged);
- ``robust``: otherwise.

Influential studies (the ``leave_one_out`` family) are reported apart from the analysis
choices: leaving out a study is a question about the evidence, not about the analysis. They
enter the verdict only when no analysis-choice variant was run.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..analyses.support import _unbounded

SHIFT_SD = 0.5
WIDTH_RATIO = 1.5
FLIP_PROBABILITY = 0.1
#: the probability of a clinical conclusion each quantity scale is judged by
CONCLUSION = {"P(<20%)": "P(mortality < 20%)", "P(<1)": "P(ratio < 1)"}
INFLUENCE = "leave_one_out"
#: the unbounded scale each quantity scale is judged on, in words
SCALE_WORDS = {"percent": "logit", "odds ratio": "log", "ratio of means": "log", "percent reduction": "log ratio",
               "correlation": "Fisher z"}


def unbounded_summary(draws: np.ndarray, scale: str) -> dict[str, float]:
    """Median, SD and 95% interval width of draws on the quantity's unbounded scale."""
    d = np.asarray(draws, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.log(d) if scale.startswith("SD") else _unbounded(d, scale)
    u = u[np.isfinite(u)]
    if u.size < 2:
        return {"unbounded_median": np.nan, "unbounded_sd": np.nan, "unbounded_width": np.nan}
    lo, mid, hi = np.quantile(u, [0.025, 0.5, 0.975])
    return {"unbounded_median": float(mid), "unbounded_sd": float(u.std(ddof=1)), "unbounded_width": float(hi - lo)}


def _flip(p0: float, p1: float) -> bool:
    if pd.isna(p0) or pd.isna(p1):
        return False
    return abs(p1 - p0) >= FLIP_PROBABILITY or (p0 - 0.5) * (p1 - 0.5) < 0


def _measures(p: pd.Series, same: pd.DataFrame) -> tuple[pd.Series, pd.Series, str]:
    """Each variant's shift of the median in primary SDs and its interval width ratio, on the
    unbounded scale where the table has it (else as the quantity is reported)."""
    shift = (same["median"] - p["median"]).abs() / p["sd"] if p["sd"] > 0 else same["median"] * 0.0
    width = p["q97.5"] - p["q2.5"]
    ratio = (same["q97.5"] - same["q2.5"]) / width if width > 0 else same["median"] * np.nan
    cols = ("unbounded_median", "unbounded_sd", "unbounded_width")
    if all(c in same for c in cols) and all(pd.notna(p.get(c)) for c in cols) and p["unbounded_sd"] > 0:
        # a variant with no draws on the unbounded scale (tau fixed at 0) keeps the reported-scale measures
        shift = ((same["unbounded_median"] - p["unbounded_median"]).abs() / p["unbounded_sd"]).fillna(shift)
        if p["unbounded_width"] > 0:
            ratio = (same["unbounded_width"] / p["unbounded_width"]).fillna(ratio)
        return shift, ratio, SCALE_WORDS.get(str(p.get("scale", "")), "log" if str(p.get("scale", "")).startswith("SD")
                                             else "reported")
    return shift, ratio, "reported"


def _moves(shift: pd.Series, ratio: pd.Series) -> pd.Series:
    wide = ratio.notna() & ((ratio >= WIDTH_RATIO) | (ratio <= 1 / WIDTH_RATIO))
    return (shift >= SHIFT_SD) | wide


def robustness(sens: pd.DataFrame, support: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Judge whether each quantity of the primary analysis holds across the variants.

    Per quantity of the primary analysis: its verdict, the variants that move it or flip its
    conclusion, the most influential analysis choice, the influential studies and the variants
    left undetermined; one sentence each. The rules are those of this module's description.
    A variant's row is the same quantity as a primary row when their ids (column ``id``)
    are equal.

    Parameters
    ----------
    sens : pandas.DataFrame
        The table :func:`run_sensitivity` returns (with its column ``id``).
    support : mapping of str to str, optional
        The primary support label of each quantity by its id (``str`` of its
        :class:`~hlh_meta.analyses.QuantityId`); a quantity whose support is ``"prior"``
        is ``not assessable``.

    Returns
    -------
    pandas.DataFrame
        One row per quantity of the primary analysis that some variant estimated: its id,
        the verdict (``robust``, ``NOT robust``, ``undetermined``, ``not assessable``), the
        most influential variant and its shift, the counts of variants moving or flipping
        it, the variants undetermined and the influential studies, and a sentence.
    """
    rows = []
    known = {str(k): v for k, v in (support or {}).items()}
    primary = sens[sens["variant"] == "primary"]
    others = sens[(sens["variant"] != "primary") & sens["median"].notna()]
    for _, p in primary.iterrows():
        label = "" if pd.isna(p["label"]) else p["label"]
        same = others[others["id"] == p["id"]]
        if same.empty or pd.isna(p["sd"]):
            continue
        shift, ratio, scale = _measures(p, same)
        column = next((c for c in CONCLUSION if pd.notna(p.get(c))), None)
        flips = same[column].apply(lambda v: _flip(p[column], v)) if column else pd.Series(False, index=same.index)
        passed = same["diagnostics_passed"].fillna(False).astype(bool)
        loo = same["family"] == INFLUENCE
        choice = ~loo if (~loo).any() else loo          # analysis choices; studies when no choice was varied
        moved = same[_moves(shift, ratio) & passed & choice]
        flipped = same[flips & passed & choice]
        failed = same[~passed & choice]
        influential = same[_moves(shift, ratio) & passed & loo] if (~loo).any() else same.iloc[0:0]
        judged = shift[choice].dropna()
        worst = same.loc[judged.idxmax()] if len(judged) else same.loc[shift.fillna(-np.inf).idxmax()]
        sup = known.get(p["id"], "")
        if sup == "prior":
            verdict = "not assessable"
        elif not moved.empty or not flipped.empty:
            verdict = "NOT robust"
        elif not failed.empty:
            verdict = "undetermined"
        else:
            verdict = "robust"
        what = f"{p['quantity']}{' — ' + label if label else ''}"
        kind = "analysis-choice " if (~loo).any() else ""
        sentence = (f"{what}: {verdict} — primary median {p['median']:.2f} (95% CrI {p['q2.5']:.2f} to "
                    f"{p['q97.5']:.2f}); across {int(choice.sum())} {kind}variants the median moves most under "
                    f"'{worst['variant']}' (to {worst['median']:.2f}, {shift[worst.name]:.1f} SD on the {scale} scale)")
        if sup == "prior":
            sentence += "; its support is prior, so there is no conclusion to judge"
        if not moved.empty:
            sentence += (f"; {len(moved)} variant(s) move it by {SHIFT_SD:g} SD or more or change its interval "
                         f"width {WIDTH_RATIO:g}-fold")
        if not flipped.empty:
            sentence += (f"; {CONCLUSION[column]} changes by {FLIP_PROBABILITY:g} or more, or crosses 0.5, under "  # type: ignore[index]
                         f"{len(flipped)} variant(s) (e.g. '{flipped.iloc[0]['variant']}')")
        if not failed.empty:
            sentence += (f"; undetermined under {', '.join(repr(v) for v in failed['variant'])} (failed the "
                         "diagnostics gate)")
        if not influential.empty:
            sentence += ("; influential studies: " + ", ".join(
                f"'{r['variant']}' moves it {shift[i]:.1f} SD" for i, r in influential.iterrows()))
        rows.append({"id": p["id"], "quantity": p["quantity"], "key": p["key"], "label": p["label"],
                     "primary_median": p["median"], "primary_sd": p["sd"], "verdict": verdict, "robust": verdict == "robust",
                     "most_influential_variant": worst["variant"], "its_median": worst["median"],
                     "largest_shift_sd": float(np.round(judged.max() if len(judged) else shift.max(), 3)),
                     "judged_on": scale, "variants_moving": len(moved), "variants_flipping": len(flipped),
                     "undetermined_by": "; ".join(failed["variant"]),
                     "influential_studies": "; ".join(influential["variant"]), "sentence": sentence + "."})
    return pd.DataFrame(rows)
