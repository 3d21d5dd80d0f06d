"""Reading one extraction table: encoding, delimiter, header, types and column checks.

Every problem found becomes a :class:`~hlh_meta.errors.Problem` naming the file, the row
(as a spreadsheet numbers it: header = row 1) and the column; nothing is coerced
silently and no row is dropped. An optional table (``schema.OPTIONAL_TABLES``) that is
absent, or holds a header and no rows, is an empty table.

A table is a CSV file or a sheet of an Excel workbook (:func:`read_workbook`): a sheet's
cells are turned into the text a CSV file would hold (:func:`_cell_text`) and then meet
the same checks, with the same messages.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import math
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ..errors import Problem, plain
from .schema import OPTIONAL_TABLES, TABLES, UNIQUE_KEYS, Col

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_MAX_BYTES = 50_000_000
_ZIP = b"PK\x03\x04"                   # an .xlsx workbook is a zip file
_OLE = b"\xd0\xcf\x11\xe0"               # an Excel 97-2003 .xls workbook
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")


def _row_of_offset(raw: bytes, offset: int) -> int:
    return raw[:offset].count(b"\n") + 1


def _decode(path: Path, name: str) -> tuple[str | None, list[Problem]]:
    raw = path.read_bytes()
    if len(raw) > _MAX_BYTES:
        return None, [Problem(name, None, None, f"file is larger than {_MAX_BYTES // 1_000_000} MB")]
    if raw.startswith((_ZIP, _OLE)):
        return None, [Problem(name, None, None, f"is an Excel workbook, not CSV{_not_csv_hint(path, raw[:4])}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = _row_of_offset(raw, exc.start)
        return None, [Problem(name, row, None, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8 CSV")]
    if not text.strip():
        return None, [Problem(name, None, None, "file is empty (no header and no rows)")]
    return text, []


def _not_csv_hint(path: Path, magic: bytes) -> str:
    """What to do with an Excel workbook that carries a CSV name."""
    if magic == _OLE:
        return (" (an Excel 97-2003 .xls workbook): save each sheet as 'CSV UTF-8', or save the workbook as an "
                "Excel workbook (.xlsx) and give that to read_dataset")
    return (f": save each sheet as 'CSV UTF-8', or rename the workbook to '{path.stem}.xlsx' and give "
            "that to read_dataset (a workbook with the sheets studies, mortality, biomarkers and, if any, arms)")


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
    return _parse_records(records, name)


def _parse_records(records: list[tuple[int, int, list[str]]], name: str, what: str = "file"
                   ) -> tuple[pd.DataFrame | None, list[Problem]]:
    """The text frame of a table's records (header first); ``what``: file or sheet."""
    header = [h.strip() for h in records[0][2]]
    spec = TABLES[name]
    if len(header) > 1 and not set(header) & set(spec):
        return None, [Problem(name, 1, None, "the first line is not a header: no known column name in it "
                                             f"(expected names such as {', '.join(list(spec)[:4])})")]
    if len(header) == 1 and any(d in header[0] for d in (";", "\t", "|")):
        sep = next(d for d in (";", "\t", "|") if d in header[0])
        return None, [Problem(name, 1, None, f"columns are separated by {sep!r}, expected commas")]
    problems = _line_breaks(name, header, 1, *records[0][:2], records[0][2])
    named = [h for h in header if h]
    if len(set(named)) != len(named):
        dup = sorted({h for h in named if named.count(h) > 1})
        problems.append(Problem(name, 1, ", ".join(dup), "column named more than once"))
    if "" in header:
        problems.append(_unnamed_columns(name, header, [row for _, _, row in records[1:]]))
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
        return None, [Problem(name, None, None, f"{what} has a header but no data rows")]
    frame = pd.DataFrame([r for _, r in body], columns=header, index=pd.Index([i for i, _ in body], dtype="int64"),
                         dtype=object)
    return frame.map(lambda s: s.strip()), []


