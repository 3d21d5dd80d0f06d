"""The bad-input corpus (tests/bad_inputs.toml): every broken table set is refused with a
message naming file, row and column, exit status 2, no traceback and nothing written."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlh_meta.cli import app

HERE = Path(__file__).parent
CASES = tomllib.loads((HERE / "bad_inputs.toml").read_text(encoding="utf-8"))["case"]


def materialise(case: dict, folder: Path) -> Path:
    for edit in case["edits"]:
        path = folder / edit["table"]
        if edit.get("delete"):
            path.unlink()
            continue
        if "content" in edit:
            path.write_text(edit["content"], encoding="utf-8")
            continue
        text = path.read_text(encoding="utf-8")
        assert edit["old"] in text, f"{case['name']}: {edit['old']!r} not in {edit['table']}"
        path.write_bytes(text.replace(edit["old"], edit["new"], 1).encode(edit.get("encoding", "utf-8")))
    return folder


def test_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_data_check_refuses(case, data_copy):
    res = CliRunner().invoke(app, ["data", "check", str(materialise(case, data_copy))])
    exp = case["expect"]
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    where = exp["file"] + (f", row {exp['row']}" if "row" in exp else "")
    where += f", column '{exp['column']}'" if "column" in exp else ""
    lines = [line for line in res.output.splitlines() if where in line]
    assert lines, f"no line naming {where!r}:\n{res.output}"
    assert any(exp["fragment"] in line for line in lines), res.output
    if "count" in exp:
        problems = [line for line in res.output.splitlines() if line.startswith("  - ")]
        assert len(problems) == exp["count"], res.output


@pytest.mark.parametrize("case", CASES[:3], ids=[c["name"] for c in CASES[:3]])
def test_fit_refuses_before_writing(case, data_copy, tmp_path):
    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["fit", str(HERE / "specs" / "mortality_small.toml"), "--data",
                                   str(materialise(case, data_copy)), "--out", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "spec, fragment",
    [("[analysis]\nname='m'\nkind='mortality'\n[model]\ncovariate=['trigger']\n", "unknown key"),
     ("[analysis]\nname='../../outside'\nkind='mortality'\n", "analysis.name")],
    ids=["unknown-key", "path-outside-results"],
)
def test_bad_spec_refused_before_writing(tmp_path, spec, fragment):
    path = tmp_path / "spec.toml"
    path.write_text(spec)
    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["fit", str(path), "--out", str(out)])
    assert res.exit_code == 2 and fragment in res.output and "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "outside").exists()


# --- tables that parse but cannot be used: refused in `data check` and `fit` alike ----------------

NUMBERS = [c for c in CASES if c["name"].startswith(("integer_", "negative_integer", "number_", "dispersion_",
                                                     "mean_so", "follow_up_mean_so"))]


@pytest.fixture
def no_sampling(monkeypatch):
    """Any attempt to sample fails the test: these inputs must be refused before."""
    import hlh_meta.inference.sampling as sampling

    def refuse(*args, **kwargs):
        raise AssertionError("sampled although the input is bad")

    monkeypatch.setattr(sampling, "_sample_once", refuse)


def _one_problem(output: str, where: str, fragment: str) -> None:
    assert "Traceback" not in output and "Warning" not in output, output      # no numpy warning on the terminal
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1 and where in problems[0] and fragment in problems[0], output


@pytest.mark.parametrize("case", NUMBERS, ids=[c["name"] for c in NUMBERS])
def test_fit_refuses_numbers_it_cannot_compute_with(case, data_copy, tmp_path, no_sampling):
    exp = case["expect"]
    spec = "biomarkers_small.toml" if exp["file"] == "biomarkers.csv" else "mortality_small.toml"
    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["fit", str(HERE / "specs" / spec), "--data", str(materialise(case, data_copy)),
                                   "--out", str(out)])
    assert res.exit_code == 2, res.output
    _one_problem(res.output, f"{exp['file']}, row {exp['row']}, column '{exp['column']}'", exp["fragment"])
    assert not out.exists()


def test_integer_of_thousands_of_digits_is_one_short_problem(data_copy):
    edit = {"table": "studies.csv", "old": "24583503", "new": "9" * 5000}     # beyond int()'s 4300-digit limit
    res = CliRunner().invoke(app, ["data", "check", str(materialise({"name": "long", "edits": [edit]}, data_copy))])
    assert res.exit_code == 2
    _one_problem(res.output, "studies.csv, row 2, column 'pmid'", "(5000 characters)")
    assert len(res.output) < 1000


def _rewrite(path: Path, change) -> None:
    import csv
    import io

    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(change(rows))
    path.write_text(out.getvalue(), encoding="utf-8")


def _without(column: str):
    def change(rows):
        i = rows[0].index(column)
        return [r[:i] + r[i + 1:] for r in rows]
    return change


@pytest.mark.parametrize("table, column, fragment", [
    ("mortality.csv", "deaths", "rows 2, 4,"),                 # rows whose count_method needs it
    ("mortality.csv", "percent", "count_method 'from_percentage' needs it"),
    ("mortality.csv", "n", "needs it"),
    ("biomarkers.csv", "baseline_sem", "add it"),               # no row says it needs it: still not silently "none"
    ("studies.csv", "n_iv", "add it"),
])
@pytest.mark.parametrize("command", ["data", "fit"])
def test_missing_optional_column_is_one_problem(data_copy, tmp_path, no_sampling, table, column, fragment, command):
    _rewrite(data_copy / table, _without(column))
    args = (["data", "check", str(data_copy)] if command == "data" else
            ["fit", str(HERE / "specs" / "mortality_small.toml"), "--data", str(data_copy), "--out", str(tmp_path / "r")])
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    _one_problem(res.output, f"{table}, row 1, column '{column}'", f"column '{column}' missing")
    assert fragment in res.output


def test_descriptive_column_may_be_left_out(data_copy):
    _rewrite(data_copy / "mortality.csv", _without("notes"))
    res = CliRunner().invoke(app, ["data", "check", str(data_copy)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("table", ["studies.csv", "mortality.csv", "biomarkers.csv"])
def test_trailing_empty_columns_are_named(data_copy, table):
    """A spreadsheet may save empty columns after the last one: the message names them by
    position and letter, and says what they are."""
    _rewrite(data_copy / table, lambda rows: [r + ["", ""] for r in rows])
    res = CliRunner().invoke(app, ["data", "check", str(data_copy)])
    assert res.exit_code == 2
    width = len((data_copy / table).read_text(encoding="utf-8").splitlines()[0].split(","))
    _one_problem(res.output, f"{table}, row 1", f"positions {width - 1} (")
    assert "without a name" in res.output and "delete them" in res.output and "more than once" not in res.output


def test_unnamed_column_with_values_is_not_called_empty(data_copy):
    _rewrite(data_copy / "studies.csv", lambda rows: [r + (["x"] if i else [""]) for i, r in enumerate(rows)])
    res = CliRunner().invoke(app, ["data", "check", str(data_copy)])
    assert res.exit_code == 2
    assert "an empty column name at position" in res.output and "delete them" not in res.output


# --- damaged results folders: `hlh-meta report` names what is damaged, exit 2 -------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A results folder of the small biomarker analysis (a few seconds of sampling)."""
    out = tmp_path_factory.mktemp("saved")
    res = CliRunner().invoke(app, ["fit", str(HERE / "specs" / "biomarkers_small.toml"), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return out / "biomarkers"


def _manifest_edit(change):
    def damage(folder: Path) -> None:
        import json

        path = folder / "manifest.json"
        manifest = json.loads(path.read_text())
        path.write_text(json.dumps(change(manifest)))
    return damage


def _truncate(name: str, size: int):
    def damage(folder: Path) -> None:
        (folder / name).write_bytes((folder / name).read_bytes()[:size])
    return damage


DAMAGES = {
    "posterior_truncated": (_truncate("posterior.nc", 3000), "posterior.nc was changed"),
    "posterior_empty": (_truncate("posterior.nc", 0), "posterior.nc was changed"),
    "posterior_garbage": (lambda f: (f / "posterior.nc").write_bytes(bytes(range(256)) * 20), "posterior.nc was changed"),
    "posterior_deleted": (lambda f: (f / "posterior.nc").unlink(), "posterior.nc missing"),
    "table_deleted": (lambda f: (f / "derived.csv").unlink(), "derived.csv missing"),
    "table_edited": (lambda f: (f / "summary.csv").write_text((f / "summary.csv").read_text().replace("mu[", "banana[", 1)),
                     "summary.csv was changed"),
    "manifest_not_json": (lambda f: (f / "manifest.json").write_text("{not json"), "manifest.json cannot be read"),
    "manifest_not_utf8": (lambda f: (f / "manifest.json").write_bytes(b"\xff\xfe{}"), "manifest.json cannot be read"),
    "manifest_a_list": (lambda f: (f / "manifest.json").write_text("[1, 2]"), "does not hold an object"),
    "manifest_without_kind": (_manifest_edit(lambda m: {k: v for k, v in m.items() if k != "kind"}), "no 'kind'"),
    "manifest_tables_outside": (_manifest_edit(lambda m: {**m, "tables": ["../../etc/passwd"]}), "not table names"),
    "manifest_hashes_not_object": (_manifest_edit(lambda m: {**m, "files_sha256": [1]}), "'files_sha256' is not"),
    # a folder written before hashes were recorded: what cannot be read is still named
    "unhashed_posterior_truncated": (lambda f: (_manifest_edit(lambda m: {k: v for k, v in m.items()
                                                                          if k != "files_sha256"})(f),
                                                _truncate("posterior.nc", 3000)(f)), "posterior.nc cannot be read"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_report_names_what_is_damaged(saved, tmp_path, name):
    damage, fragment = DAMAGES[name]
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    (folder / "report.html").unlink()
    damage(folder)
    res = CliRunner().invoke(app, ["report", str(folder)])
    assert res.exit_code == 2, res.output
    assert "results folder damaged" in res.output and fragment in res.output, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    assert not (folder / "report.html").exists()


def test_report_of_an_intact_folder_is_rebuilt(saved, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    (folder / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(folder)])
    assert res.exit_code == 0, res.output
    assert (folder / "report.html").is_file()


def test_report_in_a_folder_that_cannot_be_written_is_exit_2(saved, tmp_path, monkeypatch):
    import errno

    import hlh_meta.result as result_module

    def read_only(result, path, figure_dir=None):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(result_module, "write_report", read_only)
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    res = CliRunner().invoke(app, ["report", str(folder)])
    assert res.exit_code == 2, res.output
    assert "cannot write the report" in res.output and "Read-only file system" in res.output
    assert not list(folder.glob(".report*"))


@pytest.mark.parametrize("target", ["missing", "a_file"])
def test_report_of_what_is_not_a_results_folder(tmp_path, target):
    path = tmp_path / target
    if target == "a_file":
        path.write_text("x")
    res = CliRunner().invoke(app, ["report", str(path)])
    assert res.exit_code == 2 and "not a results folder" in res.output


def test_save_speaks_python(saved, tmp_path):
    """AnalysisResult.save tells a Python user about force=True, not the command line's --force."""
    import hlh_meta as hm

    result = hm.AnalysisResult.load(saved)
    shutil.copytree(saved, tmp_path / "there")
    with pytest.raises(hm.InputError) as exc:
        result.save(tmp_path / "there", figures=False, report=False)
    assert "force=True" in str(exc.value) and "--force" not in str(exc.value) and "--out" not in str(exc.value)


# --- spec values checked before any sampling, naming the spec file and key ----------------------

def _spec_with(tmp_path: Path, base: str, section: str, line: str) -> Path:
    """A copy of a test spec with ``line`` set in ``[section]`` (replacing the key if there)."""
    key = line.split("=")[0].strip()
    lines, out, current, done = (HERE / "specs" / base).read_text().splitlines(), [], None, False
    for text in lines:
        stripped = text.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            if current == section and not done:
                out.append(line)
                done = True
            current = stripped.strip("[]")
        elif current == section and stripped.split("=")[0].strip() == key:
            out.append(line)
            done = True
            continue
        out.append(text)
    if not done:
        out += [line] if current == section else [f"[{section}]", line]
    path = tmp_path / f"{Path(base).stem}_{section}.toml"
    path.write_text("\n".join(out) + "\n")
    return path


M, B = "mortality_small.toml", "biomarkers_small.toml"
SPEC_CASES = {
    "attribution_unknown": (M, "data", 'attribution = "other"', "data.attribution", "primary, alternative"),
    "attribution_on_biomarkers": (B, "data", 'attribution = "late"', "data.attribution",
                                  "not read by a biomarkers analysis; it applies to mortality"),
    "correlation_above_one": (B, "data", "correlation = 1.5", "data.correlation", "[-1, 1], got 1.5"),
    "correlation_nan": (B, "data", "correlation = nan", "data.correlation", "got nan"),
    "correlation_on_mortality": (M, "data", "correlation = -2", "data.correlation",
                                 "not read by a mortality analysis; it applies to biomarkers"),
    "correlation_range_reversed": (B, "data", "correlation_range = [0.9, 0.1]", "data.correlation_range", "low then high"),
    "correlation_range_one_end": (B, "data", "correlation_range = [0.3]", "data.correlation_range", "two numbers"),
    "missing_dispersion_unknown": (B, "data", 'missing_dispersion = "guess"', "data.missing_dispersion", "impute_cv"),
    "covariate_set_unknown": (M, "comparison", 'covariate_sets = [["sex"]]', "comparison.covariate_sets", "sex"),
    "covariate_set_unknown_among_valid": (M, "comparison", 'covariate_sets = [[], ["sex"]]', "comparison.covariate_sets",
                                          "unknown covariate(s) sex"),
    "covariate_set_not_a_list": (M, "comparison", 'covariate_sets = ["trigger"]', "comparison.covariate_sets",
                                 "must be a list"),
    "covariate_set_alone": (M, "comparison", 'covariate_sets = [["trigger"]]', "comparison.covariate_sets", "two or more"),
    "covariate_set_twice": (M, "comparison", 'covariate_sets = [["trigger"], ["trigger"]]', "comparison.covariate_sets",
                            "listed twice"),
    "covariate_named_twice_in_a_set": (M, "comparison", 'covariate_sets = [[], ["trigger", "trigger"]]',
                                       "comparison.covariate_sets", "twice"),
    "model_covariate_unknown": (M, "model", 'covariates = ["sex"]', "model.covariates", "sex"),
    "threshold_negative_percent": (M, "report", "threshold = -5", "report.threshold", "above 0 and below 100"),
    "threshold_over_100_percent": (M, "report", "threshold = 200", "report.threshold", "got 200"),
    "threshold_zero_percent": (M, "report", "threshold = 0", "report.threshold", "got 0"),
    "threshold_infinite": (M, "report", "threshold = inf", "report.threshold", "got inf"),
    "threshold_full_reduction": (B, "report", "threshold = 100", "report.threshold", "below 100"),
    "seed_written_as_float": (M, "sampling", "seed = 1.0", "sampling.seed", "got 1.0 ("),
    "draws_written_as_float": (M, "sampling", "draws = 50.0", "sampling.draws", "got 50.0 ("),
    "chains_unbounded": (M, "sampling", "chains = 100000", "sampling.chains", "GiB"),
    "draws_past_any_memory": (M, "sampling", "draws = 10000000000", "sampling.draws", "even at one value per draw"),
    "tune_past_any_memory": (B, "sampling", "tune = 10000000000", "sampling.tune", "GiB"),
}


@pytest.mark.parametrize("name", list(SPEC_CASES))
def test_spec_value_refused_before_sampling(name, tmp_path, no_sampling):
    base, section, line, key, fragment = SPEC_CASES[name]
    spec = _spec_with(tmp_path, base, section, line)
    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["fit", str(spec), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert f"{spec}: [{key}]" in res.output and fragment in res.output, res.output
    assert "Traceback" not in res.output and not out.exists()


def test_run_checks_every_spec_before_the_first_samples(tmp_path, no_sampling):
    bad = _spec_with(tmp_path, B, "report", "threshold = 150")
    res = CliRunner().invoke(app, ["run", str(HERE / "specs" / M), str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "report.threshold" in res.output, res.output


def test_sensitivity_draws_named_in_their_section(tmp_path, no_sampling):
    spec = _spec_with(tmp_path, M, "sensitivity", "draws = 10000000000")
    res = CliRunner().invoke(app, ["sensitivity", str(spec), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and f"{spec}: [sensitivity.draws]" in res.output, res.output


def test_memory_bound_uses_the_model_size(tmp_path, no_sampling, monkeypatch):
    """A request within reach at one value per draw is refused once the model's values per draw
    are counted (the machine's memory set to 4 GiB, so the test does not depend on the machine)."""
    import hlh_meta.inference.sampling as sampling

    monkeypatch.setattr(sampling, "machine_memory", lambda: 4 << 30)
    spec = _spec_with(tmp_path, M, "sampling", "draws = 200000")
    res = CliRunner().invoke(app, ["fit", str(spec), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "[sampling.draws]" in res.output and "values per draw" in res.output and "even at one" not in res.output


def test_memory_estimate_grows_with_every_request():
    from hlh_meta.inference import SamplerSettings
    from hlh_meta.inference.sampling import memory_needed

    base = SamplerSettings()
    need = memory_needed(base, 100)
    for change in ({"chains": 8}, {"draws": 2000}, {"tune": 5000}):
        assert memory_needed(SamplerSettings.of(base, **change), 100) > need
    assert memory_needed(base, 200) > need


@pytest.mark.parametrize("args, fragment", [
    (["--serial", "--workers", "3"], "--workers and --serial"),
    (["--workers", "-1"], "at least 1, got -1"),
    (["--workers", "0"], "at least 1, got 0"),
    (["--serial", "--scheduler", "tcp://127.0.0.1:1"], "--serial and --scheduler"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers and --scheduler"),
])
def test_sensitivity_executor_options_refused(tmp_path, no_sampling, args, fragment):
    res = CliRunner().invoke(app, ["sensitivity", str(HERE / "specs" / M), "--out", str(tmp_path / "r"), *args])
    assert res.exit_code == 2 and fragment in res.output and "Traceback" not in res.output, res.output


@pytest.mark.parametrize("kwargs, fragment", [
    ({"executor": "serial", "workers": 3}, "workers = 3 is for the 'processes' executor"),
    ({"executor": "processes", "workers": -1}, "at least 1"),
    ({"executor": "processes", "workers": 2.5}, "whole number"),
    ({"executor": "processes", "scheduler": "tcp://x:1"}, "for the 'dask' executor"),
    ({"executor": "threads"}, "must be one of"),
])
def test_executor_arguments_checked(kwargs, fragment):
    from hlh_meta.errors import InputError
    from hlh_meta.sensitivity.executors import check_executor

    with pytest.raises(InputError, match=None) as exc:
        check_executor(**kwargs)
    assert fragment in str(exc.value)


def test_workers_bounded_by_memory(monkeypatch):
    import hlh_meta.sensitivity.executors as executors
    from hlh_meta.errors import InputError

    monkeypatch.setattr(executors, "memory_budget", lambda: 4 << 30)
    executors.check_workers(2, 100 << 20)
    with pytest.raises(InputError) as exc:
        executors.check_workers(64, 100 << 20)
    assert "workers = 64" in str(exc.value) and "at most" in str(exc.value)


# --- the Python API: argument types at the boundary, Python terms, any main module -------------

@pytest.mark.parametrize("ds, error, fragment", [
    ("__frame__", TypeError, "a DataFrame is one table"),
    (3, TypeError, "ds must be a Dataset"),
    ({"studies": None}, TypeError, "got dict"),
    ("no/such/folder", "DataError", "no such file or folder"),
])
def test_run_analysis_checks_ds(ds, error, fragment, no_sampling):
    import pandas as pd

    import hlh_meta as hm

    ds = pd.DataFrame({"deaths": [1]}) if ds == "__frame__" else ds
    error = hm.DataError if error == "DataError" else error
    with pytest.raises(error) as exc:
        hm.run_analysis(HERE / "specs" / M, ds=ds)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("as_text", [True, False])
def test_run_analysis_reads_a_path_of_tables(data_copy, no_sampling, as_text):
    """A folder given as ``ds`` (str or Path) is read and checked like read_dataset: a broken
    table is a DataError naming it, a sound one reaches sampling."""
    import hlh_meta as hm

    path = str(data_copy) if as_text else data_copy
    with pytest.raises(AssertionError, match="sampled"):
        hm.run_analysis(HERE / "specs" / M, ds=path)
    (data_copy / "studies.csv").write_text((data_copy / "studies.csv").read_text().replace(",2014,", ",twenty,", 1))
    with pytest.raises(hm.DataError, match="studies.csv, row 2, column 'year'"):
        hm.run_analysis(HERE / "specs" / M, ds=path)


@pytest.mark.parametrize("spec, fragment", [(3, "got int"), (["models/mortality.toml"], "got list")])
def test_run_analysis_checks_spec(spec, fragment):
    import hlh_meta as hm

    with pytest.raises(TypeError, match="spec must be the path of an analysis spec") as exc:
        hm.run_analysis(spec)
    assert fragment in str(exc.value)


def test_folder_given_as_spec(tmp_path):
    res = CliRunner().invoke(app, ["fit", str(tmp_path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "is a folder, not a spec file" in res.output


@pytest.mark.parametrize("engine", ["binomial", "normal"])
def test_bool_column_is_not_a_count(engine, no_sampling):
    import pandas as pd

    import hlh_meta as hm

    if engine == "binomial":
        df = pd.DataFrame({"deaths": [True, False, True], "n": [3, 4, 5], "study": ["a", "b", "c"]})
        call = lambda: hm.fit_binomial(df, events="deaths", total="n", study="study")     # noqa: E731
        column = "deaths"
    else:
        df = pd.DataFrame({"yi": [0.1, -0.2, 0.3], "sei": [True, True, True], "study": ["a", "b", "c"]})
        call = lambda: hm.fit_normal(df, estimate="yi", std_err="sei", study="study")     # noqa: E731
        column = "sei"
    with pytest.raises(hm.DataError) as exc:
        call()
    assert f"column '{column}': holds true/false values" in str(exc.value)


def test_gate_warnings_of_many_fits_summarised_once():
    import warnings

    from hlh_meta.inference import GateWarning, gate_summary

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gate_summary("the cross-validation"):
            for problems in ("R-hat 1.013 > 1.01; tail ESS 190 < 400", "bulk ESS 300 < 400", "3 divergent transitions"):
                warnings.warn(f"the diagnostics gate failed after 2 attempt(s): {problems}; the draws may not "
                              "represent the posterior", GateWarning)
            warnings.warn("something else", UserWarning)
    messages = [str(w.message) for w in caught]
    gate = [m for m in messages if "diagnostics gate" in m]
    assert len(gate) == 1 and "failed in 3 of the fits for the cross-validation" in gate[0]
    assert "the cross-validation: R-hat, tail ESS, bulk ESS, divergences;" in gate[0]
    assert "something else" in messages


POOL_SCRIPT = """
from hlh_meta.sensitivity.executors import submit, worker_pool
with worker_pool(2) as pool:
    print("results", sorted(submit(pool, abs, -k).result() for k in (3, 4)))
"""


@pytest.mark.parametrize("how", ["stdin", "-c", "file"])
def test_worker_processes_start_from_any_main_module(tmp_path, how):
    """A script fed on standard input cannot be imported again by a spawned worker; the workers
    start without the caller's main module, so they run whatever it is."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    script = tmp_path / "script.py"
    script.write_text(POOL_SCRIPT)
    args = {"stdin": ([sys.executable, "-"], POOL_SCRIPT), "-c": ([sys.executable, "-c", POOL_SCRIPT], None),
            "file": ([sys.executable, str(script)], None)}[how]
    res = subprocess.run(args[0], input=args[1], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "results [3, 4]" in res.stdout and "Traceback" not in res.stderr


def test_groups_of_lost_workers_run_here(monkeypatch):
    """Worker processes that die (killed, out of memory) leave no broken pool: their groups run
    in this process, with one warning."""
    from concurrent.futures import Future, ThreadPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from types import SimpleNamespace

    import pandas as pd

    import hlh_meta.sensitivity.executors as executors
    from hlh_meta.analyses import load_spec
    from hlh_meta.analyses.base import PRIMARY, Variant
    from hlh_meta.sensitivity.runner import Planned

    class DeadPool(ThreadPoolExecutor):
        """Every group submitted fails as when its worker process is killed."""

        def __init__(self, max_workers=None, **kwargs):
            super().__init__(max_workers)

        def submit(self, fn, *args, **kwargs):
            fut = Future()
            fut.set_running_or_notify_cancel()
            fut.set_exception(BrokenProcessPool("a worker was killed"))
            return fut

    monkeypatch.setattr(executors, "ProcessPoolExecutor", DeadPool)
    monkeypatch.setattr(executors, "values_per_draw", lambda inputs: 1)
    monkeypatch.setattr(executors, "run_group",
                        lambda spec, items, fitted=None, base=None: [pd.DataFrame({"variant": [it.variant.name]}) for it in items])
    # two variants of other structures (a variant with nothing to fit never goes to a worker)
    planned = [Planned(PRIMARY, note="x"), Planned(Variant("a", "f"), SimpleNamespace(structure="A")),
               Planned(Variant("b", "f"), SimpleNamespace(structure="B"))]
    with pytest.warns(executors.WorkersLostWarning, match="a worker was killed"):
        frames = executors.run_groups(load_spec(HERE / "specs" / "mortality_small.toml"), planned,
                                      executor="processes", workers=1)
    assert [f["variant"].iloc[0] for f in frames] == ["primary", "a", "b"]


def test_interrupted_write_creates_no_folder(tmp_path):
    """A results folder interrupted before it is in place leaves nothing: not even the folders
    made to hold it (`fit --out NEW` interrupted leaves no empty NEW/); folders that were there stay."""
    from hlh_meta.report.writer import atomic_dir

    (tmp_path / "there").mkdir()
    for target, first_new in ((tmp_path / "new" / "deeper" / "mortality", tmp_path / "new"),
                              (tmp_path / "there" / "mortality", tmp_path / "there" / "mortality")):
        with pytest.raises(KeyboardInterrupt):
            with atomic_dir(target) as tmp:
                (tmp / "summary.csv").write_text("x")
                raise KeyboardInterrupt
        assert not first_new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"] and not any((tmp_path / "there").iterdir())


def test_interrupt_swallowed_by_a_callback_still_stops_the_write(tmp_path, monkeypatch):
    """A Ctrl-C that a compiler callback swallowed ("Exception ignored ...") is recorded, and the
    results folder is not put in place."""
    from hlh_meta.errors import Interrupts
    from hlh_meta.report.writer import atomic_dir

    monkeypatch.setattr(Interrupts, "pending", None)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "out" / "mortality") as tmp:
            (tmp / "summary.csv").write_text("x")
            Interrupts.note()                     # what the program's handlers do on SIGINT
    assert not (tmp_path / "out").exists()


def test_interrupts_reach_sampling_no_later(monkeypatch):
    import hlh_meta.inference.sampling as sampling
    from hlh_meta.errors import Interrupts

    monkeypatch.setattr(Interrupts, "pending", "SIGTERM")
    monkeypatch.setattr(sampling, "_nutpie_compiled", lambda *a: pytest.fail("compiled after an interrupt"))
    with pytest.raises(KeyboardInterrupt):
        sampling._sample_once(None, None, {}, sampling.SamplerSettings())


WORKER_SCRIPT = """
import os, signal
from hlh_meta.sensitivity.executors import submit, worker_pool
with worker_pool(1) as pool:
    print("worker ignores Ctrl-C:", submit(pool, signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN)
"""


def test_worker_processes_leave_ctrl_c_to_the_caller(tmp_path):
    """A terminal sends Ctrl-C to every process of the group: workers ignore it (no traceback
    from them); the calling process stops them."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", WORKER_SCRIPT], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    assert res.returncode == 0 and "worker ignores Ctrl-C: True" in res.stdout, res.stderr


SWEEP_DELAYS = (1, 3, 5, 7, 9, 11, 13, 15, 18, 21, 25, 30)


@pytest.mark.slow
@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
@pytest.mark.parametrize("delay", SWEEP_DELAYS)
def test_signal_sweep_with_an_empty_compile_cache(tmp_path, delay, signame, code):
    """`hlh-meta fit` on an empty compile cache, signalled as a terminal does (the whole process
    group) at one of many moments, from the first import through compiling and sampling to the
    writing: the exit status is the signal's, one line says so, no process prints a traceback and
    nothing is created; or, when the signal comes after the work, the results are complete."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cache, out = tmp_path / "cache", tmp_path / "new" / "results"
    env = {**os.environ, "PYTENSOR_FLAGS": f"compiledir={cache / 'pytensor'}", "NUMBA_CACHE_DIR": str(cache / "numba"),
           "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "import sys; from hlh_meta.cli import main; sys.argv[0] = 'hlh-meta'; sys.exit(main())",
           "fit", str(HERE / "specs" / M), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    try:
        os.killpg(proc.pid, getattr(signal, signame))
    except ProcessLookupError:
        pass
    output, _ = proc.communicate(timeout=300)
    assert "Traceback" not in output and "Exception ignored" not in output, output
    if proc.returncode == 0:                              # the signal came after the work
        assert (out / "mortality" / "manifest.json").is_file(), output
    else:
        assert proc.returncode == code, output
        assert output.strip().splitlines()[-1].endswith("nothing was written"), output
        assert not (tmp_path / "new").exists(), output


def test_stopped_workers_do_not_keep_the_caller_waiting():
    """After an interrupt the calling process stops its workers instead of waiting for their groups."""
    import time

    from hlh_meta.sensitivity.executors import stop_workers, submit, worker_pool

    started = time.perf_counter()
    with worker_pool(1) as pool:
        fut = submit(pool, time.sleep, 120)
        while not fut.running() and time.perf_counter() - started < 60:
            time.sleep(0.1)
        manager = pool._executor_manager_thread
        stop_workers(pool)
        # the pool's manager thread has ended: the exit hook of process pools finds its pipe closed
        assert not manager.is_alive()
    assert time.perf_counter() - started < 60


def test_stopping_a_pool_without_a_manager_thread():
    """stop_workers on a pool that lacks the private attributes it reads: stopped all the same."""
    from hlh_meta.sensitivity.executors import stop_workers

    calls = []

    class Bare:
        def shutdown(self, wait=True, cancel_futures=False):
            calls.append((wait, cancel_futures))

    stop_workers(Bare())
    assert calls == [(False, True)]
