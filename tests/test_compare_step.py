"""The comparison of covariate sets as a step of its own: added to a result (in memory or read
back from its folder) from the draws it holds, it gives the table the one-step run gives."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import hlh_meta as hm

SPECS = Path(__file__).parent / "specs"


@pytest.fixture(scope="module")
def one_step(ds):
    return hm.run_analysis(SPECS / "mortality_small.toml", ds, compare=True)


def test_comparing_a_saved_result_gives_the_one_step_table(one_step, ds, tmp_path):
    """Fit without the comparison, save, read back and compare: the same table, number for
    number, as fitting with the comparison (the sets' fits have their own seeds and the
    primary's draws are the same), and the primary posterior is not sampled again."""
    alone = hm.run_analysis(SPECS / "mortality_small.toml", ds)
    assert "comparison" not in alone.tables and alone.manifest["compared"] is False
    alone.save(tmp_path / "m")
    loaded = hm.AnalysisResult.load(tmp_path / "m")
    phases = []
    compared = loaded.compare(ds, step=phases.append)
    pd.testing.assert_frame_equal(compared.tables["comparison"], one_step.tables["comparison"])
    assert compared.manifest["compared"] is True and "comparison" in compared.manifest["tables"]
    assert compared.idata is loaded.idata
    assert not any("sampling" == p for p in phases) and any("importance sampling" in p for p in phases)
    compared.save(tmp_path / "m", force=True)
    again = hm.AnalysisResult.load(tmp_path / "m")       # the folder's hashes cover the new table
    assert "comparison" in again.tables
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["compared"] is True
    assert "Not compared in this run" not in (tmp_path / "m" / "report.html").read_text()


def test_a_folder_without_the_comparison_says_how_to_add_it(ds, tmp_path):
    alone = hm.run_analysis(SPECS / "mortality_small.toml", ds)
    alone.save(tmp_path / "m", figures=False)
    html = (tmp_path / "m" / "report.html").read_text()
    assert "Not compared in this run" in html and "hlh-meta compare" in html


def test_other_tables_are_refused(one_step, data_copy):
    """Tables other than those fitted (one death fewer) are an error naming them."""
    path = data_copy / "mortality.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = frame.index[pd.to_numeric(frame["deaths"], errors="coerce") > 0][0]
    frame.loc[row, "deaths"] = str(int(frame.loc[row, "deaths"]) - 1)
    frame.to_csv(path, index=False)
    with pytest.raises(hm.InputError, match="not those this result was fitted to"):
        one_step.compare(data_copy)
