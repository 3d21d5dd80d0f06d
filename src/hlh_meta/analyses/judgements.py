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


def correlation_ends(spec: Spec) -> list[float]:
    """The ends of ``[data] correlation_range``: the assumed pre/post correlation is a judgement
    (a row estimates it only where it prints both SDs and an exact p-value), and these are its
    alternative readings."""
    ends = spec.get("data", "correlation_range")
    if (len(ends) != 2 or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and -1 <= r <= 1
                                  for r in ends) or ends[0] >= ends[1]):
        raise spec.error("data.correlation_range", f"must be two numbers in [-1, 1], low then high, got {ends!r}")
    return [float(r) for r in ends if float(r) != spec.get("data", "correlation")]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return a.shape == b.shape and a.index.equals(b.index) and a.astype(str).equals(b.astype(str))


def judgements(analysis, ds: Dataset, spec: Spec, used: pd.DataFrame) -> list[Variant]:
    """One variant per alternative reading of judgements.csv that the spec does not use."""
    chosen = spec.get("data", "judgements")
    out = []
    for jid, reading in readings(ds.judgements):
        if chosen.get(jid) == reading:
            continue
        patch = {"data": {"judgements": {**chosen, jid: reading}}}
        name = f"judgement {jid}: {reading}"
        try:
            changed, _ = analysis.frame(ds, spec.patched(patch))
        except InputError:
            changed = None                   # planned, and reported there as not estimable
        if changed is not None and _same(changed, used):
            out.append(Variant(name, "judgements", skip="the judged rows do not enter this analysis"))
        else:
            out.append(Variant(name, "judgements", patch=patch))
    return out
