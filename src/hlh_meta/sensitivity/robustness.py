"""Judging whether a conclusion holds across sensitivity variants.

A variant *moves* a quantity when its posterior median lies at least :data:`SHIFT_SD`
primary posterior SDs from the primary median, and *flips* a clinical conclusion when the
probability of the conclusion (mortality below 20%; a ratio below 1) changes by at least
:data:`FLIP_PROBABILITY` or crosses 0.5. A quantity is robust when no variant whose fit
passed the diagnostics gate moves it or flips it. Wide intervals do not make a conclusion
robust: the rule measures movement against the posterior spread, not containment in the
95% interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SHIFT_SD = 0.5
FLIP_PROBABILITY = 0.1
#: the probability of a clinical conclusion each quantity scale is judged by
CONCLUSION = {"P(<20%)": "P(mortality < 20%)", "P(<1)": "P(ratio < 1)"}


def _flip(p0: float, p1: float) -> bool:
    if pd.isna(p0) or pd.isna(p1):
        return False
    return abs(p1 - p0) >= FLIP_PROBABILITY or (p0 - 0.5) * (p1 - 0.5) < 0


def robustness(sens: pd.DataFrame) -> pd.DataFrame:
    """Per quantity of the primary analysis: robust or not, the variants that move it or
    flip its conclusion, and the most influential variant; one sentence each."""
    rows = []
    primary = sens[sens["variant"] == "primary"]
    others = sens[(sens["variant"] != "primary") & sens["median"].notna()]
    for _, p in primary.iterrows():
        same = others[(others["key"] == p["key"]) & (others["label"].fillna("") == ("" if pd.isna(p["label"]) else p["label"]))]
        if same.empty or pd.isna(p["sd"]):
            continue
        shift = (same["median"] - p["median"]).abs() / p["sd"] if p["sd"] > 0 else same["median"] * 0.0
        column = next((c for c in CONCLUSION if pd.notna(p.get(c))), None)
        flips = same[column].apply(lambda v: _flip(p[column], v)) if column else pd.Series(False, index=same.index)
        judged = same["diagnostics_passed"].astype(bool)
        moved = same[(shift >= SHIFT_SD) & judged]
        flipped = same[flips & judged]
        worst = same.loc[shift.idxmax()]
        robust = moved.empty and flipped.empty
        what = f"{p['quantity']}{' — ' + p['label'] if p['label'] else ''}"
        sentence = (f"{what}: {'robust' if robust else 'NOT robust'} — primary median {p['median']:.2f} "
                    f"(posterior SD {p['sd']:.2f}); across {len(same)} variants the median moves most under "
                    f"'{worst['variant']}' (to {worst['median']:.2f}, {shift.max():.1f} SD)")
        if not moved.empty:
            sentence += f"; {len(moved)} variant(s) move it by {SHIFT_SD:g} SD or more"
        if not flipped.empty:
            sentence += (f"; {CONCLUSION[column]} changes by {FLIP_PROBABILITY:g} or more, or crosses 0.5, under "
                         f"{len(flipped)} variant(s) (e.g. '{flipped.iloc[0]['variant']}')")
        unjudged = int((~judged).sum())
        if unjudged:
            sentence += f"; {unjudged} variant(s) failed the diagnostics gate and are not judged"
        rows.append({"quantity": p["quantity"], "key": p["key"], "label": p["label"], "primary_median": p["median"],
                     "primary_sd": p["sd"], "robust": robust, "most_influential_variant": worst["variant"],
                     "its_median": worst["median"], "largest_shift_sd": float(np.round(shift.max(), 3)),
                     "variants_moving": len(moved), "variants_flipping": len(flipped), "sentence": sentence + "."})
    return pd.DataFrame(rows)
