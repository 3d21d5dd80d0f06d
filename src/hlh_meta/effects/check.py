"""Every rule the fit applies to the extraction tables, run without fitting.

:func:`hlh_meta.data.read_dataset` checks each cell and the relations between rows and
tables; resolving the rows into the counts and effect sizes a model takes adds the rules
that need the arithmetic of :mod:`hlh_meta.effects`: a percentage that some whole count
of ``n`` must give, a remainder that fits the overall count, an alternative death count
with a count to replace, a standard error above 0, a p-value some SD fits. The fit raises
these one resolution at a time; :func:`check_dataset` collects them for every choice a
spec or a sensitivity variant can make (both death attributions, both ways of handling a
missing dispersion, the pre/post correlations) and for every alternative reading of
``judgements.csv``, so ``hlh-meta data check`` reports them all, each with file, row and column.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data import Dataset
from ..data.judgements import J, readings, with_readings
from ..errors import DataError, Problem
from .biomarkers import MISSING_DISPERSION, resolve_biomarkers
from .mortality import ATTRIBUTIONS, resolve_mortality

#: pre/post correlations checked by default: the primary analyses' 0.5 and the ends of the
#: sensitivity's default range (``[data] correlation_range``)
CORRELATIONS = (0.5, 0.3, 0.7)


def check_dataset(ds: Dataset, *, correlations: Sequence[float] = CORRELATIONS) -> list[Problem]:
    """Problems that resolving ``ds`` for a fit would raise, under every attribution,
    missing-dispersion choice and correlation in ``correlations``; each once, in table
    and row order (a cell once, as the first choice that fails on it
    words it). An empty list: every resolution succeeds."""
    found: list[Problem] = []
    seen: set[tuple] = set()         # a cell is reported once, under the first choice that trips on it
    runs = [lambda a=a: resolve_mortality(ds, attribution=a) for a in ATTRIBUTIONS]
    runs += [lambda r=r, m=m: resolve_biomarkers(ds, r=r, missing_dispersion=m)  # type: ignore[misc]
             for r in correlations for m in MISSING_DISPERSION]
    for run in runs:
        try:
            run()
        except DataError as exc:
            found += [p for p in exc.problems if (p.file, p.row, p.column) not in seen]
            seen |= {(p.file, p.row, p.column) for p in exc.problems}
    order = {"studies.csv": 0, "mortality.csv": 1, "biomarkers.csv": 2, "arms.csv": 3, J: 4}
    if not found:
        found = _readings(ds)
    return sorted(found, key=lambda p: (order.get(p.file, 5), p.row or 0))


def _readings(ds: Dataset) -> list[Problem]:
    """Problems of resolving the tables under each alternative reading of judgements.csv,
    each named by the reading's first row in judgements.csv."""
    found = []
    judged = ds.judgements
    for jid, reading in readings(judged):
        first = int(judged.index[(judged["judgement_id"] == jid) & (judged["reading"] == reading)][0])
        alt = with_readings(ds, {jid: reading})
        for run in (lambda: resolve_mortality(alt), lambda: resolve_biomarkers(alt)):
            try:
                run()
            except DataError as exc:
                found += [Problem(J, first, "alternative", f"under reading '{reading}' of judgement '{jid}': {p}")
                          for p in exc.problems]
    return found


def correlation_lines(ds: Dataset) -> list[str]:
    """The pre/post correlation of each usable biomarker row: estimated from the row, or an
    assumption (a judgement whose alternatives are the ends of ``[data] correlation_range``)."""
    rows = resolve_biomarkers(ds)
    rows = rows[rows["usable"].astype(bool)]
    if rows.empty:
        return []
    label = rows["study_id"] + " " + rows["biomarker"]
    estimated = rows["correlation_source"] == "estimated"
    lines = ["  pre/post correlation r of the biomarker rows:"]
    lines += [f"    {lab}: r = {r:.2f} estimated from its SDs and p-value" for lab, r
              in zip(label[estimated], rows.loc[estimated, "correlation"])]
    if (~estimated).any():
        lines.append("    assumed (judgement: [data] correlation, its alternatives the ends of [data] "
                     f"correlation_range): {', '.join(label[~estimated])}")
    return lines
