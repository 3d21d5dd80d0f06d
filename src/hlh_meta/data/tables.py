"""Reading one extraction table: encoding, delimiter, header, types and column checks.

Every problem found becomes a :class:`~hlh_meta.errors.Problem` naming the file, the row
(as a spreadsheet numbers it: header = row 1) and the column; nothing is coerced
silently and no row is dropped. An optional table (``schema.OPTIONAL_TABLES``) that is
absent, or holds a header and no rows, is an empty table.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ..errors import Problem, plain
from .schema import OPTIONAL_TABLES, TABLES, UNIQUE_KEYS, Col

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_MAX_BYTES = 50_000_000


def _row_of_offset(raw: bytes, offset: int) -> int:
    return raw[:offset].count(b"\n") + 1


def _decode(path: Path, name: str) -> tuple[str | None, list[Problem]]:
    raw = path.read_bytes()
    if len(raw) > _MAX_BYTES:
        return None, [Problem(name, None, None, f"file is larger than {_MAX_BYTES // 1_000_000} MB")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = _row_of_offset(raw, exc.start)
        return None, [Problem(name, row, None, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8 CSV")]
    if not text.strip():
        return None, [Problem(name, None, None, "file is empty (no header and no rows)")]
    return text, []


def _records(text: str, name: str) -> tuple[list[tuple[int, int, list[str]]], list[Problem]]:
    """Every record with the file lines it spans (first, last, 1-based) and its fields."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, int, list[str]]] = []
    try:
        for row in reader:
            first = records[-1][1] + 1 if records else 1
            records.append((first, reader.line_num, row))
    except csv.Error as exc:
        line = reader.line_num
        return [], [Problem(name, len(records) + 1, None, f"is not valid CSV near line {line} of the file ({exc})")]
    return records, []


def _where(row: int, line: int) -> str:
    """The file line of a record, when it differs from its row number."""
    return "" if row == line else f" (line {line} of the file)"


def _line_breaks(name: str, header: list[str], row: int, first: int, last: int, cells: list[str]) -> list[Problem]:
    """A cell holding a line break: a quote opened and not closed swallows the next line(s)."""
    problems = []
    for i, cell in enumerate(cells):
        if "\n" not in cell and "\r" not in cell:
            continue
        column = header[i] if i < len(header) else None
        spread = (f"this row runs over lines {first}-{last} of the file, so line {first + 1} is read into "
                  "this cell instead of as a row of its own" if last > first else "a cell must stay on one line")
        problems.append(Problem(name, row, column,
                                f"the cell holds a line break: {spread} (a quote opened in this cell and not "
                                "closed?). Close the quote, or replace the line break by a space"))
    return problems


def _parse_csv(text: str, name: str) -> tuple[pd.DataFrame | None, list[Problem]]:
    records, problems = _records(text, name)
    if problems:
        return None, problems
    header = [h.strip() for h in records[0][2]]
    spec = TABLES[name]
    if len(header) > 1 and not set(header) & set(spec):
        return None, [Problem(name, 1, None, "the first line is not a header: no known column name in it "
                                             f"(expected names such as {', '.join(list(spec)[:4])})")]
    if len(header) == 1 and any(d in header[0] for d in (";", "\t", "|")):
        sep = next(d for d in (";", "\t", "|") if d in header[0])
        return None, [Problem(name, 1, None, f"columns are separated by {sep!r}, expected commas")]
    problems = _line_breaks(name, header, 1, *records[0][:2], records[0][2])
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        problems.append(Problem(name, 1, ", ".join(dup), "column named more than once"))
    if "" in header:
        problems.append(Problem(name, 1, None, f"header has an empty column name at position {header.index('') + 1}"))
    body = []
    for i, (first, last, row) in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank line, e.g. a trailing newline from a spreadsheet
        breaks = _line_breaks(name, header, i, first, last, row)
        problems += breaks
        if len(row) != len(header):
            problems.append(Problem(name, i, None, f"has {len(row)} fields, the header has {len(header)} "
                                                   f"(stray comma or unquoted text?){_where(i, first)}"))
            continue
        if not breaks:
            body.append((i, row))
    if problems:
        return None, problems
    if not body and name not in OPTIONAL_TABLES:
        return None, [Problem(name, None, None, "file has a header but no data rows")]
    frame = pd.DataFrame([r for _, r in body], columns=header, index=pd.Index([i for i, _ in body], dtype="int64"),
                         dtype=object)
    return frame.map(lambda s: s.strip()), []


