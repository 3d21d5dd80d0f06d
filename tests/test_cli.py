"""The command line: exit codes, messages, results folders, reproducibility."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
    assert " studies, " in res.output and "valid" in res.output


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
    res = invoke("run", str(SPECS / "mortality_small.toml"), str(SPECS / "biomarkers_small.toml"), "--out", str(out),
                 "--quiet", "--compare")
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
    assert {"studies.csv", "mortality.csv", "biomarkers.csv"} <= set(manifest["data_sha256"])
    assert "pymc" in manifest["versions"] and "diagnostics" in manifest
    assert not list(results.glob(".*partial"))


def test_mortality_derived_quantities(results):
    import pandas as pd

    derived = pd.read_csv(results / "mortality" / "derived.csv")
    typical = derived[derived["id"].str.startswith("mortality:mortality_typical")]
    assert list(derived.columns[:2]) == ["id", "quantity"] and derived["id"].is_unique
    assert {"P(<10%)", "P(<20%)", "P(<30%)"} <= set(derived.columns)
    assert "mortality:mortality_typical" in set(typical["id"])
    assert "mortality:mortality_typical:trigger=rheumatological" in set(typical["id"])
    assert typical["label"].str.contains("rheumatological").any()
    assert {"support", "contraction", "prior_sensitivity", "studies_informing", "extrapolation"} <= set(derived.columns)
    assert ((typical["q2.5"] >= 0) & (typical["q97.5"] <= 100)).all()
    assert derived["id"].str.startswith("mortality:odds_ratio:").sum() == 4
    assert (results / "mortality" / "comparison.csv").is_file()


def test_existing_results_are_not_overwritten(results):
    before = (results / "mortality" / "summary.csv").read_bytes()
    res = invoke("fit", str(SPECS / "mortality_small.toml"), "--out", str(results), "--quiet")
    assert res.exit_code == 2 and "--force" in res.output
    assert (results / "mortality" / "summary.csv").read_bytes() == before


def test_a_second_run_with_nothing_changed_skips_and_a_change_is_refused(results, tmp_path, monkeypatch):
    """`run` skips an analysis whose folder is up to date (same spec, tables, code, libraries)
    without sampling; a changed spec file is not up to date (without --force: exit 2)."""
    import shutil

    import hlh_meta.pipeline as pipeline

    def no_sampling(*args, **kwargs):
        raise AssertionError("an up-to-date analysis was run again")

    monkeypatch.setattr(pipeline, "run_analysis", no_sampling)
    before = (results / "mortality" / "summary.csv").read_bytes()
    res = invoke("run", str(SPECS / "mortality_small.toml"), str(SPECS / "biomarkers_small.toml"), "--out", str(results))
    assert res.exit_code == 0, res.output
    assert res.output.count("is up to date") == 2 and "--force refits" in res.output
    assert (results / "mortality" / "summary.csv").read_bytes() == before
    changed = tmp_path / "mortality_small.toml"
    shutil.copy(SPECS / "mortality_small.toml", changed)
    changed.write_text(changed.read_text() + "\n# an edit\n")
    res = invoke("run", str(changed), "--out", str(results), "--quiet")
    assert res.exit_code == 2 and "--force" in res.output


def test_the_comparison_is_a_step_of_its_own(tmp_path, monkeypatch):
    """`fit` leaves the comparison of covariate sets out (no comparison.csv, the manifest says
    so); `run` takes that folder as up to date, `run --compare` does not; `compare` adds the
    comparison from the folder's draws without sampling the primary fit again, and says so
    when the folder holds it already."""
    import hlh_meta.analyses.mortality as mortality
    import hlh_meta.inference.sampling as sampling

    def no_comparison(*args, **kwargs):
        raise AssertionError("the comparison ran")

    spec = str(SPECS / "mortality_small.toml")
    with monkeypatch.context() as m:
        m.setattr(mortality.Mortality, "compare", no_comparison)
        res = invoke("fit", spec, "--out", str(tmp_path), "--quiet")
    assert res.exit_code == 0, res.output
    folder = tmp_path / "mortality"
    assert not (folder / "comparison.csv").exists()
    assert json.loads((folder / "manifest.json").read_text())["compared"] is False
    res = invoke("run", spec, "--out", str(tmp_path))
    assert res.exit_code == 0 and "is up to date" in res.output
    res = invoke("run", spec, "--out", str(tmp_path), "--quiet", "--compare")
    assert res.exit_code == 2 and "--force" in res.output       # not up to date for a run that compares
    figures = sorted(p.name for p in (folder / "figures").iterdir())
    fits = []
    real = sampling.sample_gated

    def counted(*args, **kwargs):
        fits.append(1)
        return real(*args, **kwargs)

    import hlh_meta.pipeline as pipeline

    handed = []
    real_hand = pipeline.FigureDrawer.hand

    def hand(self, *args, **kwargs):
        handed.append(1)
        return real_hand(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(sampling, "sample_gated", counted)
        import hlh_meta.models.engine as engine
        m.setattr(engine, "sample_gated", counted)
        m.setattr(pipeline.FigureDrawer, "hand", hand)
        res = invoke("compare", spec, "--out", str(tmp_path), "--quiet")
    assert res.exit_code == 0, res.output
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["compared"] is True and (folder / "comparison.csv").is_file()
    import pandas as pd

    refits = int(pd.read_csv(folder / "comparison.csv")["refits"].sum())
    assert len(fits) == 1 + refits        # the other covariate set and the refits; the primary fit not again
    # every figure of the fit is drawn again, some of them by the figure process
    assert handed == [1]
    assert set(figures) <= {p.name for p in (folder / "figures").iterdir()} and any("trace" in f for f in figures)
    res = invoke("compare", spec, "--out", str(tmp_path))
    assert res.exit_code == 0 and "holds the comparison already" in res.output


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
    assert {"leave out eloseily2020", "alternative death attribution"} <= set(variants)
    # excluding every study leaves nothing to fit: kept as a row that says so
    note = sens.loc[sens["variant"].str.startswith("exclude high risk"), "note"].iloc[0]
    assert note.startswith("not estimable")
    # the alternative attribution changes the data: the Rajasekaran stratum has 0 deaths there
    rob = pd.read_csv(tmp_path / "mortality" / "robustness.csv")
    verdicts = ("robust", "NOT robust", "undetermined", "not assessable")
    assert rob["verdict"].isin(verdicts).all()
    assert all(f": {v} — primary median" in s for s, v in zip(rob["sentence"], rob["verdict"]))   # a label may hold ": "
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
    # four studies in the model report no IV count (eloseily2020 with 3 strata): one unknown IV share each
    share = idata.posterior["iv_fraction_share"]
    assert share.shape[-2:] == (4, 2)
    assert set(share["iv_fraction_unit"].values) == {"rajasekaran2014", "eloseily2020", "henry2019", "alabdulla_imperial"}


# --- exit statuses: bad input 2, interrupted 130, internal error 1 ----------------------------

def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("old, new, key", [
    ("seed = 5", "seed = -1", "sampling.seed"),
    ("seed = 5", "seed = 18446744073709551616", "sampling.seed"),
    ("draws = 300", "draws = 0", "sampling.draws"),
    ("chains = 2", "chains = 2\nsampler = 'stan'", "sampling.sampler"),
], ids=["negative-seed", "seed-beyond-64-bits", "no-draws", "unknown-sampler"])
def test_bad_sampling_setting_names_the_spec_key_before_any_work(tmp_path, old, new, key):
    spec = tmp_path / "s.toml"
    text = (SPECS / "mortality_small.toml").read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))
    out = tmp_path / "r"
    res = invoke("fit", str(spec), "--out", str(out))
    assert res.exit_code == 2, res.output
    assert f"{spec}: [{key}]" in res.output and "Traceback" not in res.output and "np.int64" not in res.output
    assert _nothing_written(out)


def test_fit_names_the_source_row_of_a_zero_standard_error(data_copy, tmp_path):
    edit(data_copy / "biomarkers.csv", "206,,50,68,,36", "206,,0,68,,0")
    out = tmp_path / "r"
    res = invoke("fit", str(SPECS / "biomarkers_small.toml"), "--data", str(data_copy), "--out", str(out))
    assert res.exit_code == 2, res.output
    assert "biomarkers.csv, row 2, column 'baseline_sem'" in res.output and "<data frame>" not in res.output
    assert _nothing_written(out)


def test_data_check_applies_the_rules_of_the_fit(data_copy):
    edit(data_copy / "mortality.csv", ",44,27,death,0,,from_percentage", ",44,99,death,0,,from_percentage")
    edit(data_copy / "biomarkers.csv", "206,,50,68,,36", "206,,0,68,,0")
    res = invoke("data", "check", str(data_copy))
    assert res.exit_code == 2, res.output
    assert "2 problems" in res.output
    assert "mortality.csv, row 3, column 'percent': no whole number of 44 patients gives 99%" in res.output
    assert "biomarkers.csv, row 2, column 'baseline_sem'" in res.output


def test_ctrl_c_during_sampling_says_interrupted_and_exits_130(tmp_path, monkeypatch):
    """nutpie returns what it has on Ctrl-C: here every chain stopped at the same draw."""
    import nutpie
    import pyarrow

    real = nutpie.sample

    class Cut:
        def __init__(self, raw):
            draws, stats = (list(t) for t in raw.get_arrow_trace())
            keep = pyarrow.record_batch(draws[0]).num_rows - 50
            self.tables = ([pyarrow.record_batch(b).slice(0, keep) for b in draws],
                           [pyarrow.record_batch(b).slice(0, keep) for b in stats])

        def get_arrow_trace(self):
            return self.tables

    monkeypatch.setattr(nutpie, "sample", lambda compiled, **kwargs: Cut(real(compiled, **kwargs)))
    out = tmp_path / "r"
    res = invoke("fit", str(SPECS / "mortality_small.toml"), "--out", str(out), "--quiet")
    assert res.exit_code == 130, res.output
    assert "interrupted" in res.output and "Traceback" not in res.output
    assert _nothing_written(out)


def _internal_fault(*args, **kwargs):
    raise ValueError("an internal fault")


def test_internal_error_exits_1_with_one_line(tmp_path, monkeypatch):
    from hlh_meta.inference import sampling

    monkeypatch.setattr(sampling, "_sample_once", _internal_fault)
    out = tmp_path / "r"
    res = invoke("fit", str(SPECS / "mortality_small.toml"), "--out", str(out), "--quiet")
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("internal error: ValueError: an internal fault"), res.output
    assert "--debug" in lines[0] and "Traceback" not in res.output
    assert _nothing_written(out)


def test_debug_after_the_command_shows_the_traceback_of_an_internal_error(tmp_path):
    script = ("import sys\n"
              "import hlh_meta.inference.sampling as sampling\n"
              "def fault(*args, **kwargs):\n"
              "    raise ValueError('an internal fault')\n"
              "sampling._sample_once = fault\n"
              "from hlh_meta.cli import main\n"
              "sys.argv = ['hlh-meta'] + sys.argv[1:]\n"
              "main()\n")
    args = [sys.executable, "-c", script, "fit", str(SPECS / "mortality_small.toml"), "--out", str(tmp_path / "r"),
            "--quiet"]
    debug = subprocess.run(args + ["--debug"], capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1, debug.stderr
    assert "Traceback" in debug.stderr and "ValueError: an internal fault" in debug.stderr
    plain = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "internal error: ValueError: an internal fault" in plain.stderr


def test_debug_given_to_one_command_is_not_kept_for_the_next(data_copy, monkeypatch):
    from hlh_meta import cli

    edit(data_copy / "mortality.csv", "sjia,rheumatological", "sjia,rheumatologic")
    res = invoke("--debug", "data", "check", str(data_copy))
    assert res.exit_code == 1 and res.exception is not None           # raised, with its traceback
    res = invoke("data", "check", str(data_copy))
    assert res.exit_code == 2 and "Traceback" not in res.output and not cli._state["debug"]


def test_leftover_of_another_run_is_one_line(results, tmp_path, monkeypatch):
    import hlh_meta.pipeline as pipeline
    from hlh_meta.result import AnalysisResult

    saved = AnalysisResult.load(results / "mortality")
    monkeypatch.setattr(pipeline, "run_analysis", lambda *args, **kwargs: saved)
    out = tmp_path / "r"
    leftover = out / ".mortality.abcd1234.partial"        # an older naming: its owner cannot be told
    leftover.mkdir(parents=True)
    res = invoke("fit", str(SPECS / "mortality_small.toml"), "--out", str(out))
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if "left from an earlier run" in line]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {leftover} is left"), res.output
    assert "LeftoverWarning" not in res.output and "warnings.warn" not in res.output
    assert leftover.is_dir() and (out / "mortality" / "summary.csv").is_file()
