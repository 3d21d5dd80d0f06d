"""hlh_meta.run_all: `hlh-meta run` from Python. Every spec checked before any sampling, the
skips (up to date, no usable rows) with their records, the events, the outcomes."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import pytest

import hlh_meta as hm
from hlh_meta.inference.sampling import clear_cache
import hlh_meta.pipeline as pipeline
from hlh_meta import orchestrate
from hlh_meta.freshness import SKIPPED
from hlh_meta.spec import bundled_specs_dir

COMPARISON = bundled_specs_dir() / "comparison.toml"
NO_ROWS = "no row of the tables is usable for this comparison analysis"


class Events(list):
    """An ``on_event`` listener that keeps every event."""

    def __call__(self, kind: str, name: str, text: str) -> None:
        self.append((kind, name, text))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self]


def _tiny(folder: Path, name: str = "tiny", extra: str = "") -> Path:
    """A mortality spec quick to fit: intercept only, no covariate sets to compare, few draws."""
    path = folder / f"{name}.toml"
    path.write_text(f"[analysis]\nname = '{name}'\nkind = 'mortality'\n[model]\ncovariates = []\n"
                    f"[sampling]\ndraws = 100\ntune = 100\nchains = 2\nseed = 1\n{extra}")
    return path


@pytest.fixture
def no_sampling(monkeypatch):
    """Any attempt to sample fails the test."""
    import hlh_meta.inference.sampling as sampling

    def refuse(*args, **kwargs):
        raise AssertionError("sampled")

    monkeypatch.setattr(sampling, "_sample_once", refuse)


@pytest.fixture
def no_tables(monkeypatch):
    """Reading the tables fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the tables were read")

    monkeypatch.setattr(orchestrate, "as_dataset", refuse)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One quick analysis run and written: (spec file, out, outcomes, events)."""
    root = tmp_path_factory.mktemp("run_all")
    spec, out, events = _tiny(root), root / "results", Events()
    clear_cache()                                    # its model compiles (or loads from disk) in this run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # a few draws may fail the diagnostics gate
        outcomes = hm.run_all([spec], out=out, on_event=events)
    return spec, out, outcomes, events


# --- no usable rows ---------------------------------------------------------------------------

def test_an_analysis_without_usable_rows_is_skipped_and_remembered(tmp_path, no_sampling, monkeypatch):
    """The bundled comparison spec has no comparative study to fit: skipped, said, and
    remembered beside the results, so the next run skips it without reading the tables."""
    out, events = tmp_path / "results", Events()
    outcomes = hm.run_all([COMPARISON], out=out, skip_empty=True, on_event=events)
    assert outcomes == [hm.RunOutcome("comparison", out / "comparison", "no usable rows")]
    assert events == [("no usable rows", "comparison", f"{NO_ROWS}; skipped")]
    assert "comparison" in json.loads((out / SKIPPED).read_text())
    assert not (out / "comparison").exists()

    events.clear()
    monkeypatch.setattr(orchestrate, "as_dataset", lambda *a, **k: pytest.fail("the tables were read"))
    [again] = hm.run_all([COMPARISON], out=out, skip_empty=True, on_event=events)
    assert again.status == "no usable rows" and again.result is None
    assert events == [("no usable rows (unchanged)", "comparison",
                       "no usable rows in these tables (unchanged since the last run); skipped")]


def test_without_skip_fresh_no_skip_is_recorded(tmp_path, no_sampling):
    out = tmp_path / "results"
    [done] = hm.run_all([COMPARISON], out=out, skip_empty=True, skip_fresh=False)
    assert done.status == "no usable rows" and not out.exists()


def test_a_spec_given_without_usable_rows_is_refused(tmp_path, no_sampling):
    """Skipping is the default for the bundled specs only: a spec given is meant to run."""
    with pytest.raises(hm.SpecError, match=NO_ROWS) as exc:
        hm.run_all(COMPARISON, out=tmp_path / "results")
    assert f"{COMPARISON}: [data]" in str(exc.value) and not (tmp_path / "results").exists()


def test_the_bundled_specs_by_default(tmp_path, no_sampling, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(COMPARISON, models / "comparison.toml")
    monkeypatch.setattr(orchestrate, "bundled_specs_dir", lambda: models)
    assert [(o.name, o.status) for o in hm.run_all(out=tmp_path / "r")] == [("comparison", "no usable rows")]
    (models / "comparison.toml").unlink()
    with pytest.raises(FileNotFoundError, match="no analysis specs found"):
        hm.run_all(out=tmp_path / "r")


# --- checks before any sampling --------------------------------------------------------------

def test_a_bad_spec_fails_before_any_analysis_samples(tmp_path, no_sampling):
    good, bad = _tiny(tmp_path), _tiny(tmp_path, "bad", extra="[report]\nthreshold = 150\n")
    out, events = tmp_path / "results", Events()
    with pytest.raises(hm.SpecError) as exc:
        hm.run_all([good, bad], out=out, on_event=events)
    assert f"{bad}: [report.threshold]" in str(exc.value)
    assert not out.exists() and events == []


def test_two_specs_of_one_name_are_refused(tmp_path, no_sampling):
    first = _tiny(tmp_path)
    (tmp_path / "again").mkdir()
    second = _tiny(tmp_path / "again")
    with pytest.raises(hm.SpecError, match="two specs share a name"):
        hm.run_all([first, second], out=tmp_path / "results")


def test_arguments_of_the_wrong_type(tmp_path, no_sampling):
    with pytest.raises(TypeError, match="spec must be the path of an analysis spec"):
        hm.run_all([3], out=tmp_path / "results")
    with pytest.raises(TypeError, match="data must be a Dataset"):
        hm.run_all(_tiny(tmp_path), data=3, out=tmp_path / "results")


# --- an analysis written, then up to date ----------------------------------------------------

def test_a_model_compiled_already_is_not_said_to_compile(written, tmp_path):
    """The compile notice is for a compile: a model this process has compiled (and no
    background compile) gives no "compiling" event."""
    spec, _, _, _ = written
    events = Events()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hm.run_all([spec], out=tmp_path / "again", on_event=events)
    assert events[0] == ("step", "tiny", "sampling")
    assert not {"compiling", "compiled"} & set(events.kinds()), events


def test_an_analysis_is_run_and_written(written):
    spec, out, [done], events = written
    folder = (out / "tiny").resolve()
    assert (done.name, done.status, done.folder) == ("tiny", "written", folder)
    assert isinstance(done.result, hm.AnalysisResult) and done.result.name == "tiny"
    assert done.diagnostics_passed == done.result.diagnostics.passed
    timings = json.loads((folder / "manifest.json").read_text())["timings_s"]
    assert done.seconds == timings["total"] > 0
    assert events[:3] == [("step", "tiny", "sampling"), ("compiling", "tiny", orchestrate.COMPILING),
                          ("compiled", "tiny", "")]
    assert events[-1] == ("written", "tiny", str(folder))
    kind, name, text = events[-2]
    assert (kind, name) == ("analysed", "tiny")
    assert re.fullmatch(r"\d+\.\d s; (diagnostics OK|DIAGNOSTICS FLAGGED: .+)", text), text
    assert set(events.kinds()) <= set(orchestrate.EVENTS)


@pytest.mark.parametrize("tables", ["bundled", "dataset", "folder"])
def test_a_second_run_finds_it_up_to_date(written, tables, ds, monkeypatch, no_sampling, no_tables):
    """Nothing changed: the folder is left as it is, without reading the tables or sampling."""
    from hlh_meta.data import bundled_data_dir

    spec, out, _, _ = written
    monkeypatch.setattr(pipeline, "run_analysis", lambda *a, **k: pytest.fail("an up-to-date analysis ran"))
    data = {"bundled": None, "dataset": ds, "folder": bundled_data_dir()}[tables]
    events = Events()
    [done] = hm.run_all([spec], data=data, out=out, on_event=events)
    assert done == hm.RunOutcome("tiny", out / "tiny", "up to date")
    assert events == [("up to date", "tiny", f"{out / 'tiny'} is up to date (same spec, tables, code and libraries)")]


def test_a_run_with_every_folder_up_to_date_imports_no_modelling_library(written):
    import os
    import subprocess
    import sys

    spec, out, _, _ = written
    script = ("import sys, hlh_meta as hm\n"
              f"print([o.status for o in hm.run_all([{str(spec)!r}], out={str(out)!r})], 'pymc' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(hm.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["['up", "to", "date']", "False"]


def test_the_command_with_every_folder_up_to_date_imports_no_modelling_library(written):
    """``hlh-meta run`` of fresh folders (the second run of a day) reads manifests only: no
    PyMC, ArviZ, numba or matplotlib import (ArviZ alone took 1.5 of its 2.9 s)."""
    import os
    import subprocess
    import sys

    from test_cli_startup import MODELLING, PROBE

    spec, out, _, _ = written
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(hm.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PROBE, "run", str(spec), "--out", str(out)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "up to date" in done.stdout + done.stderr
    modules = json.loads(next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))[len("MODULES "):])
    assert not set(modules) & set(MODELLING), sorted(set(modules) & set(MODELLING))


def test_force_refits_and_a_folder_not_up_to_date_is_refused(written, tmp_path, monkeypatch):
    """force runs the analysis again and replaces the folder; without it a folder that is not
    up to date is refused before any sampling, in Python's terms; a leftover of another run
    is told before the analysis runs."""
    spec, out, _, _ = written
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    saved = hm.AnalysisResult.load(out / "tiny")
    calls = []

    def run_analysis(*args, **kwargs):
        calls.append(args[0].name)
        return saved

    monkeypatch.setattr(pipeline, "run_analysis", run_analysis)
    leftover = copy / ".tiny.abcd1234.partial"               # an older naming: its owner cannot be told
    leftover.mkdir()
    events = Events()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # the leftover, again as the folder is written
        [done] = hm.run_all([spec], out=copy, force=True, on_event=events)
    assert calls == ["tiny"] and done.status == "written" and done.result is saved
    assert (copy / "tiny" / "manifest.json").is_file() and leftover.is_dir()
    assert events.kinds()[0] == "leftover" and str(leftover) in events[0][2]
    assert events.kinds()[-2:] == ["analysed", "written"]

    calls.clear()
    with pytest.raises(hm.InputError, match="force=True") as exc:
        hm.run_all([hm.load_spec(spec)], out=copy)          # a Spec, not a file: not taken as up to date
    assert "--force" not in str(exc.value) and calls == []
    with pytest.raises(hm.InputError, match="--force"):
        hm.run_all([spec], out=copy, skip_fresh=False, terms="cli")
    assert calls == []
