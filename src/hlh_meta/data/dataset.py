"""The Dataset: the validated extraction tables, from the bundled data or a user's folder."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ..errors import DataError, Problem
from .consistency import check_dataset
from .judgements import check_judgements, describe
from .tables import ABSENT, empty_table, read_table_cells, read_workbook, sheet_label, workbook_problem
from .schema import OPTIONAL_TABLES, TABLES


@dataclass(frozen=True)
class Dataset:
    """Validated tables. Each frame's index is the row number in its CSV file (or sheet).

    Made by :func:`read_dataset` (a user's folder or workbook) or :func:`load_dataset`
    (the bundled data); frozen.

    Parameters
    ----------
    studies : pandas.DataFrame
        One row per study (``studies.csv``).
    mortality : pandas.DataFrame
        Deaths and patients by study and stratum (``mortality.csv``).
    biomarkers : pandas.DataFrame
        Biomarker summaries before and after treatment (``biomarkers.csv``).
    path : pathlib.Path
        The folder of CSV files, or the Excel workbook, the tables were read from.
    sha256 : dict of str to str, optional
        SHA-256 of each table file read (of the workbook, for a workbook).
    arms : pandas.DataFrame, optional
        The arms of comparative sources (``arms.csv``; empty when the folder has none).
    sources : dict of str to str, optional
        For a workbook, how messages name each table (``"mortality.csv"`` ->
        ``"tables.xlsx, sheet 'mortality'"``); empty for a folder, whose files name
        themselves.
    judgements : pandas.DataFrame, optional
        Values inferred by the extractor, each with its reason and alternative readings
        (``judgements.csv``, :mod:`hlh_meta.data.judgements`; empty when the folder has
        none).
    """

    studies: pd.DataFrame
    mortality: pd.DataFrame
    biomarkers: pd.DataFrame
    path: Path
    sha256: dict[str, str] = field(default_factory=dict)
    arms: pd.DataFrame = field(default_factory=lambda: empty_table("arms.csv"))
    sources: dict[str, str] = field(default_factory=dict)
    judgements: pd.DataFrame = field(default_factory=lambda: empty_table("judgements.csv"))

    def relabel(self, problems: list[Problem]) -> list[Problem]:
        """Name each table in ``problems`` as it was given (e.g. a workbook's sheet).

        Problems found later in these tables name a table by its CSV file, as
        :mod:`hlh_meta.effects` does; for a folder of CSV files they are returned unchanged.

        Parameters
        ----------
        problems : list of Problem
            Problems that name tables by their CSV files.

        Returns
        -------
        list of Problem
            The same problems, naming each table as it was given.
        """
        return [_labelled(p, self.sources) for p in problems]

    @contextmanager
    def named_as_given(self):
        """Within the block, a :class:`~hlh_meta.DataError` raised about these tables names
        each table as it was given (:meth:`relabel`), e.g. a workbook's sheet."""
        try:
            yield
        except DataError as exc:
            raise DataError(self.relabel(exc.problems)) from None

    def study(self, study_id: str) -> pd.Series:
        """One study's row of the ``studies`` table.

        Parameters
        ----------
        study_id : str
            The study's ``study_id``.

        Returns
        -------
        pandas.Series
            The study's row, indexed by column.

        Raises
        ------
        KeyError
            If no study has that ``study_id``.
        """
        return self.studies.set_index("study_id").loc[study_id]

    def summary(self) -> str:
        """A plain-text overview of the dataset, one line per study.

        Returns
        -------
        str
            The numbers of studies, patients, mortality and biomarker rows, a line per
            study (year, patients, age group, route, mortality rows, biomarkers), the
            comparative sources and the extractor's judgements.
        """
        s = self.studies
        lines = [
            f"{len(s)} studies, {int(s['n_patients'].sum())} patients "
            f"({len(self.mortality)} mortality rows, {len(self.biomarkers)} biomarker rows) in {self.path}",
        ]
        for rec in s.itertuples():
            n_mort = (self.mortality["study_id"] == rec.study_id).sum()
            markers = ", ".join(self.biomarkers.loc[self.biomarkers["study_id"] == rec.study_id, "biomarker"]) or "-"
            year = "----" if pd.isna(rec.year) else rec.year
            lines.append(f"  {rec.study_id:<18} {year}  n={rec.n_patients:<4} {rec.age_group:<10} "
                         f"route={rec.route:<7} mortality rows={n_mort}  biomarkers: {markers}")
        arms = self.arms
        lines.append(f"  comparative sources (arms.csv): {arms['study_id'].nunique()} "
                     f"({len(arms)} arm rows)" if len(arms) else "  comparative sources (arms.csv): none")
        return "\n".join(lines + describe(self))


def table_digests(path: Path) -> dict[str, str]:
    """SHA-256 of each table file of a folder (optional tables where present), or of a workbook."""
    path = Path(path)
    if path.is_dir():
        return {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in TABLES
                if name not in OPTIONAL_TABLES or (path / name).is_file()}
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}


def bundled_data_dir() -> Path:
    """Folder of the curated tables shipped with the package (or the repository's data/)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[1] / "_bundled" / "data", here.parents[3] / "data"]
    for c in candidates:
        if (c / "studies.csv").is_file():
            return c
    raise FileNotFoundError("bundled data not found; reinstall hlh-meta")


def read_dataset(path: str | Path) -> Dataset:
    """Read and validate the extraction tables of a folder or an Excel workbook.

    A folder holds ``studies.csv``, ``mortality.csv``, ``biomarkers.csv`` and, where it
    has them, ``arms.csv`` (a folder without ``arms.csv`` has no comparative source: an
    empty arms table) and ``judgements.csv``.

    ``path`` may instead be an Excel workbook (``.xlsx``) holding the tables as sheets named
    ``studies``, ``mortality``, ``biomarkers`` and, where there are comparative sources,
    ``arms``. Each sheet meets the checks of its CSV file, and messages name the workbook
    and sheet (see :func:`hlh_meta.data.tables.read_workbook` for how cells become text).

    Parameters
    ----------
    path : str or pathlib.Path
        The folder of CSV files, or the Excel workbook.

    Returns
    -------
    Dataset
        The validated tables.

    Raises
    ------
    hlh_meta.DataError
        Listing every problem found (file, row, column, what), including a ``path`` that
        is neither a folder nor a workbook.
    """
    path = Path(path)
    if path.is_dir():
        frames, problems, unparsed = {}, [], set()
        for name in TABLES:
            frame, found, cells = read_table_cells(path / name)
            frames[name] = frame
            problems += found
            unparsed |= {(name, row, col) for row, col in cells}
        labels = {}
    elif path.is_file():
        wrong = workbook_problem(path)
        if wrong is not None:
            raise DataError(wrong)
        frames, problems, unparsed = read_workbook(path)
        labels = {name: sheet_label(path, name) for name in TABLES}
    else:
        raise DataError(Problem(str(path), None, None, "not a directory of extraction tables or an Excel workbook "
                                                       "(.xlsx): no such file or folder"))
    absent = {(name, col) for name, frame in frames.items() if frame is not None for col in frame.attrs.get(ABSENT, ())}
    # a cell that did not parse is already reported; it is not "empty" a second time
    found = [p for p in check_dataset(frames["studies.csv"], frames["mortality.csv"], frames["biomarkers.csv"],
                                      frames["arms.csv"]) if (p.file, p.row, p.column) not in unparsed]
    problems += [_labelled(p, labels) for p in _missing_columns(found, absent)]
    if all(frame is not None for frame in frames.values()):
        # a reading that breaks a rule only through a cell reported above (or a column the table
        # lacks) says nothing new
        known = [f"{name}, row {row}, column '{col}'" for name, row, col in unparsed] + \
                [f"{p.file}, row {p.row}, column '{p.column}'" for p in found if p.row is not None and p.column]
        known += [f"column '{col}'" for _, col in absent]
        problems += [_labelled(p, labels) for p in check_judgements(frames)
                     if (p.file, p.row, p.column) not in unparsed and not any(k in p.message for k in known)]
    if problems:
        raise DataError(problems)
    return Dataset(frames["studies.csv"], frames["mortality.csv"], frames["biomarkers.csv"], path, table_digests(path),
                   frames["arms.csv"], labels, frames["judgements.csv"])


def _missing_columns(problems: list[Problem], absent: set[tuple[str, str]]) -> list[Problem]:
    """The problems of cells in an optional column that a table's header leaves out, as one
    problem per column (\"column 'deaths' missing\", with the rows that need it), not one per row;
    a numeric column left out is a problem even where no row needs it (every row would silently
    read as not reporting it, e.g. no SEM, so an imputed SD). Descriptive columns (notes, setting)
    may be left out."""
    out: list[Problem] = []
    by_column: dict[tuple, list] = {}
    for p in problems:
        if (p.file, p.column) in absent and p.row is not None:
            by_column.setdefault((p.file, p.column), []).append(p)
        else:
            out.append(p)
    for file, column in sorted(absent - set(by_column)):
        if TABLES[file][column].kind in ("int", "float"):     # its absence would read as "not reported" in every row
            out.append(Problem(file, 1, column, f"column '{column}' missing from the header: add it, with empty cells "
                                                "where the source gives no value (without it every row would read as "
                                                "not reporting it)"))
    for (file, column), found in by_column.items():
        rows = sorted({p.row for p in found})
        shown = ", ".join(map(str, rows[:5])) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        out.append(Problem(file, 1, column, f"column '{column}' missing from the header, and row{'s' if len(rows) > 1 else ''} "
                                            f"{shown} need{'' if len(rows) > 1 else 's'} it (row {found[0].row}: "
                                            f"{found[0].message}); add the column"))
    return out


def _labelled(problem: Problem, labels: dict[str, str]) -> Problem:
    """A problem that names tables by their CSV files, naming them as they were given
    (``labels``: file -> ``tables.xlsx, sheet 'mortality'``; empty: unchanged)."""
    if not labels:
        return problem
    message = problem.message
    for name, label in labels.items():
        message = message.replace(name, "sheet " + label.rsplit(", sheet ", 1)[1])
    return replace(problem, file=labels.get(problem.file, problem.file), message=message)


def as_dataset(ds: object, name: str = "ds") -> Dataset:
    """``ds`` as a Dataset: a Dataset as it is, None the bundled data, a path (``str`` or
    ``Path``: a folder of tables or a workbook) read with :func:`read_dataset`; anything else
    (a DataFrame, a dict) raises TypeError saying what ``ds`` must be."""
    if ds is None:
        return load_dataset()
    if isinstance(ds, Dataset):
        return ds
    if isinstance(ds, (str, Path)):
        return read_dataset(ds)
    hint = (" (a DataFrame is one table: give the folder or workbook of the tables, or fit a DataFrame with "
            "hm.fit_binomial / hm.fit_normal)" if isinstance(ds, pd.DataFrame) else "")
    raise TypeError(f"{name} must be a Dataset (hm.load_dataset(), hm.read_dataset(path)), the path of a folder of "
                    f"tables or of a workbook, or None for the bundled data; got {type(ds).__name__}{hint}")


def load_dataset() -> Dataset:
    """The curated anakinra sHLH/MAS dataset bundled with the package.

    Returns
    -------
    Dataset
        The bundled tables, read and validated with :func:`read_dataset`.

    Raises
    ------
    FileNotFoundError
        If the bundled data are not found (a broken installation).
    """
    return read_dataset(bundled_data_dir())
