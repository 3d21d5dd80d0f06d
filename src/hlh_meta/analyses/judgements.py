"""The judgements of the tables in an analysis: the readings a spec chooses, and the
sensitivity family "judgements" (one variant per alternative reading of judgements.csv).

A spec chooses readings with ``[data] judgements = { <judgement_id> = "<reading>" }``; each
analysis type applies them to the Dataset before it builds its frame (:func:`judged`). The
family runs every reading the spec does not already use, one at a time; a reading whose cells
do not change the rows the analysis uses (a study it leaves out, a partition it does not
use) is kept as a row saying so, not fitted.
"""

from __future__ import annotations

import pandas as pd

from ..data import Dataset
from ..data.judgements import readings, with_readings
from ..errors import InputError
from ..spec import Spec
from .base import Variant


def judged(ds: Dataset, spec: Spec) -> Dataset:
    """The Dataset under the readings ``[data] judgements`` chooses (as entered when none)."""
    chosen = spec.get("data", "judgements")
    bad = [k for k, v in chosen.items() if not isinstance(v, str)]
    if bad:
        raise spec.error(f"data.judgements.{bad[0]}", "must name a reading (a string)")
    try:
        return with_readings(ds, chosen)
    except KeyError as exc:
        raise spec.error("data.judgements", exc.args[0]) from None


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return a.shape == b.shape and a.index.equals(b.index) and a.astype(str).equals(b.astype(str))


def _why_out(left: pd.DataFrame, changed: pd.DataFrame) -> str:
    """Why the rows a reading changes stay out of the analysis (their excluded_because)."""
    common = left.index.intersection(changed.index)
    differs = [r for r in common if not _same(left.loc[[r]], changed.loc[[r]])]
    why = left.loc[differs, "excluded_because"].astype(str).unique() if "excluded_because" in left else []
    return "the judged rows do not enter this analysis" + (f" ({'; '.join(why)})" if len(why) else "")


def judgements(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    """One variant per alternative reading of judgements.csv that the spec does not use. A
    reading that changes no row of the analysis (used or left out: a judgement in another
    table) is not its variant; one that changes only rows left out is listed as not run."""
    chosen = spec.get("data", "judgements")
    _, left = analysis.frame(ds, spec)
    out = []
    for jid, reading in readings(ds.judgements):
        if chosen.get(jid) == reading:
            continue
        patch = {"data": {"judgements": {**chosen, jid: reading}}}
        name = f"judgement {jid}: {reading}"
        try:
            changed, changed_left = analysis.frame(ds, spec.patched(patch))
        except InputError:                   # planned, and reported there as not estimable
            out.append(Variant(name, "judgements", patch=patch))
            continue
        if not _same(changed, used):
            out.append(Variant(name, "judgements", patch=patch))
        elif not _same(changed_left, left):
            out.append(Variant(name, "judgements", skip=_why_out(left, changed_left)))
    return out
