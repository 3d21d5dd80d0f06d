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
    assert set(ds.studies["study_id"]) == {"rajasekaran2014", "eloseily2020", "baverez2022", "mehta2020", "ejh2023_sr",
                                           "henry2019", "alabdulla_imperial", "dimopoulos2020"}
    assert ds.studies["n_patients"].dtype == "Int64"
    assert ds.studies["covid19"].dtype == "boolean"
    assert ds.biomarkers["baseline_mean"].dtype == "Float64"
    assert ds.studies["include_primary"].dtype == "boolean"
    # the frame index is the spreadsheet row, so messages can name it
    assert ds.studies.index[0] == 2
    assert all(len(h) == 64 for h in ds.sha256.values())


def test_the_synthetic_tables_pass_data_check_and_say_they_are_fictional():
    """tests/data/synthetic holds the bundled tables' files with their columns, passes
    `hlh-meta data check`, and marks every citation and source locator as fictional."""
    from typer.testing import CliRunner

    from hlh_meta.cli import app
    from hlh_meta.data import bundled_data_dir

    from conftest import SYNTHETIC

    bundled = sorted(p.name for p in bundled_data_dir().glob("*.csv"))
    assert sorted(p.name for p in SYNTHETIC.glob("*.csv")) == bundled
    for name in bundled:
        header = (SYNTHETIC / name).read_text(encoding="utf-8").splitlines()[0]
        assert header == (bundled_data_dir() / name).read_text(encoding="utf-8").splitlines()[0], name
    res = CliRunner().invoke(app, ["data", "check", str(SYNTHETIC)])
    assert res.exit_code == 0 and "OK: the tables are valid." in res.output, res.output
    ds = hm.read_dataset(SYNTHETIC)
    assert ds.studies["study_id"].str.startswith("syn_").all() and len(ds.studies) == 5
    assert ds.studies["citation"].str.startswith("FICTIONAL: ").all()
    for frame in (ds.studies, ds.mortality, ds.biomarkers):
        assert frame["source_locator"].str.startswith("FICTIONAL: ").all()
    assert set(ds.studies["risk_of_bias"]) > {"high"}      # unlike the bundled studies, not all at high risk


def test_every_number_has_a_source_locator():
    ds = hm.load_dataset()
    for frame in (ds.studies, ds.mortality, ds.biomarkers, ds.arms):
        assert frame["source_locator"].notna().all()


def test_sources_beyond_the_shared_texts_name_their_address():
    # the five sources of ../shared/sources are named by section; every other one by its address
    ds = hm.load_dataset()
    shared = {"rajasekaran2014", "eloseily2020", "baverez2022", "mehta2020", "ejh2023_sr"}
    for frame in (ds.studies, ds.mortality, ds.biomarkers, ds.arms):
        new = frame[~frame["study_id"].isin(shared)]
        assert new["source_locator"].str.startswith("https://").all(), new["source_locator"].tolist()


def test_grade_and_covid19_of_the_bundled_studies():
    st = hm.load_dataset().studies.set_index("study_id")
    assert st.at["henry2019", "grade"] == "other"
    assert st.at["alabdulla_imperial", "grade"] == "conference_abstract"
    assert (st.drop(["henry2019", "alabdulla_imperial"])["grade"] == "peer_reviewed_abstract").all()
    assert st.index[st["covid19"]].tolist() == ["dimopoulos2020"]
    # a COVID-19 series stays eligible, so the covid19 sensitivity variant can add it
    assert bool(st.at["dimopoulos2020", "include_primary"])


def test_possible_overlaps_are_declared():
    st = hm.load_dataset().studies.set_index("study_id")
    declared = {sid: set(filter(None, str(v).split(";"))) for sid, v in st["overlaps_with"].fillna("").items()}

    def pairs(sid):
        return declared[sid] | {o for o, others in declared.items() if sid in others}

    # the review of published IV reports may hold any cohort not known to be without IV anakinra
    assert pairs("ejh2023_sr") == set(st.index) - {"ejh2023_sr"}
    assert "mehta2020" in pairs("eloseily2020")
    # no printed affiliation places the viewpoint's London centre at Imperial: no pair declared
    assert "mehta2020" not in pairs("alabdulla_imperial")


