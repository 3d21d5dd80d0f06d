"""Judgements: values of the tables that a source does not print but the extractor inferred.

``judgements.csv`` marks each such cell (a trigger assignment, an exclusion, deaths matched
to diagnoses, a reconstruction from an inconsistent table) with the value entered, the
reason, and one or more alternative readings in the same cell syntax. Rows sharing a
``judgement_id`` and a ``reading`` are the cells that change together under that reading
(e.g. the deaths of two strata when a death is matched to another diagnosis).

The checks here refuse a judgement that points at no row or column, whose ``value`` is not
what the table holds, whose alternative does not parse or passes no check of its column, or
whose alternative reading breaks a rule of the tables (:mod:`.consistency`). An analysis
applies a reading with :func:`with_readings`; the sensitivity family "judgements" runs
each reading in turn.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..errors import Problem, plain
from .schema import ROW_KEYS, TABLES

J = "judgements.csv"
#: the word that stands for an empty cell in ``value`` and ``alternative``
EMPTY = "empty"
#: columns a judgement cannot change: they identify the row
_FIXED = {"study_id"} | {c for keys in ROW_KEYS.values() for c in keys}


def _file(table: str) -> str:
    return f"{table}.csv"


def parse_cell(name: str, column: str, text: str) -> tuple[object, str | None]:
    """A cell's text (``empty``: an empty cell) as column ``column`` of table ``name`` types
    and checks it: (value, None), or (None, why it is refused)."""
    from .tables import _check_values, _convert

    col = TABLES[name][column]
    raw = "" if text.strip().lower() == EMPTY else text.strip()
    if raw == "" and col.required:
        return None, f"cannot be empty: column '{column}' of {name} is required"
    frame = pd.DataFrame({column: [raw]}, index=pd.Index([0], dtype="int64"), dtype=object)
    typed, problems, _ = _convert(frame, {column: col}, name)
    problems += _check_values(typed, {column: col}, name)
    if problems:
        return None, f"is not a valid '{column}' of {name}: {problems[0].message}"
    value = typed.at[0, column]
    return (None if pd.isna(value) else value), None


def cell_text(value: object) -> str:
    """A typed cell as the tables write it (``empty`` for an empty cell)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return EMPTY
    return value if isinstance(value, str) else plain(value)


def row_key(frame: pd.DataFrame, row: int, name: str) -> str:
    """The ``row_key`` of a table's row (``overall/all``, ``crp``, ...; empty for studies)."""
    return "/".join(str(frame.at[row, k]) for k in ROW_KEYS[name])


def _frames(ds) -> dict[str, pd.DataFrame]:
    """The tables a judgement may point into, by file name."""
    return {"studies.csv": ds.studies, "mortality.csv": ds.mortality, "biomarkers.csv": ds.biomarkers,
            "arms.csv": ds.arms}


def _locate(frames: dict[str, pd.DataFrame | None], rec: pd.Series) -> tuple[int | None, str, str | None]:
    """The table row a judgement names, or the judgements.csv column to blame and why it names none."""
    name = _file(rec["table"])
    frame = frames.get(name)
    if frame is None:
        return None, "", None                  # the table did not parse: reported there
    hit = (frame["study_id"] == rec["study_id"]).fillna(False).astype(bool)
    if not hit.any():
        return None, "study_id", f"names no row of {name}: study '{rec['study_id']}' has none"
    keys = ROW_KEYS[name]
    given = "" if pd.isna(rec["row_key"]) else str(rec["row_key"])
    if keys:
        parts = given.split("/")
        if len(parts) != len(keys) or not all(parts):
            return None, "row_key", f"must name the row as {'/'.join(keys)}, got {given or 'an empty cell'!r}"
        for k, part in zip(keys, parts):
            hit &= (frame[k] == part).fillna(False).astype(bool)
    elif given:
        return None, "row_key", f"must be empty: a row of {name} is named by its study_id alone"
    rows = frame.index[hit]
    if len(rows) == 0:
        return None, "row_key", f"names no row of {name}: study '{rec['study_id']}' has no row '{given}'"
    return int(rows[0]), "", None