def _letters(position: int) -> str:
    """A column's letters as a spreadsheet names it (1 -> A, 27 -> AA)."""
    out = ""
    while position:
        position, rest = divmod(position - 1, 26)
        out = chr(ord("A") + rest) + out
    return out


def _unnamed_columns(name: str, header: list[str], rows: list[list[str]]) -> Problem:
    """The header's empty names, each by position and spreadsheet letter; those after the last
    named column with no value in any row are called what they usually are: empty columns a
    spreadsheet saved."""
    positions = [i + 1 for i, h in enumerate(header) if not h]
    where = ", ".join(f"{i} ({_letters(i)})" for i in positions)
    several = len(positions) > 1
    trailing = positions[0] > len(header) - len(positions)
    empty = all(not (row[i - 1].strip() if i - 1 < len(row) else "") for row in rows for i in positions)
    if trailing and empty:
        return Problem(name, 1, None, f"the header ends with {len(positions)} column{'s' if several else ''} without a "
                                      f"name at position{'s' if several else ''} {where}, empty in every row: empty "
                                      "columns a spreadsheet saved after the last one; delete them")
    return Problem(name, 1, None, f"header has {'empty column names' if several else 'an empty column name'} at "
                                  f"position{'s' if several else ''} {where}")


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


_INT_MAX = 2**63 - 1
#: key of a typed table's ``attrs`` listing the optional columns its header leaves out
ABSENT = "absent_columns"
#: the smallest positive number stored with full precision (float64); below it a number is
#: rounded to a few digits or to 0
_TINY = float(np.finfo(float).tiny)


def _shown(text: str, limit: int = 40) -> str:
    """A cell's text as a message quotes it: a very long one cut, with its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _out_of_range(text: str, kind: str) -> str:
    """Why a cell that parses as a number cannot be used as one (empty: it can): a whole number
    beyond 64 bits, a number that overflows to infinity or one so close to 0 that it loses its
    digits (it would overflow or divide by zero in what is derived from it)."""
    if kind == "int":
        digits = text.lstrip("+-").lstrip("0")
        if len(digits) > 19 or int(text) > _INT_MAX or int(text) < -_INT_MAX:
            return f"is too large ({_shown(text)}, {len(digits)} digits): a whole number here is at most {_INT_MAX}"
    elif kind == "float":
        value = float(text)
        if not math.isfinite(value):
            return f"is too large to compute with ({_shown(text)} overflows to infinity)"
        if value != 0 and abs(value) < _TINY or value == 0 and re.search(r"[1-9]", text.split("e")[0].split("E")[0]):
            return (f"is too close to 0 to compute with ({_shown(text)}: numbers below {_TINY:.3g} lose their digits); "
                    "check the unit, or write 0 if the source prints 0")
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
            problems.append(Problem(name, int(row), col, f"must be {what}, got {_shown(text)}{_hint(text, c.kind)}"))
            unparsed.add((int(row), col))
        for row in cells.index[ok & ~missing]:
            why = _out_of_range(cells[row], c.kind)
            if why:
                problems.append(Problem(name, int(row), col, why))
                unparsed.add((int(row), col))
                ok[row] = False
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
    text, problems = _decode(path, name)
    if text is None:
        return None, problems, set()
    frame, problems = _parse_csv(text, name)
    if frame is None:
        return None, problems, set()
    return _check_table(frame, name)


def _check_table(frame: pd.DataFrame, name: str) -> tuple[pd.DataFrame | None, list[Problem], set[tuple[int, str]]]:
    """Header, cell types, values and unique keys of a table's text frame."""
    spec = TABLES[name]
    problems = _check_header(frame, spec, name)
    if any(p.message == "required column is missing" for p in problems):
        return None, problems, set()
    typed, more, unparsed = _convert(frame, spec, name)
    typed.attrs[ABSENT] = [col for col in spec if col not in frame.columns]   # optional columns the header leaves out
    problems += more
    problems += _check_values(typed, spec, name)
    problems += _check_unique(typed, name)
    return typed, problems, unparsed


# --- Excel workbooks --------------------------------------------------------------------