def test_the_imperial_year_is_left_empty_as_unprinted():
    st = hm.load_dataset().studies.set_index("study_id")
    assert pd.isna(st.at["alabdulla_imperial", "year"])
    assert st["year"].drop("alabdulla_imperial").notna().all()


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


LINE_BREAK = ('"FICTIONAL: 18 rheumatological, 12', '"FICTIONAL: 18 rheumatological,\n12')


def test_line_break_inside_a_quoted_cell_is_reported(synthetic_copy):
    edit(synthetic_copy / "studies.csv", *LINE_BREAK)
    problems = _problems(synthetic_copy)
    assert [(p.file, p.row, p.column) for p in problems] == [("studies.csv", 2, "trigger_mix")]


def test_rows_after_a_multi_line_cell_also_name_their_file_line(synthetic_copy):
    edit(synthetic_copy / "studies.csv", *LINE_BREAK)
    edit(synthetic_copy / "studies.csv", "\nsyn_b,", "\nsyn_b,,")
    problems = _problems(synthetic_copy)
    count = next(p for p in problems if p.row == 3)
    assert "has 24 fields, the header has 23" in count.message and "(line 4 of the file)" in count.message


def test_csv_reader_errors_are_problems_not_crashes(data_copy):
    edit(data_copy / "mortality.csv", "deaths_alternative counts it as unrelated",
         "deaths_alternative counts it as unrelated" + "x" * 200_000)
    problems = _problems(data_copy)
    assert problems[0].file == "mortality.csv" and "not valid CSV" in problems[0].message


def _drop_rows(folder: Path, study_id: str, *names: str) -> None:
    """Remove a study's rows from tables of the folder."""
    for name in names:
        lines = (folder / name).read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [x for x in lines if not x.startswith(f"{study_id},")]
        assert len(kept) < len(lines), f"no row of {study_id} in {name}"
        (folder / name).write_text("".join(kept), encoding="utf-8")


def test_study_without_any_outcome_row_is_an_error(synthetic_copy):
    _drop_rows(synthetic_copy, "syn_d", "mortality.csv")        # its one row: deaths not reported
    problems = _problems(synthetic_copy)
    assert [(p.file, p.row, p.column) for p in problems] == [("studies.csv", 5, "study_id")]
    assert "syn_d" in problems[0].message and "not_reported" in problems[0].message


def test_study_with_biomarker_rows_only_is_accepted(synthetic_copy):
    _drop_rows(synthetic_copy, "syn_c", "mortality.csv")
    ds = hm.read_dataset(synthetic_copy)
    assert "syn_c" not in set(ds.mortality["study_id"]) and "syn_c" in set(ds.biomarkers["study_id"])


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


# --- the arms of comparative sources (arms.csv) ------------------------------------------

ARMS_HEADER = "study_id,arm,design,deaths,n,count_method,source_locator,notes\n"


