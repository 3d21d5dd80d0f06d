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
