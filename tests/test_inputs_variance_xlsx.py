"""Inputs as other tools give them: sampling variances for fit_normal (metafor's vi) and
the extraction tables as one Excel workbook."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.data import bundled_data_dir
from hlh_meta.errors import DataError, InputError, Problem

TABLES = ("studies", "mortality", "biomarkers", "arms")
VI = pd.DataFrame({"study": list("abcd"), "yi": [-0.35, -0.10, -0.62, 0.05], "vi": [0.0324, 0.0625, 0.09, 0.0484]})


# --- fit_normal(variance=...) ---------------------------------------------------------------

@pytest.fixture
def no_sampling(monkeypatch):
    import hlh_meta.inference.sampling as sampling

    monkeypatch.setattr(sampling, "_sample_once", lambda *a, **k: (_ for _ in ()).throw(AssertionError("sampled")))


def test_variance_gives_the_same_draws_as_its_square_root_as_std_err():
    frame = VI.assign(sei=np.sqrt(VI["vi"]))
    fit = dict(estimate="yi", study="study", draws=60, tune=60, chains=2, seed=11, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # a fit this short fails the diagnostics gate
        by_variance = hm.fit_normal(frame, variance="vi", **fit)
        by_std_err = hm.fit_normal(frame, std_err="sei", **fit)
    for name in ("mu", "tau", "theta"):
        np.testing.assert_array_equal(by_variance.posterior[name].values, by_std_err.posterior[name].values)
    np.testing.assert_array_equal(by_variance.constant_data["std_err"].values, frame["sei"].to_numpy())


@pytest.mark.parametrize("kwargs, fragment", [
    ({"std_err": "sei", "variance": "vi"}, "not both"),
    ({}, "not neither"),
    ({"variance": "v"}, "variance: column 'v' not found in the data frame"),
], ids=["both", "neither", "missing-column"])
def test_variance_or_std_err_exactly_one(no_sampling, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        hm.fit_normal(VI.assign(sei=np.sqrt(VI["vi"])), estimate="yi", study="study", **kwargs)


@pytest.mark.parametrize("bad, fragment", [
    (-0.01, "must be > 0, got -0.01"),
    (0.0, "must be > 0, got 0.0"),
    (np.nan, "must be a finite number"),
    (np.inf, "must be a finite number"),
], ids=["negative", "zero", "nan", "inf"])
def test_bad_variance_names_column_and_row(no_sampling, bad, fragment):
    frame = VI.copy()
    frame.loc[2, "vi"] = bad
    with pytest.raises(DataError) as info:
        hm.fit_normal(frame, estimate="yi", variance="vi", study="study")
    [problem] = info.value.problems
    assert (problem.row, problem.column) == (2, "vi")
    assert fragment in str(problem)


# --- read_dataset(workbook.xlsx) ------------------------------------------------------------

def _workbook(path: Path, skip: tuple[str, ...] = ()) -> Path:
    """The bundled tables as one workbook, written as a user's pandas would write them
    (numbers typed, so whole numbers in columns with empty cells are floats: 8.0)."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for stem in TABLES:
            if stem not in skip:
                pd.read_csv(bundled_data_dir() / f"{stem}.csv").to_excel(writer, sheet_name=stem, index=False)
    return path


def _edit(path: Path, sheet: str, row: int, column: str, value, number_format: str | None = None) -> None:
    import openpyxl

    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    header = [c.value for c in ws[1]]
    cell = ws.cell(row, header.index(column) + 1)
    cell.value = value
    if number_format:
        cell.number_format = number_format
    wb.save(path)


def _problems(path: Path) -> list[str]:
    with pytest.raises(DataError) as info:
        hm.read_dataset(path)
    return [str(p) for p in info.value.problems]


def test_workbook_reads_to_the_same_dataset_as_the_csv_folder(tmp_path, ds):
    book = hm.read_dataset(_workbook(tmp_path / "tables.xlsx"))
    for stem in TABLES:
        pd.testing.assert_frame_equal(getattr(book, stem), getattr(ds, stem), obj=stem)
    assert book.path == tmp_path / "tables.xlsx" and list(book.sha256) == ["tables.xlsx"]
    # problems found later (resolving rows into counts) can be named by workbook and sheet
    [later] = book.relabel([Problem("mortality.csv", 3, "percent", "no whole number of 44 patients gives 99%")])
    assert str(later) == ("tables.xlsx, sheet 'mortality', row 3, column 'percent': "
                          "no whole number of 44 patients gives 99%")
    assert ds.relabel([later]) == [later]
    # ... and are, raised within named_as_given (as run_analysis and AnalysisResult.compare do)
    found = Problem("mortality.csv", 3, "percent", "no whole number of 44 patients gives 99%")
    with pytest.raises(DataError, match="tables.xlsx, sheet 'mortality', row 3"):
        with book.named_as_given():
            raise DataError([found])
    with pytest.raises(DataError, match="- mortality.csv, row 3"):
        with ds.named_as_given():
            raise DataError([found])
    # the optional arms sheet may be left out, as arms.csv may
    no_arms = hm.read_dataset(_workbook(tmp_path / "no_arms.xlsx", skip=("arms",)))
    pd.testing.assert_frame_equal(no_arms.arms, ds.arms)