def _arms(folder: Path, *rows: str) -> None:
    (folder / "arms.csv").write_text(ARMS_HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")


def test_bundled_arms_table_has_its_header_and_no_rows():
    ds = hm.load_dataset()
    assert ds.arms.empty and list(ds.arms.columns) == ARMS_HEADER.strip().split(",")
    assert "arms.csv" in ds.sha256


def test_a_folder_without_arms_csv_has_an_empty_arms_table(data_copy):
    assert not (data_copy / "arms.csv").exists()
    ds = hm.read_dataset(data_copy)
    assert ds.arms.empty and ds.arms["deaths"].dtype == "Int64"
    assert "arms.csv" not in ds.sha256
    assert "comparative sources (arms.csv): none" in ds.summary()


def test_arm_rows_are_read_and_typed(synthetic_copy):
    _arms(synthetic_copy, "syn_c,anakinra,observational,2,21,reported,Table 2,",
          "syn_c,control,observational,5,20,reported,Table 2,")
    ds = hm.read_dataset(synthetic_copy)
    assert ds.arms["n"].tolist() == [21, 20] and ds.arms.index.tolist() == [2, 3]
    assert "comparative sources (arms.csv): 1 (2 arm rows)" in ds.summary()


def test_a_study_with_arm_rows_only_is_accepted(synthetic_copy):
    _drop_rows(synthetic_copy, "syn_c", "mortality.csv", "biomarkers.csv")    # no outcome row but its arms
    _arms(synthetic_copy, "syn_c,anakinra,observational,2,21,reported,Table 2,",
          "syn_c,control,observational,5,20,reported,Table 2,")
    ds = hm.read_dataset(synthetic_copy)
    assert "syn_c" not in set(ds.mortality["study_id"]) | set(ds.biomarkers["study_id"])
    assert set(ds.arms["study_id"]) == {"syn_c"}


@pytest.mark.parametrize("rows, where, fragment", [
    (["nobody,anakinra,observational,2,21,reported,x,", "nobody,control,observational,5,20,reported,x,"],
     (2, "study_id"), "unknown study 'nobody'"),
    (["syn_c,anakinra,observational,2,21,reported,x,"], (2, "arm"), "has no control arm"),
    (["syn_c,anakinra,randomised,2,21,reported,x,", "syn_c,control,observational,5,20,reported,x,"],
     (3, "design"), "different designs"),
    (["syn_c,anakinra,observational,22,21,reported,x,", "syn_c,control,observational,5,20,reported,x,"],
     (2, "deaths"), "exceeds n"),
    (["syn_c,anakinra,observational,2,30,reported,x,", "syn_c,control,observational,5,20,reported,x,"],
     (2, "n"), "exceeds the study's n_patients"),
    (["syn_c,anakinra,observational,,21,reported,x,", "syn_c,control,observational,5,20,reported,x,"],
     (2, "deaths"), "count_method 'reported' needs it"),
    (["syn_c,anakinra,observational,2,21,not_reported,x,", "syn_c,control,observational,,20,not_reported,x,"],
     (2, "deaths"), "must be empty when count_method is 'not_reported'"),
    (["syn_c,placebo,observational,2,21,reported,x,", "syn_c,control,observational,5,20,reported,x,"],
     (2, "arm"), "must be one of: anakinra, control"),
    (["syn_c,anakinra,observational,2,21,reported,x,", "syn_c,anakinra,observational,5,20,reported,x,"],
     (3, "study_id, arm"), "duplicate of row 2"),
])
def test_bad_arm_rows_are_refused(synthetic_copy, rows, where, fragment):
    _arms(synthetic_copy, *rows)
    problems = _problems(synthetic_copy)
    hit = [p for p in problems if (p.file, p.row, p.column) == ("arms.csv", *where)]
    assert hit and any(fragment in p.message for p in hit), problems


def test_an_arms_file_that_is_present_but_empty_is_refused(data_copy):
    (data_copy / "arms.csv").write_text("", encoding="utf-8")
    problems = _problems(data_copy)
    assert [(p.file, p.message) for p in problems] == [("arms.csv", "file is empty (no header and no rows)")]


def test_grade_and_covid19_are_checked(data_copy):
    edit(data_copy / "studies.csv", "Measurements and main results\",peer_reviewed_abstract,false",
         "Measurements and main results\",full_paper,maybe")
    problems = {(p.row, p.column): p.message for p in _problems(data_copy) if p.file == "studies.csv"}
    assert "must be one of: peer_reviewed_full" in problems[(2, "grade")]
    assert "true or false" in problems[(2, "covid19")]
