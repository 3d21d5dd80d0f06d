"""Loading and validating extraction tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.errors import DataError

from conftest import edit


def test_bundled_dataset_loads_and_is_typed():
    ds = hm.load_dataset()
    assert set(ds.studies["study_id"]) == {"rajasekaran2014", "eloseily2020", "baverez2022", "mehta2020", "ejh2023_sr"}
    assert ds.studies["n_patients"].dtype == "Int64"
    assert ds.biomarkers["baseline_mean"].dtype == "Float64"
    assert ds.studies["include_primary"].dtype == "boolean"
    # the frame index is the spreadsheet row, so messages can name it
    assert ds.studies.index[0] == 2
    assert all(len(h) == 64 for h in ds.sha256.values())


def test_every_number_has_a_source_locator():
    ds = hm.load_dataset()
    for frame in (ds.studies, ds.mortality, ds.biomarkers):
        assert frame["source_locator"].notna().all()


def test_missing_stays_missing():
    ds = hm.load_dataset()
    bav = ds.mortality[ds.mortality["study_id"] == "baverez2022"].iloc[0]
    assert pd.isna(bav["deaths"]) and bav["count_method"] == "not_reported"
    eloseily = ds.biomarkers[ds.biomarkers["study_id"] == "eloseily2020"].iloc[0]
    assert pd.isna(eloseily["baseline_sd"]) and pd.isna(eloseily["baseline_sem"])


def _problems(path: Path) -> list:
    with pytest.raises(DataError) as info:
        hm.read_dataset(path)
    return info.value.problems


@pytest.mark.parametrize(
    "table, old, new, column, row, fragment",
    [
        ("mortality.csv", "sjia,rheumatological,paediatric,0,13", "sjia,rheumatological,paediatric,14,13", "deaths", 4, "exceeds n"),
        ("mortality.csv", "sjia,rheumatological", "sjia,rheumatologic", "trigger", 4, "must be one of"),
        ("studies.csv", "2014,10.1097", "twenty,10.1097", "year", 2, "whole number"),
        ("biomarkers.csv", "206,,50,68", "206,,-50,68", "baseline_sem", 2, "negative"),
        ("biomarkers.csv", "rajasekaran2014,crp", "nobody2020,crp", "study_id", 2, "unknown study"),
        ("mortality.csv", "not_reported,,\"Abstract: deaths", "not_sure,,\"Abstract: deaths", "count_method", 7, "must be one of"),
        ("studies.csv", "USA,8,paediatric", "USA,,paediatric", "n_patients", 2, "empty but required"),
        ("studies.csv", ",mixed,18,", ",mixed,99,", "n_iv", 5, "exceeds n_patients"),
        ("mortality.csv", "sjia,rheumatological,paediatric,0,13", "sjia,rheumatological,paediatric,0,43", "n", 4, "disjoint"),
        ("biomarkers.csv", "8,206,,50,", "8,206,141,50,", "baseline_sem", 2, "not both"),
        ("studies.csv", "high,\"8 patients", "worrying,\"8 patients", "risk_of_bias", 2, "must be one of"),
        ("mortality.csv", "paediatric,1,8,,,", "paediatric,1,8,50,,", "percent", 2, "must be empty"),
        ("biomarkers.csv", "7,67.1,0.03", "7,67.1,1.5", "p_value", 2, "(0, 1]"),
        ("studies.csv", "USA,44,paediatric", "USA,4400000,paediatric", "n_patients", 3, "implausibly large"),
    ],
)
def test_broken_cell_is_named(data_copy, table, old, new, column, row, fragment):
    edit(data_copy / table, old, new)
    problems = _problems(data_copy)
    match = [p for p in problems if p.file == table and p.column == column and fragment in p.message]
    assert match, f"no problem for {table}/{column} containing {fragment!r}: {problems}"
    assert match[0].row == row


def test_duplicate_row_is_reported(data_copy):
    path = data_copy / "biomarkers.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    problems = _problems(data_copy)
    assert any("duplicate of row 2" in p.message and p.row == len(lines) + 1 for p in problems)


def test_all_problems_reported_together(data_copy):
    edit(data_copy / "studies.csv", "2014,10.1097", "twenty,10.1097")
    edit(data_copy / "mortality.csv", "sjia,rheumatological", "sjia,rheumatologic")
    problems = _problems(data_copy)
    assert {p.file for p in problems} >= {"studies.csv", "mortality.csv"}


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "empty"),
        (b"study_id;biomarker;n\nx;crp;3\n", "separated by ';'"),
        (b"\xff\xfe s\x00t\x00", "not UTF-8"),
    ],
)
def test_unreadable_files(data_copy, content, fragment):
    (data_copy / "biomarkers.csv").write_bytes(content)
    problems = _problems(data_copy)
    assert any(p.file == "biomarkers.csv" and fragment in p.message for p in problems), problems


def test_misspelt_and_missing_columns(data_copy):
    edit(data_copy / "mortality.csv", "study_id,partition,stratum,trigger,age_group,deaths,",
         "study_id,partition,stratum,trigger,age_group,deahts,")
    edit(data_copy / "studies.csv", "study_id,citation,", "studyid,citation,")
    problems = _problems(data_copy)
    assert any(p.column == "deahts" and "did you mean 'deaths'" in p.message for p in problems)
    assert any(p.file == "studies.csv" and p.column == "study_id" and "missing" in p.message for p in problems)


def test_ragged_row(data_copy):
    path = data_copy / "studies.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("Pediatr Crit Care Med 2014;15(5):401-8\"", "Pediatr Crit Care Med 2014;15(5):401-8\",extra"), encoding="utf-8")
    problems = _problems(data_copy)
    assert any(p.row == 2 and "fields" in p.message for p in problems)


def test_excel_style_csv_is_accepted(data_copy):
    for name in ("studies.csv", "mortality.csv", "biomarkers.csv"):
        path = data_copy / name
        text = path.read_text(encoding="utf-8")
        path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    ds = hm.read_dataset(data_copy)
    ref = hm.load_dataset()
    pd.testing.assert_frame_equal(ds.mortality, ref.mortality)
    pd.testing.assert_frame_equal(ds.studies, ref.studies)


def test_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        hm.read_dataset(tmp_path / "nowhere")


def test_missing_table(data_copy):
    (data_copy / "mortality.csv").unlink()
    assert any(p.file == "mortality.csv" and "not found" in p.message for p in _problems(data_copy))


def test_data_dictionary_documents_every_column():
    from hlh_meta.data.schema import TABLES

    text = (Path(__file__).parents[1] / "data" / "README.md").read_text(encoding="utf-8")
    for name, spec in TABLES.items():
        assert f"`{name}`" in text
        for col in spec:
            assert f"| `{col}` |" in text, f"{name}: {col} missing from data/README.md"


def test_ci_runs_the_readme_test_command():
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    command = next(line for line in ci.splitlines() if line.endswith("-m pytest"))
    assert command in readme