def workbook_problem(path: Path) -> Problem | None:
    """Why the file ``path`` cannot be read as a workbook of tables; None: it is an Excel
    workbook (zip content, named .xlsx or .xlsm)."""
    with path.open("rb") as fh:
        magic = fh.read(4)
    suffix, name = path.suffix.lower(), path.name
    if magic == _ZIP and suffix in WORKBOOK_SUFFIXES:
        return None
    if magic in (_ZIP, _OLE) and suffix in (".csv", ".txt"):
        return Problem(name, None, None, f"is an Excel workbook, not CSV{_not_csv_hint(path, magic)}")
    if magic == _OLE:
        return Problem(name, None, None, "is an Excel 97-2003 workbook (.xls), which cannot be read: save it as an "
                                         "Excel workbook (.xlsx)")
    if magic == _ZIP:
        return Problem(name, None, None, "is a zip file not named .xlsx: read_dataset reads an Excel workbook named "
                                         ".xlsx (save an OpenDocument spreadsheet as .xlsx first)")
    if suffix in WORKBOOK_SUFFIXES:
        return Problem(name, None, None, "is named like an Excel workbook but is not one (a CSV file renamed?)")
    return Problem(str(path), None, None, "not a directory of extraction tables or an Excel workbook (.xlsx)")


def sheet_label(book: Path, name: str) -> str:
    """How messages name the sheet of table ``name`` (``studies.csv``) in a workbook."""
    return f"{book.name}, sheet '{Path(name).stem}'"


def _percent_format(number_format: str | None) -> bool:
    """A number format that shows the value times 100 with a % sign (quoted text,
    escaped characters and [colour]/[condition] sections do not count)."""
    return "%" in re.sub(r'"[^"]*"|\\.|\[[^\]]*\]', "", number_format or "")


def _number_text(value: float) -> str:
    """A number as a table cell holds it: a whole number as digits (27, whatever format
    shows it: 27.0 is 27), any other number in its shortest exact form (0.125, 1e-05)."""
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _cell_text(cell) -> tuple[str, str | None]:
    """The text a CSV file would hold for a sheet's cell, or ("", why) for a cell whose
    value cannot be taken as typed: a formula, an Excel error, a date, or a number
    formatted as a percentage (it stores 0.27 and shows 27%)."""
    value = cell.value
    if value is None:
        return "", None
    if cell.data_type == "f":
        formula = getattr(value, "text", value)
        return "", (f"holds a formula ({formula}): type the value the source prints (numbers a source prints "
                    "only indirectly are derived by hlh-meta, not by the table)")
    if cell.data_type == "e":
        return "", f"holds the Excel error {value}: type the value the source prints, or leave the cell empty"
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, (int, float)):
        if _percent_format(cell.number_format):
            shown = _number_text(round(value * 100, 9))
            return "", (f"is formatted as a percentage: it holds {_number_text(value)}, shown as {shown}%; type "
                        f"{shown} in a cell formatted as General or Number (the tables take percentages as "
                        "numbers from 0 to 100)")
        return _number_text(value), None
    if isinstance(value, (dt.datetime, dt.date, dt.time, dt.timedelta)):
        if isinstance(value, dt.datetime) and value.time() == dt.time(0):
            value = value.date()
        return "", (f"holds a date or time ({value}), which Excel may have made of what was typed: format the "
                    "cell as Text and type the value again")
    return str(value), None