def test_bad_cell_names_workbook_sheet_row_and_column(tmp_path):
    book = _workbook(tmp_path / "tables.xlsx")
    _edit(book, "mortality", 3, "n", 44.5)
    assert _problems(book) == ["tables.xlsx, sheet 'mortality', row 3, column 'n': must be a whole number, got '44.5'"]


def test_percentage_formatted_cell_is_not_read_as_a_fraction(tmp_path):
    book = _workbook(tmp_path / "tables.xlsx")
    _edit(book, "mortality", 3, "percent", 0.27, number_format="0%")
    [problem] = _problems(book)
    assert problem.startswith("tables.xlsx, sheet 'mortality', row 3, column 'percent': is formatted as a percentage")
    assert "holds 0.27, shown as 27%; type 27" in problem


def test_formula_cell_is_refused(tmp_path):
    book = _workbook(tmp_path / "tables.xlsx")
    _edit(book, "mortality", 2, "deaths", "=2-1")
    [problem] = _problems(book)
    assert problem.startswith("tables.xlsx, sheet 'mortality', row 2, column 'deaths': holds a formula (=2-1)")


def test_checks_across_tables_name_the_sheets(tmp_path):
    book = _workbook(tmp_path / "tables.xlsx")
    _edit(book, "biomarkers", 2, "study_id", "nobody2020")
    assert _problems(book) == ["tables.xlsx, sheet 'biomarkers', row 2, column 'study_id': unknown study "
                               "'nobody2020' (not in sheet 'studies')"]


def test_missing_sheet(tmp_path):
    book = _workbook(tmp_path / "tables.xlsx", skip=("biomarkers",))
    [problem] = _problems(book)
    assert problem.startswith("tables.xlsx, sheet 'biomarkers': sheet not found in the workbook")
    assert "'studies', 'mortality', 'arms'" in problem


def test_workbook_named_csv(tmp_path):
    book = _workbook(tmp_path / "tables.xlsx")
    named_csv = book.with_suffix(".csv")
    shutil.copy(book, named_csv)
    [problem] = _problems(named_csv)
    assert problem.startswith("tables.csv: is an Excel workbook, not CSV")
    # the same in a folder of CSV files
    folder = tmp_path / "folder"
    folder.mkdir()
    for stem in ("mortality", "biomarkers"):
        shutil.copy(bundled_data_dir() / f"{stem}.csv", folder / f"{stem}.csv")
    shutil.copy(book, folder / "studies.csv")
    [problem] = _problems(folder)
    assert problem.startswith("studies.csv: is an Excel workbook, not CSV")


def test_data_check_reads_a_workbook(tmp_path):
    from typer.testing import CliRunner

    from hlh_meta.cli import app

    result = CliRunner().invoke(app, ["data", "check", str(_workbook(tmp_path / "tables.xlsx"))])
    assert result.exit_code == 0, result.output
    assert "OK: the tables are valid." in result.output


def test_data_check_names_the_sheet_for_a_rule_of_the_fit(tmp_path):
    """A percentage no whole count of n gives is found when rows become counts; the message
    names the workbook and sheet, not a CSV file."""
    from typer.testing import CliRunner

    from hlh_meta.cli import app

    book = _workbook(tmp_path / "tables.xlsx")
    _edit(book, "mortality", 3, "percent", 99)
    result = CliRunner().invoke(app, ["data", "check", str(book)])
    assert result.exit_code == 2, result.output
    assert "tables.xlsx, sheet 'mortality', row 3" in result.output and "mortality.csv" not in result.output


def test_fit_names_the_sheet_for_a_rule_of_the_fit(tmp_path):
    import hlh_meta as hm

    book = _workbook(tmp_path / "tables.xlsx")
    _edit(book, "mortality", 3, "percent", 99)
    with pytest.raises(DataError) as info:
        hm.run_analysis(Path(__file__).parent / "specs" / "mortality_small.toml", hm.read_dataset(book))
    assert "tables.xlsx, sheet 'mortality', row 3" in str(info.value) and "mortality.csv" not in str(info.value)
