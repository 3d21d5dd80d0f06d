"""The command line: exit codes, messages, results folders, reproducibility."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlh_meta.cli import app

from conftest import edit

SPECS = Path(__file__).parent / "specs"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_data_check_bundled():
    res = invoke("data", "check")
    assert res.exit_code == 0, res.output
    assert "5 studies" in res.output and "valid" in res.output


def test_data_check_broken_copy_exits_2_without_traceback(data_copy):
    edit(data_copy / "mortality.csv", "sjia,rheumatological,paediatric,0,13", "sjia,rheumatologic,paediatric,14,13")
    res = invoke("data", "check", str(data_copy))
    assert res.exit_code == 2
    assert "mortality.csv, row 4, column 'trigger'" in res.output
    assert "mortality.csv, row 4, column 'deaths'" in res.output
    assert "Traceback" not in res.output


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    res = invoke("run", str(SPECS / "mortality_small.toml"), str(SPECS / "biomarkers_small.toml"), "--out", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("name", ["mortality", "biomarkers"])
def test_results_folder_contents(results, name):
    folder = results / name
    for f in ("posterior.nc", "summary.csv", "derived.csv", "data_used.csv", "excluded.csv", "report.html", "manifest.json"):
        assert (folder / f).is_file(), f
    assert len(list((folder / "figures").glob("*.png"))) >= 5
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] in (5, 6)
    assert set(manifest["data_sha256"]) == {"studies.csv", "mortality.csv", "biomarkers.csv"}
    assert "pymc" in manifest["versions"] and "diagnostics" in manifest
    assert not list(results.glob(".*partial"))


def test_mortality_derived_quantities(results):
    import pandas as pd

    derived = pd.read_csv(results / "mortality" / "derived.csv")
    typical = derived[derived["quantity"] == "mortality, typical study (%)"]
    assert {"P(<10%)", "P(<20%)", "P(<30%)"} <= set(derived.columns)
    assert typical["profile"].str.contains("rheumatological").any()
    assert ((typical["q2.5"] >= 0) & (typical["q97.5"] <= 100)).all()
    assert (derived["quantity"] == "odds ratio").sum() == 4
    assert (results / "mortality" / "comparison.csv").is_file()


def test_existing_results_are_not_overwritten(results):
    before = (results / "mortality" / "summary.csv").read_bytes()
    res = invoke("fit", str(SPECS / "mortality_small.toml"), "--out", str(results), "--quiet")
    assert res.exit_code == 2 and "--force" in res.output
    assert (results / "mortality" / "summary.csv").read_bytes() == before


def test_same_seed_gives_byte_identical_tables(results, tmp_path):
    res = invoke("fit", str(SPECS / "mortality_small.toml"), "--out", str(tmp_path), "--quiet")
    assert res.exit_code == 0, res.output
    for f in ("summary.csv", "derived.csv"):
        assert (tmp_path / "mortality" / f).read_bytes() == (results / "mortality" / f).read_bytes(), f


def test_report_rebuild(results, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(results / "biomarkers", folder)
    (folder / "report.html").unlink()
    res = invoke("report", str(folder))
    assert res.exit_code == 0, res.output
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and "http://" not in html and "https://" not in html


def test_failed_run_leaves_previous_results(results, tmp_path, monkeypatch):
    import hlh_meta.result as result_module

    shutil.copytree(results / "mortality", tmp_path / "mortality")
    before = (tmp_path / "mortality" / "summary.csv").read_bytes()
    monkeypatch.setattr(result_module, "save_figures", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    res = invoke("fit", str(SPECS / "mortality_small.toml"), "--out", str(tmp_path), "--force", "--quiet")
    assert res.exit_code == 1 and "disk full" in res.output
    assert (tmp_path / "mortality" / "summary.csv").read_bytes() == before
    assert not list(tmp_path.glob(".*partial"))


def test_bad_spec_exits_2(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text("[analysis]\nname='x'\nkind='mortality'\n[model]\ncovariates=['trigger', 'weather']\n")
    res = invoke("fit", str(spec), "--out", str(tmp_path / "r"))
    assert res.exit_code == 2 and "weather" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r" / "x").exists()


def test_sensitivity_command(tmp_path):
    res = invoke("sensitivity", str(SPECS / "mortality_small.toml"), "--out", str(tmp_path), "--quiet")
    assert res.exit_code == 0, res.output
    import pandas as pd

    sens = pd.read_csv(tmp_path / "mortality" / "sensitivity.csv")
    variants = list(dict.fromkeys(sens["variant"]))
    assert variants[0] == "primary"
    assert {"leave out eloseily2020", "alternative death attribution",
            "counts ejh2023_sr/rheumatological = 3/18"} <= set(variants)
    # excluding every study leaves nothing to fit: kept as a row that says so
    note = sens.loc[sens["variant"].str.startswith("exclude high risk"), "note"].iloc[0]
    assert note.startswith("not estimable")
    # the alternative attribution changes the data: the Rajasekaran stratum has 0 deaths there
    rob = pd.read_csv(tmp_path / "mortality" / "robustness.csv")
    assert rob["sentence"].str.contains("robust").all()
    html = (tmp_path / "mortality" / "report.html").read_text()
    assert 'id="sensitivity"' in html and "fig-sensitivity" in html


def test_unknown_variant_family_fails_before_sampling(tmp_path):
    spec = tmp_path / "s.toml"
    text = (SPECS / "mortality_small.toml").read_text().replace('families = ["leave_one_out"', 'families = ["astrology", "leave_one_out"')
    spec.write_text(text)
    res = invoke("sensitivity", str(spec), "--out", str(tmp_path / "r"))
    assert res.exit_code == 2 and "sensitivity.families" in res.output and "astrology" in res.output
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_iv_share_is_one_unknown_per_study(results):
    import arviz as az

    idata = az.from_netcdf(results / "mortality" / "posterior.nc")
    # rajasekaran2014 (1 stratum) and eloseily2020 (3 strata) report no route: two unknown IV shares
    assert idata.posterior["iv_fraction_share"].shape[-2:] == (2, 2)
