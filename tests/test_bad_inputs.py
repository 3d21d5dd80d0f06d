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
