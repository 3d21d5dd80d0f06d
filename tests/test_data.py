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


def test_all_problems_reported_together(data_copy):
    edit(data_copy / "studies.csv", "2014,10.1097", "twenty,10.1097")
    edit(data_copy / "mortality.csv", "sjia,rheumatological", "sjia,rheumatologic")
    problems = _problems(data_copy)
    assert {p.file for p in problems} >= {"studies.csv", "mortality.csv"}


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


# --- no silent data loss ---------------------------------------------------------------

UNCLOSED = ('"Abstract: deaths not reported",', '"Abstract: deaths not reported,')


def test_unclosed_quote_swallowing_the_next_line_is_reported(data_copy):
    edit(data_copy / "mortality.csv", *UNCLOSED)
    problems = _problems(data_copy)
    assert [(p.file, p.row, p.column) for p in problems] == [("mortality.csv", 7, "source_locator")]
    assert "line break" in problems[0].message and "line 8" in problems[0].message


def test_line_break_inside_a_quoted_cell_is_reported(data_copy):
    edit(data_copy / "studies.csv", '"4 previously healthy, 4', '"4 previously healthy,\n4')
    problems = _problems(data_copy)
    assert [(p.file, p.row, p.column) for p in problems] == [("studies.csv", 2, "trigger_mix")]


def test_rows_after_a_multi_line_cell_also_name_their_file_line(data_copy):
    edit(data_copy / "studies.csv", '"4 previously healthy, 4', '"4 previously healthy,\n4')
    edit(data_copy / "studies.csv", "eloseily2020,", "eloseily2020,,")
    problems = _problems(data_copy)
    count = next(p for p in problems if p.row == 3)
    assert "has 20 fields" in count.message and "(line 4 of the file)" in count.message


def test_csv_reader_errors_are_problems_not_crashes(data_copy):
    edit(data_copy / "mortality.csv", "deaths_alternative counts it as unrelated",
         "deaths_alternative counts it as unrelated" + "x" * 200_000)
    problems = _problems(data_copy)
    assert problems[0].file == "mortality.csv" and "not valid CSV" in problems[0].message


def test_study_without_any_outcome_row_is_an_error(data_copy):
    edit(data_copy / "mortality.csv",
         'mehta2020,overall,all,unknown,unknown,,46,,,,,not_reported,,"Abstract: outcomes not reported",\n', "")
    problems = _problems(data_copy)
    assert [(p.file, p.row, p.column) for p in problems] == [("studies.csv", 5, "study_id")]
    assert "mehta2020" in problems[0].message and "not_reported" in problems[0].message


def test_study_with_biomarker_rows_only_is_accepted(data_copy):
    edit(data_copy / "mortality.csv",
         'baverez2022,overall,all,unknown,adult,,21,,,,,not_reported,,"Abstract: deaths not reported",\n', "")
    ds = hm.read_dataset(data_copy)
    assert "baverez2022" not in set(ds.mortality["study_id"])


# --- one correct message per bad cell ----------------------------------------------------

@pytest.mark.parametrize("cell, hint", [("1.0", "write it as 1"), ("NA", "leave the cell empty"),
                                        ("27%", "without the % sign"), ("8e0", "write it as 8"),
                                        ("n/a", "leave the cell empty")])
def test_a_cell_that_does_not_parse_gets_one_message(data_copy, cell, hint):
    # deaths is needed by count_method 'reported': the unparsed cell must not also be "empty"
    edit(data_copy / "mortality.csv", "sjia,rheumatological,paediatric,0,13", f"sjia,rheumatological,paediatric,{cell},13")
    problems = _problems(data_copy)
    assert len(problems) == 1, problems
    assert (problems[0].row, problems[0].column) == (4, "deaths")
    assert f"got '{cell}'" in problems[0].message and hint in problems[0].message


def test_a_percentage_written_with_its_sign_gets_one_message(data_copy):
    edit(data_copy / "mortality.csv", ",44,27,death", ",44,27%,death")
    problems = _problems(data_copy)
    assert len(problems) == 1 and (problems[0].row, problems[0].column) == (3, "percent")


@pytest.mark.parametrize("table, old, new, shown", [
    ("studies.csv", ",2014,10.1097", ",1900,10.1097", "(got 1900)"),
    ("studies.csv", "USA,8,paediatric,14,", "USA,8,paediatric,140.5,", "(got 140.5)"),
    ("mortality.csv", "sjia,rheumatological,paediatric,0,13", "sjia,rheumatological,paediatric,-1,13", "(got -1)"),
])
def test_messages_show_numbers_plainly(data_copy, table, old, new, shown):
    edit(data_copy / table, old, new)
    problems = _problems(data_copy)
    assert any(shown in p.message for p in problems), problems
    assert not any("np." in str(p) for p in problems), problems


def test_plain_formats_numpy_and_pandas_values():
    import numpy as np

    from hlh_meta.errors import plain

    assert [plain(v) for v in (np.int64(3), np.float64(127.5), 140.0, "x", pd.NA, None, np.bool_(True))] == \
        ["3", "127.5", "140", "'x'", "empty", "empty", "true"]
