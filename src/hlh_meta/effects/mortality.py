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
from ..data.judgements import judged_rows
from ..errors import DataError, InputError, Problem, plain
from . import count_pairs_from_percentage, counts_from_percentage

COLUMNS = ["study_id", "partition", "stratum", "trigger", "age_group", "trigger_excluded", "trigger_known", "deaths", "n", "usable", "reason",
           "derivation", "alternatives", "deaths_alternative", "judgements", "row"]
ATTRIBUTIONS = ("primary", "alternative")
M = "mortality.csv"
#: where an unreported count is missing from, by what of the source was read (studies.csv ``read``)
_NOT_IN = {"abstract": " in the abstract", "partial_full_text": " in the part of the full text read"}


class _RowProblem(Exception):
    """A row that cannot be resolved; collected, then raised together as a DataError."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


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
            raise _RowProblem(Problem(M, int(rec.name), "percent",
                                      f"no whole number of {n} patients gives {pct:g}% (printed with {dec} "
                                      f"decimal{'s' if dec != 1 else ''}): check percent, percent_decimals and n"))
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
        raise _RowProblem(Problem(M, int(rec.name), "percent",
                                  f"no stratum of at most {n_max} patients (the {share:g}% share of {n_patients}) "
                                  f"gives {pct:g}% (printed with {dec} decimal{'s' if dec != 1 else ''})"))
    target = share / 100 * n_patients
    pick = min(pairs, key=lambda kn: (abs(kn[1] - target), -kn[1]))
    return {"deaths": _deaths(pick[0], pick[1], outcome), "n": pick[1], "usable": True, "reason": "",
            "derivation": (f"{pct:g}% {_verb(outcome)} of an unreported n; n <= {n_max} from the {share:g}% share of "
                           f"{n_patients}; default n closest to {target:.1f}"),
            "alternatives": [(_deaths(k, m, outcome), m) for k, m in pairs if (k, m) != pick]}


def _alternative(rec: pd.Series, res: dict, alt: int) -> None:
    """Replace the resolved deaths by ``deaths_alternative`` (the alternative attribution)."""
    row, method = int(rec.name), rec["count_method"]
    if method in ("not_reported", "remainder"):
        why = ("there is no count for it to replace" if method == "not_reported" else
               "a remainder's deaths are derived from the overall row and the other strata; give the "
               "alternative count on those rows")
        raise _RowProblem(Problem(M, row, "deaths_alternative", f"must be empty when count_method is '{method}': {why}"))
    if not res.get("usable"):
        raise _RowProblem(Problem(M, row, "deaths_alternative", f"has no stratum size to go with it ({res['reason']})"))
    if alt > res["n"]:
        raise _RowProblem(Problem(M, row, "deaths_alternative",
                                  f"deaths_alternative ({plain(alt)}) exceeds the stratum's n ({plain(res['n'])}, "
                                  f"{res['derivation']})"))
    res["derivation"] += f"; alternative attribution: {alt} deaths instead of {res['deaths']}"
    res["deaths"] = alt


def resolve_mortality(ds: Dataset, *, attribution: str = "primary") -> pd.DataFrame:
    """One resolved stratum per row of ``ds.mortality`` (index: the CSV row).

    ``attribution="alternative"`` uses ``deaths_alternative`` where a row gives one.

    Raises :class:`~hlh_meta.errors.DataError` listing every row that cannot be resolved
    (a percentage no whole count gives, a remainder that does not fit the overall count,
    an alternative count without a count to replace), each with file, row and column.
    """
    if attribution not in ATTRIBUTIONS:
        raise InputError(f"attribution must be one of {', '.join(ATTRIBUTIONS)}, got {plain(attribution)}")
    n_of = ds.studies.drop_duplicates("study_id").set_index("study_id")["n_patients"]
    out: dict[int, dict] = {}
    problems: list[Problem] = []
    failed: set[int] = set()
    mort = ds.mortality
    for row, rec in mort.iterrows():
        base = {c: rec.get(c) for c in ("study_id", "partition", "stratum", "trigger", "age_group", "trigger_excluded",
                                         "trigger_known")}
        method = rec["count_method"]
        try:
            if method in ("reported", "matched"):
                how = ("reported count" if method == "reported" else
                       "counted by matching the source's lists (patients by diagnosis, deaths by diagnosis)")
                res = {"deaths": int(rec["deaths"]), "n": int(rec["n"]), "usable": True, "reason": "",
                       "derivation": how, "alternatives": []}
            elif method == "from_percentage":
                res = _from_percentage(rec, int(n_of[rec["study_id"]]))
            elif method == "not_reported":
                read = ds.studies.set_index("study_id")["read"].get(rec["study_id"]) if "read" in ds.studies else None
                where = _NOT_IN.get(read, "")  # type: ignore[arg-type]
                res = {"usable": False, "reason": f"deaths not reported{where}", "derivation": "not reported",
                       **({"n": int(rec["n"])} if pd.notna(rec["n"]) else {})}      # its size, where printed
            else:
                res = {"derivation": "remainder"}  # filled in below, once the other strata are known
            alt = rec["deaths_alternative"]
            if attribution == "alternative" and pd.notna(alt):
                _alternative(rec, res, int(alt))
        except _RowProblem as exc:
            problems.append(exc.problem)
            failed.add(int(row))
            res = {"usable": False, "reason": exc.problem.message, "derivation": ""}
            alt = rec["deaths_alternative"]
        out[row] = {**base, "deaths": None, "n": None, "usable": False, "reason": "", "alternatives": [],
                    "deaths_alternative": None if pd.isna(alt) else int(alt), "row": int(row), **res}
    for row, rec in mort[mort["count_method"] == "remainder"].iterrows():
        if int(row) in failed:
            continue
        same = mort[(mort["study_id"] == rec["study_id"]) & (mort["partition"] == rec["partition"]) & (mort.index != row)]
        overall_rows = mort.index[(mort["study_id"] == rec["study_id"]) & (mort["partition"] == "overall")]
        if len(overall_rows) == 0:
            problems.append(Problem(M, int(row), "count_method",
                                    "a remainder stratum needs an 'overall' row of the same study"))
            continue
        overall = out[overall_rows[0]]
        parts = [out[r] for r in same.index]
        if int(overall_rows[0]) in failed or failed & {int(r) for r in same.index}:
            out[row].update(usable=False, reason="remainder needs the overall count and every other stratum, "
                                                 "and one of them could not be resolved")
            continue
        if not overall["usable"] or not all(p["usable"] for p in parts):
            out[row].update(usable=False, reason="remainder needs the overall count and every other stratum")
            continue
        n = int(n_of[rec["study_id"]]) - sum(p["n"] for p in parts)
        deaths = overall["deaths"] - sum(p["deaths"] for p in parts)
        if n <= 0 or not 0 <= deaths <= n:
            rows = ", ".join(str(int(r)) for r in [overall_rows[0], *same.index])
            under = " with the alternative death attribution" if attribution == "alternative" else ""
            problems.append(Problem(M, int(row), "count_method",
                                    f"remainder gives {plain(deaths)} deaths of {plain(n)} patients{under}: the strata "
                                    f"(rows {rows}) do not fit the overall count of {plain(overall['deaths'])} deaths "
                                    f"of {plain(n_of[rec['study_id']])} patients"))
            continue
        out[row].update(deaths=deaths, n=n, usable=True,
                        derivation=f"overall {overall['deaths']}/{n_of[rec['study_id']]} minus the other strata of '{rec['partition']}'")
    if problems:
        raise DataError(sorted(problems, key=lambda p: (p.row or 0)))
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame["judgements"] = judged_rows(ds, M)
    frame = frame.reindex(columns=COLUMNS)
    frame[["deaths", "n"]] = frame[["deaths", "n"]].astype("Int64")
    return frame
