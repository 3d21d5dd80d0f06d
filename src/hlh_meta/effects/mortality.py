"""Mortality strata from the extraction table: counts as reported or reconstructed.

Every row of ``mortality.csv`` becomes one resolved stratum with ``deaths`` and ``n``
(the default reconstruction), ``alternatives`` (other counts consistent with the
source, for sensitivity analyses), a ``derivation`` saying how they were obtained, and
``usable`` with the ``reason`` when a stratum cannot enter a likelihood.
"""

from __future__ import annotations

import math

import pandas as pd

from ..data import Dataset
from ..errors import DataError, Problem
from . import count_pairs_from_percentage, counts_from_percentage

COLUMNS = ["study_id", "partition", "stratum", "trigger", "age_group", "deaths", "n", "usable", "reason",
           "derivation", "alternatives", "deaths_alternative", "row"]


def _verb(outcome: str) -> str:
    return "died" if outcome == "death" else "survived"


def _deaths(k: int, n: int, outcome: str) -> int:
    return k if outcome == "death" else n - k


def _from_percentage(rec: pd.Series, n_patients: int) -> dict:
    pct, dec, outcome = float(rec["percent"]), int(rec["percent_decimals"]), rec["percent_outcome"]
    if pd.notna(rec["n"]):
        n = int(rec["n"])
        ks = counts_from_percentage(pct, n, dec)
        if not ks:
            raise DataError(Problem("mortality.csv", int(rec.name), "percent",
                                    f"no whole number of {n} patients gives {pct:g}%"))
        best = min(ks, key=lambda k: abs(100 * k / n - pct))
        return {"deaths": _deaths(best, n, outcome), "n": n, "usable": True, "reason": "",
                "derivation": f"{pct:g}% of {n} {_verb(outcome)}",
                "alternatives": [(_deaths(k, n, outcome), n) for k in ks if k != best]}
    if pd.isna(rec["share_percent"]):
        return {"usable": False, "reason": "stratum size not reported and not bounded by a reported share",
                "derivation": f"{pct:g}% {_verb(outcome)} of an unknown number"}
    share = float(rec["share_percent"])
    n_max = math.floor((share + 0.5) / 100 * n_patients)
    pairs = count_pairs_from_percentage(pct, dec, n_max=n_max)
    if not pairs:
        raise DataError(Problem("mortality.csv", int(rec.name), "percent",
                                f"no stratum of at most {n_max} patients gives {pct:g}%"))
    target = share / 100 * n_patients
    best = min(pairs, key=lambda kn: (abs(kn[1] - target), -kn[1]))
    return {"deaths": _deaths(best[0], best[1], outcome), "n": best[1], "usable": True, "reason": "",
            "derivation": (f"{pct:g}% {_verb(outcome)} of an unreported n; n <= {n_max} from the {share:g}% share of "
                           f"{n_patients}; default n closest to {target:.1f}"),
            "alternatives": [(_deaths(k, m, outcome), m) for k, m in pairs if (k, m) != best]}


def resolve_mortality(ds: Dataset, *, attribution: str = "primary") -> pd.DataFrame:
    """One resolved stratum per row of ``ds.mortality`` (index: the CSV row).

    ``attribution="alternative"`` uses ``deaths_alternative`` where a row gives one.
    """
    if attribution not in ("primary", "alternative"):
        raise ValueError("attribution must be 'primary' or 'alternative'")
    n_of = ds.studies.set_index("study_id")["n_patients"]
    out: dict[int, dict] = {}
    mort = ds.mortality
    for row, rec in mort.iterrows():
        base = {c: rec[c] for c in ("study_id", "partition", "stratum", "trigger", "age_group")}
        method = rec["count_method"]
        if method == "reported":
            res = {"deaths": int(rec["deaths"]), "n": int(rec["n"]), "usable": True, "reason": "",
                   "derivation": "reported count", "alternatives": []}
        elif method == "from_percentage":
            res = _from_percentage(rec, int(n_of[rec["study_id"]]))
        elif method == "not_reported":
            res = {"usable": False, "reason": "deaths not reported", "derivation": "not reported"}
        else:
            res = {"derivation": "remainder"}  # filled in below, once the other strata are known
        alt = rec["deaths_alternative"]
        if attribution == "alternative" and pd.notna(alt):
            res["derivation"] += f"; alternative attribution: {int(alt)} deaths instead of {res['deaths']}"
            res["deaths"] = int(alt)
        out[row] = {**base, "deaths": None, "n": None, "usable": False, "reason": "", "alternatives": [],
                    "deaths_alternative": None if pd.isna(alt) else int(alt), "row": int(row), **res}
    for row, rec in mort[mort["count_method"] == "remainder"].iterrows():
        same = mort[(mort["study_id"] == rec["study_id"]) & (mort["partition"] == rec["partition"]) & (mort.index != row)]
        overall = out[mort[(mort["study_id"] == rec["study_id"]) & (mort["partition"] == "overall")].index[0]]
        parts = [out[r] for r in same.index]
        if not overall["usable"] or not all(p["usable"] for p in parts):
            out[row].update(usable=False, reason="remainder needs the overall count and every other stratum")
            continue
        n = int(n_of[rec["study_id"]]) - sum(p["n"] for p in parts)
        deaths = overall["deaths"] - sum(p["deaths"] for p in parts)
        if n <= 0 or not 0 <= deaths <= n:
            raise DataError(Problem("mortality.csv", int(row), "count_method",
                                    f"remainder gives {deaths} deaths of {n} patients: the strata do not fit the overall count"))
        out[row].update(deaths=deaths, n=n, usable=True,
                        derivation=f"overall {overall['deaths']}/{n_of[rec['study_id']]} minus the other strata of '{rec['partition']}'")
    frame = pd.DataFrame.from_dict(out, orient="index")[COLUMNS]
    frame[["deaths", "n"]] = frame[["deaths", "n"]].astype("Int64")
    return frame