def _check_header(frame: pd.DataFrame, spec: dict[str, Col], name: str) -> list[Problem]:
    problems = []
    for col in frame.columns:
        if col not in spec:
            close = difflib.get_close_matches(col, list(spec), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(Problem(name, 1, col, f"unknown column{hint}"))
    for col, c in spec.items():
        if c.required and col not in frame.columns:
            problems.append(Problem(name, 1, col, "required column is missing"))
    return problems


_PLACEHOLDERS = {"na", "n/a", "n.a.", "nan", "null", "none", "nr", "n.r.", "not reported", "missing",
                 "unknown", "-", "--", "?", "."}
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def _hint(text: str, kind: str) -> str:
    """What to write instead of a cell that does not parse (empty when nothing specific)."""
    low = text.lower()
    if low in _PLACEHOLDERS:
        return "; leave the cell empty for a value the source does not report"
    if kind == "bool":
        return ""
    number = text[:-1].strip() if text.endswith("%") else text
    if text.endswith("%") and _FLOAT.match(number):
        return "; write the number without the % sign"
    if _THOUSANDS.match(text):
        return "; write the number without thousands separators"
    if _DECIMAL_COMMA.match(text):
        return "; use a point as the decimal separator"
    if kind == "int" and _FLOAT.match(text):
        value = float(text)
        if value.is_integer() and abs(value) < 1e15:
            return f"; write it as {int(value)}"
    return ""


def _convert(frame: pd.DataFrame, spec: dict[str, Col], name: str
             ) -> tuple[pd.DataFrame, list[Problem], set[tuple[int, str]]]:
    """Turn text cells into typed columns; every cell that does not parse is a problem.

    Also returns the (row, column) of each such cell: it is empty in the typed frame, and
    checks that would call it empty must not report it a second time."""
    problems: list[Problem] = []
    unparsed: set[tuple[int, str]] = set()
    out = {}
    for col, c in spec.items():
        cells = frame[col] if col in frame else pd.Series("", index=frame.index, dtype=object)
        missing = cells == ""
        if c.required:
            for row in cells.index[missing]:
                problems.append(Problem(name, int(row), col, "is empty but required"))
        if c.kind == "str":
            out[col] = pd.array([None if m else v for v, m in zip(cells, missing)], dtype="string")
            continue
        pattern, what = {
            "int": (_INT, "a whole number"),
            "float": (_FLOAT, "a number"),
            "bool": (re.compile(r"^(?i:true|false)$"), "true or false"),
        }[c.kind]
        ok = cells.map(lambda s: bool(pattern.match(s))) | missing
        for row in cells.index[~ok]:
            text = cells[row]
            problems.append(Problem(name, int(row), col, f"must be {what}, got {text!r}{_hint(text, c.kind)}"))
            unparsed.add((int(row), col))
        good = [v if keep else None for v, keep in zip(cells, ok & ~missing)]
        if c.kind == "int":
            out[col] = pd.array([None if v is None else int(v) for v in good], dtype="Int64")
        elif c.kind == "float":
            out[col] = pd.array([np.nan if v is None else float(v) for v in good], dtype="Float64")
        else:
            out[col] = pd.array([None if v is None else v.lower() == "true" for v in good], dtype="boolean")
    return pd.DataFrame(out, index=frame.index), problems, unparsed


def _schema(spec: dict[str, Col]) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {col: pa.Column(checks=list(c.checks), nullable=True, required=False) for col, c in spec.items()}
    )


def _check_values(typed: pd.DataFrame, spec: dict[str, Col], name: str) -> list[Problem]:
    try:
        _schema(spec).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems = []
        for case in exc.failure_cases.itertuples():
            if case.index is None or pd.isna(case.index):
                continue
            problems.append(Problem(name, int(case.index), case.column, f"{case.check} (got {plain(case.failure_case)})"))
        return problems
    return []


def _check_unique(typed: pd.DataFrame, name: str) -> list[Problem]:
    key = UNIQUE_KEYS[name]
    dup = typed[typed.duplicated(subset=key, keep=False)]
    problems = []
    for _, group in dup.groupby(key, dropna=False):
        rows = [int(r) for r in group.index]
        what = ", ".join(f"{k}={v}" for k, v in zip(key, group.iloc[0][key]))
        problems.append(Problem(name, rows[1], ", ".join(key), f"duplicate of row {rows[0]} ({what})"))
    return problems


def read_table(path: Path) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read and check one table. Returns the typed frame (None if unreadable) and problems.

    The frame's index is the row number in the file, so later checks can name rows.
    """
    frame, problems, _ = read_table_cells(path)
    return frame, problems


def empty_table(name: str) -> pd.DataFrame:
    """A table with its typed columns and no rows (an optional table a folder leaves out)."""
    spec = TABLES[name]
    frame = pd.DataFrame({col: pd.Series([], dtype=object) for col in spec}, index=pd.Index([], dtype="int64"))
    return _convert(frame, spec, name)[0]


def read_table_cells(path: Path) -> tuple[pd.DataFrame | None, list[Problem], set[tuple[int, str]]]:
    """:func:`read_table`, plus the (row, column) of every cell that did not parse (it is
    empty in the typed frame and already reported)."""
    name = path.name
    if not path.is_file():
        if name in OPTIONAL_TABLES and not path.exists():
            return empty_table(name), [], set()
        return None, [Problem(name, None, None, f"file not found in {path.parent}")], set()
    spec = TABLES[name]
    text, problems = _decode(path, name)
    if text is None:
        return None, problems, set()
    frame, problems = _parse_csv(text, name)
    if frame is None:
        return None, problems, set()
    problems = _check_header(frame, spec, name)
    if any(p.message == "required column is missing" for p in problems):
        return None, problems, set()
    typed, more, unparsed = _convert(frame, spec, name)
    problems += more
    problems += _check_values(typed, spec, name)
    problems += _check_unique(typed, name)
    return typed, problems, unparsed