def check_judgements(frames: dict[str, pd.DataFrame | None]) -> list[Problem]:
    """Problems of ``judgements.csv`` against the other tables (given frames that parsed)."""
    from .consistency import check_dataset

    judged = frames.get(J)
    if judged is None or judged.empty:
        return []
    problems: list[Problem] = []
    cells: dict[int, tuple[str, int, str, object]] = {}      # judgements row -> (table, row, column, alternative)
    for row, rec in judged.iterrows():
        if pd.isna(rec["table"]) or pd.isna(rec["column"]) or pd.isna(rec["study_id"]):
            continue                                          # empty but required: reported already
        name = _file(rec["table"])
        if rec["column"] not in TABLES[name]:
            problems.append(Problem(J, int(row), "column", f"'{rec['column']}' is not a column of {name}"))
            continue
        if rec["column"] in _FIXED:
            problems.append(Problem(J, int(row), "column", f"'{rec['column']}' identifies the row: a judgement "
                                                            "changes a value of the row, not which row it is"))
            continue
        target, blame, why = _locate(frames, rec)
        if why:
            problems.append(Problem(J, int(row), blame, why))
            continue
        if target is None:
            continue
        held = frames[name].at[target, rec["column"]]  # type: ignore[union-attr]
        entered, bad = (None, None) if pd.isna(rec["value"]) else parse_cell(name, rec["column"], rec["value"])
        if bad:
            problems.append(Problem(J, int(row), "value", bad))
        elif pd.notna(rec["value"]) and cell_text(entered) != cell_text(held):
            problems.append(Problem(J, int(row), "value", f"says {name} row {target}, column '{rec['column']}' holds "
                                                           f"{cell_text(entered)!r}, but it holds {cell_text(held)!r}"))
        if pd.isna(rec["alternative"]):
            continue                                          # empty but required: reported already
        alternative, bad = parse_cell(name, rec["column"], rec["alternative"])
        if bad:
            problems.append(Problem(J, int(row), "alternative", bad))
            continue
        if cell_text(alternative) == cell_text(held):
            problems.append(Problem(J, int(row), "alternative", "is the value entered: an alternative reading must "
                                                                 "change the cell"))
            continue
        cells[int(row)] = (name, target, rec["column"], alternative)
    for jid, group in judged.groupby("judgement_id", sort=False, dropna=True):
        if group["reason"].isna().all():
            problems.append(Problem(J, int(group.index[0]), "reason", f"judgement '{jid}' gives no reason: say why "
                                                                       "the value is inferred, not printed"))
        given = group["reason"].dropna().unique()
        if len(given) > 1:
            problems.append(Problem(J, int(group.index[group["reason"].notna()][1]), "reason",
                                    f"judgement '{jid}' gives different reasons; give it once"))
        for reading, rows in group.groupby("reading", sort=False, dropna=True):
            if not set(rows.index) <= set(cells):
                continue
            altered = _applied(frames, [cells[int(r)] for r in rows.index])
            for p in check_dataset(altered["studies.csv"], altered["mortality.csv"], altered["biomarkers.csv"],
                                   altered["arms.csv"]):
                problems.append(Problem(J, int(rows.index[0]), "alternative",
                                        f"reading '{reading}' of judgement '{jid}' breaks a rule of the tables: {p}"))
    return problems


def _applied(frames: dict[str, pd.DataFrame], cells: list[tuple[str, int, str, object]]) -> dict[str, pd.DataFrame]:
    out = dict(frames)
    for name, row, column, value in cells:
        if out[name] is frames[name]:
            out[name] = frames[name].copy()
        out[name].at[row, column] = pd.NA if value is None else value
    return out


def readings(judged: pd.DataFrame) -> list[tuple[str, str]]:
    """Every (judgement_id, reading) of a judgements table, in table order."""
    return list(dict.fromkeys(zip(judged["judgement_id"], judged["reading"])))


def with_readings(ds, chosen: dict[str, str]):
    """The Dataset with the alternative readings ``chosen`` (judgement id -> reading) in place
    of the values entered. KeyError naming the judgement or reading that does not exist."""
    if not chosen:
        return ds
    judged = ds.judgements
    frames = _frames(ds)
    cells = []
    for jid, reading in chosen.items():
        rows = judged[(judged["judgement_id"] == jid) & (judged["reading"] == reading)]
        if rows.empty:
            known = judged.loc[judged["judgement_id"] == jid, "reading"].unique().tolist()
            raise KeyError(f"no reading '{reading}' of judgement '{jid}'" + (f" (its readings: {', '.join(known)})"
                                                                            if known else " (no such judgement)"))
        for _, rec in rows.iterrows():
            name = _file(rec["table"])
            target = _locate(frames, rec)[0]
            cells.append((name, target, rec["column"], parse_cell(name, rec["column"], rec["alternative"])[0]))
    out = _applied(frames, cells)  # type: ignore[arg-type]
    return replace(ds, studies=out["studies.csv"], mortality=out["mortality.csv"], biomarkers=out["biomarkers.csv"],
                   arms=out["arms.csv"])


def judged_rows(ds, name: str) -> pd.Series:
    """For each row of table ``name`` (``mortality.csv``): the judgements on it and on its
    study's row of studies.csv, each as ``id: column value (reading: alternative)``, ``; ``-joined
    (empty: none)."""
    frames = _frames(ds)
    table = frames[name]
    out = pd.Series("", index=table.index, dtype=object)
    for _, rec in ds.judgements.iterrows():
        if rec["table"] not in (name.removesuffix(".csv"), "studies"):
            continue
        target = _locate(frames, rec)[0]
        if target is None:
            continue
        rows = [target] if rec["table"] != "studies" else list(table.index[table["study_id"] == rec["study_id"]])
        text = f"{rec['judgement_id']}: {rec['column']} {rec['value']} ({rec['reading']}: {rec['alternative']})"
        for r in rows:
            out[r] = f"{out[r]}; {text}" if out[r] else text
    return out


def describe(ds) -> list[str]:
    """Every judgement in words, one line per judgement and one per cell of each reading
    (what ``hlh-meta data check`` prints)."""
    judged = ds.judgements
    if judged.empty:
        return ["  judgements (judgements.csv): none"]
    lines = [f"  judgements (judgements.csv): {judged['judgement_id'].nunique()} judgements, "
             f"{len(readings(judged))} alternative readings"]
    for jid, group in judged.groupby("judgement_id", sort=False):
        reason = group["reason"].dropna()
        lines.append(f"    {jid} ({group['study_id'].iloc[0]}): {reason.iloc[0] if len(reason) else ''}")
        for _, rec in group.iterrows():
            where = f"{rec['table']}.csv" + (f" {rec['row_key']}" if pd.notna(rec["row_key"]) else "")
            lines.append(f"      [{rec['reading']}] {where}, {rec['column']}: {rec['value']} -> {rec['alternative']}")
    return lines
