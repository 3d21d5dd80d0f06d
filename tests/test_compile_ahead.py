"""hlh-meta run compiles later analyses' models in a background process (CompileAhead)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hlh_meta.analyses import load_spec
from hlh_meta.pipeline import CompileAhead

SPECS = Path(__file__).parent / "specs"


def _intercept_only(tmp_path: Path, name: str = "tiny", extra: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f"[analysis]\nname = '{name}'\nkind = 'mortality'\n[model]\ncovariates = []\n"
                    f"[sampling]\ndraws = 100\ntune = 100\nchains = 2\nseed = 1\n{extra}")
    return path


def test_nothing_starts_for_one_analysis_or_one_core(ds, monkeypatch):
    spec = load_spec(SPECS / "biomarkers_small.toml")
    with CompileAhead([spec], ds) as ahead:
        assert ahead._process is None
        ahead.wait(spec)
    import hlh_meta.pipeline as pipeline

    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 1)
    with CompileAhead([spec, load_spec(SPECS / "mortality_small.toml")], ds) as ahead:
        assert ahead._process is None


def test_a_failing_compile_does_not_hold_up_the_analysis(ds, tmp_path):
    """A spec the background process cannot compile (here: a covariate the tables lack)
    releases its waiter; the error is the analysis's to report when it runs."""
    first = load_spec(SPECS / "biomarkers_small.toml")
    path = tmp_path / "bad.toml"
    path.write_text("[analysis]\nname = 'bad'\nkind = 'mortality'\n[model]\ncovariates = ['no_such_column']\n")
    bad = load_spec(path)
    started = time.perf_counter()
    with CompileAhead([first, bad], ds) as ahead:
        ahead.wait(bad)
        assert ahead._events["bad"].is_set()
    assert time.perf_counter() - started < 60


def test_close_stops_the_background_process(ds, tmp_path):
    specs = [load_spec(SPECS / "biomarkers_small.toml"), load_spec(SPECS / "mortality_small.toml")]
    ahead = CompileAhead(specs, ds)
    assert ahead._process.is_alive()
    ahead.close()
    assert not ahead._process.is_alive()


_LATER = """
import sys, warnings
warnings.simplefilter("ignore")
from hlh_meta.analyses import analysis_for, load_spec
from hlh_meta.data import load_dataset
from hlh_meta.inference.sampling import compile_structure
from hlh_meta.pipeline import CompileAhead

first, later = (load_spec(p) for p in sys.argv[1:3])
ds = load_dataset()
with CompileAhead([first, later], ds) as ahead:
    ahead.wait(later)
analysis = analysis_for(later)
resolved = analysis.resolve(ds, later)
used, _ = analysis.frame(ds, resolved)
inputs = analysis.inputs(ds, resolved, used)
compiled = compile_structure(inputs.model, inputs.structure)
print(compiled.compiled_logp_func.cache_hits, compiled.compiled_expand_func.cache_hits)
"""


def test_a_later_analysis_loads_the_model_compiled_in_the_background(tmp_path):
    """On an empty compile cache, the model the background process compiled for the later
    analysis is loaded from the disk cache by this process (both callbacks are cache hits)."""
    first = SPECS / "biomarkers_small.toml"
    later = _intercept_only(tmp_path)
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'compiled'}"}
    out = subprocess.run([sys.executable, "-c", _LATER, str(first), str(later)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "1"]


def test_a_background_process_that_cannot_start_is_no_error(ds, monkeypatch):
    """The background compile is only a head start: if its process cannot start (e.g. the
    data cannot be sent to it), every analysis compiles its own model, as without it."""
    import multiprocessing

    import hlh_meta.pipeline as pipeline

    real = multiprocessing.get_context("spawn")

    class Unstartable:
        def __init__(self, **kwargs):
            pass

        def start(self):
            raise TypeError("cannot pickle '_thread.lock' object")

    class Context:
        Event = real.Event
        Process = Unstartable

    monkeypatch.setattr(pipeline.multiprocessing, "get_context", lambda method: Context)
    specs = [load_spec(SPECS / "biomarkers_small.toml"), load_spec(SPECS / "mortality_small.toml")]
    with CompileAhead(specs, ds) as ahead:
        assert ahead._process is None
        ahead.wait(specs[1])                      # returns at once


def test_the_heaviest_compile_runs_first_and_outcomes_keep_their_order(ds, tmp_path, monkeypatch):
    """A mortality analysis (compile_weight 2) runs before a biomarkers one given first; its
    model is the one this process compiles, the other's goes to the background process; the
    outcomes come back in the order given."""
    from hlh_meta import orchestrate
    from hlh_meta.analyses import analysis_for
    from hlh_meta.orchestrate import RunOutcome, run_all

    ran, ahead_of = [], []
    monkeypatch.setattr(orchestrate, "_run_one",
                        lambda spec, target, ds, ahead, emit, **kw: ran.append(spec.name) or RunOutcome(spec.name, target, "written"))
    real = CompileAhead.__init__

    def recording(self, specs, data):
        ahead_of.append([s.name for s in specs])
        real(self, [], data)                           # nothing compiled in the background here

    monkeypatch.setattr(CompileAhead, "__init__", recording)
    specs = [SPECS / "biomarkers_small.toml", SPECS / "mortality_small.toml"]
    names = [load_spec(p).name for p in specs]
    assert [analysis_for(load_spec(p)).compile_weight for p in specs] == [1, 2]
    outcomes = run_all(specs, ds, tmp_path / "out", skip_fresh=False)
    assert ran == names[::-1] and ahead_of == [names[::-1]]
    assert [o.name for o in outcomes] == names


def test_the_background_process_runs_at_a_lower_priority(monkeypatch):
    import hlh_meta.pipeline as pipeline

    asked = []
    monkeypatch.setattr(pipeline.os, "nice", lambda by: asked.append(by) or by)
    pipeline.lower_priority()
    assert asked == [pipeline.BACKGROUND_NICE] and pipeline.BACKGROUND_NICE > 0

    def refused(by):
        raise PermissionError("not permitted")

    monkeypatch.setattr(pipeline.os, "nice", refused)
    pipeline.lower_priority()                          # not permitted: nothing changes, nothing raised
    monkeypatch.delattr(pipeline.os, "nice")
    pipeline.lower_priority()                          # no os.nice on this platform


def test_the_background_process_lowers_its_priority(ds, tmp_path):
    """The process CompileAhead starts runs at a lower priority than this one (where os.nice exists)."""
    import pytest

    if not hasattr(os, "nice"):
        pytest.skip("no os.nice on this platform")
    import hlh_meta.pipeline as pipeline

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    first, second = _intercept_only(tmp_path, "one"), _intercept_only(tmp_path, "two")
    with CompileAhead([load_spec(first), load_spec(second)], ds) as ahead:
        assert ahead._process is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            theirs = os.getpriority(os.PRIO_PROCESS, ahead._process.pid)
            if theirs != mine:
                break
            time.sleep(0.2)
        assert theirs == min(mine + pipeline.BACKGROUND_NICE, 19)