def _read_sheet(ws, name: str, label: str) -> tuple[pd.DataFrame | None, list[Problem], set[tuple[int, str]]]:
    """:func:`read_table_cells` for a worksheet: its cells as text (:func:`_cell_text`),
    then the checks of a CSV file; problems name ``label`` (workbook and sheet)."""
    from openpyxl.utils import get_column_letter

    rows = [[_cell_text(c) for c in row]
            for row in ws.iter_rows(min_row=1, min_col=1, max_row=ws.max_row, max_col=ws.max_column)]
    width = max((i + 1 for row in rows for i, (text, why) in enumerate(row) if text.strip() or why), default=0)
    if width == 0:
        return None, [Problem(label, None, None, "sheet is empty (no header and no rows)")], set()
    rows = [row[:width] for row in rows]
    bad_header = [Problem(label, 1, None, f"header cell {get_column_letter(i + 1)}1 {why}")
                  for i, (_, why) in enumerate(rows[0]) if why]
    if bad_header:
        return None, bad_header, set()
    header = [text.strip() for text, _ in rows[0]]
    flagged = {(r, header[i]): why for r, row in enumerate(rows[1:], start=2)
               for i, (_, why) in enumerate(row) if why}
    records = [(r, r, [text for text, _ in row]) for r, row in enumerate(rows, start=1)]

    def labelled(problems: list[Problem]) -> list[Problem]:
        return [replace(p, file=label) for p in problems]

    frame, problems = _parse_records(records, name, "sheet")
    cell_problems = [Problem(label, r, col or None, why) for (r, col), why in flagged.items()]
    if frame is None:
        return None, cell_problems + labelled(problems), set()
    typed, problems, unparsed = _check_table(frame, name)
    # a cell reported above is empty in the text frame: it is not "empty but required" as well
    problems = [p for p in problems if (p.row, p.column) not in flagged]
    return typed, cell_problems + labelled(problems), unparsed | set(flagged)


def read_workbook(path: Path) -> tuple[dict[str, pd.DataFrame | None], list[Problem], set[tuple[str, int, str]]]:
    """Read every table of an Excel workbook whose sheets are named as the tables' files
    without ``.csv`` (``studies``, ``mortality``, ``biomarkers``; ``arms`` optional, absent:
    an empty table). Other sheets are ignored.

    Each cell becomes the text a CSV file would hold (:func:`_cell_text`): a number as the
    value it stores, not as its format shows it (a whole number as digits, ``27`` also when
    shown as ``27.0``; others in their shortest exact form), TRUE/FALSE as ``true``/``false``,
    text as typed. A number formatted as a percentage (it stores 0.27 and shows 27%), a
    formula, a date and an Excel error are reported, naming the cell, and not read.

    Returns the typed frames (None: a table that could not be read), the problems (each
    naming workbook and sheet) and the (table, row, column) of every cell already reported.
    """
    import openpyxl

    book = path.name
    frames: dict[str, pd.DataFrame | None] = {name: None for name in TABLES}
    if path.stat().st_size > _MAX_BYTES:
        return frames, [Problem(book, None, None, f"file is larger than {_MAX_BYTES // 1_000_000} MB")], set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # openpyxl's notes on workbook features it does not read
            wb = openpyxl.load_workbook(path, data_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to open the file is bad input, reported as such
        why = f"cannot be read as an Excel workbook ({type(exc).__name__}: {exc})"
        return frames, [Problem(book, None, None, why)], set()
    problems: list[Problem] = []
    unparsed: set[tuple[str, int, str]] = set()
    try:
        for name in TABLES:
            stem, label = Path(name).stem, sheet_label(path, name)
            if stem not in wb.sheetnames:
                if name in OPTIONAL_TABLES:
                    frames[name] = empty_table(name)
                    continue
                close = ([s for s in wb.sheetnames if s.strip().lower() in (stem, name)]
                         or difflib.get_close_matches(stem, wb.sheetnames, n=1))
                hint = f" (did you mean '{close[0]}'? a sheet is named exactly '{stem}')" if close else ""
                sheets = ", ".join(repr(s) for s in wb.sheetnames)
                problems.append(Problem(label, None, None,
                                        f"sheet not found in the workbook{hint}; its sheets: {sheets}"))
                continue
            ws = wb[stem]
            if not hasattr(ws, "iter_rows"):
                problems.append(Problem(label, None, None, "is a chart sheet, not a table"))
                continue
            frames[name], found, cells = _read_sheet(ws, name, label)
            problems += found
            unparsed |= {(name, row, col) for row, col in cells}
    finally:
        wb.close()
    return frames, problems, unparsed
