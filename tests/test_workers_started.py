"""A sensitivity run's worker processes start before its variants are planned (workers_started):
the groups go to them, nothing is started where no worker runs, and none is left behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hlh_meta import workers
from hlh_meta.analyses import load_spec
from hlh_meta.sensitivity import executors

SPECS = Path(__file__).parent / "specs"


@pytest.fixture
def spec():
    return load_spec(SPECS / "mortality_small.toml")


def _processes(pool) -> list:
    return list((getattr(pool, "_processes", None) or {}).values())


def _gone(processes, seconds: float = 30.0) -> bool:
    """Whether every process has ended within ``seconds``. Asked again until then: the pool's
    own thread reaps its processes too, and a join here that loses that race returns at once
    with the process still marked alive for a moment."""
    deadline = time.monotonic() + seconds
    while any(p.is_alive() for p in processes):
        if time.monotonic() > deadline:
            return False
        for p in processes:
            p.join(timeout=0.1)
    return True


def test_a_worker_starts_with_the_block_and_is_gone_after(spec):
    with executors.workers_started(spec, "processes", workers=1):
        pool, size = executors._STARTED.get()
        assert size == 1
        pool.submit(int, "3").result(timeout=120)         # the process is up
        processes = _processes(pool)
        assert processes and all(p.is_alive() for p in processes)
    assert executors._STARTED.get() is None
    assert _gone(processes)


@pytest.mark.parametrize("executor,workers", [("serial", None), ("dask", None), ("processes", 0), ("nope", None)])
def test_nothing_starts_where_no_worker_runs(spec, executor, workers, monkeypatch):
    started = []
    monkeypatch.setattr(executors, "worker_pool", lambda n: started.append(n))
    with executors.workers_started(spec, executor, workers):
        assert executors._STARTED.get() is None
    assert started == []


def test_one_core_starts_none(spec, monkeypatch):
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 1)
    with executors.workers_started(spec, "processes"):
        assert executors._STARTED.get() is None


def test_an_error_in_the_block_stops_the_worker(spec):
    with pytest.raises(RuntimeError, match="planning failed"):
        with executors.workers_started(spec, "processes", workers=1):
            pool, _ = executors._STARTED.get()
            pool.submit(int, "3").result(timeout=120)
            processes = _processes(pool)
            raise RuntimeError("planning failed")
    assert processes and _gone(processes)


def test_run_groups_gives_its_groups_to_the_started_pool(ds, tmp_path, monkeypatch):
    """No second pool is made; the started one takes the group of another structure (its
    process is still there afterwards: a pool run_groups does not use is stopped there), with
    the numbers of a serial run."""
    import pandas as pd

    from hlh_meta.sensitivity import run_sensitivity

    path = tmp_path / "m.toml"
    path.write_text((SPECS / "mortality_small.toml").read_text().replace(
        'families = ["leave_one_out", "attribution", "count_alternatives", "exclude_high_risk"]',
        'families = ["fixed_effect", "attribution"]'))
    spec = load_spec(path)
    serial = run_sensitivity(spec, ds, executor="serial")
    made = []
    real = executors.worker_pool

    def counting(n):
        made.append(n)
        return real(n)

    monkeypatch.setattr(executors, "worker_pool", counting)
    with executors.workers_started(spec, "processes", workers=1):
        assert made == [1]
        local = run_sensitivity(spec, ds, executor="processes", workers=1)
        pool, _ = executors._STARTED.get()
        processes = _processes(pool)
        assert processes and all(p.is_alive() for p in processes)
    assert made == [1]
    assert _gone(processes)
    cols = [c for c in serial.columns if c != "seconds"]
    # the same draws, up to the last bits of compiled arithmetic: in some runs of the test suite on an
    # AMD EPYC VM the two processes' numbers differed by up to 4e-5 (relative), and a probability by one
    # draw of 2,000 that crossed its threshold (0.481 against 0.482). Compared exactly, one of three
    # suite runs differed (by about 1e-7 relative), only in the common-effect variant that the worker
    # ran, in a run where this process had compiled that structure anew (its function file not on disk)
    # and the worker loaded it from the caches; run alone with empty caches (the same two paths) they
    # were equal. Which computation differs was not found
    pd.testing.assert_frame_equal(serial[cols], local[cols], rtol=1e-3, atol=2.5e-3)


def test_a_pool_with_no_group_to_take_is_stopped_at_once(ds, tmp_path):
    """Leaving one study out keeps the primary's structure: no group for a worker."""
    from hlh_meta.sensitivity import run_sensitivity

    path = tmp_path / "m.toml"
    path.write_text((SPECS / "mortality_small.toml").read_text().replace(
        'families = ["leave_one_out", "attribution", "count_alternatives", "exclude_high_risk"]',
        'families = ["leave_one_out"]'))
    spec = load_spec(path)
    with executors.workers_started(spec, "processes", workers=1):
        pool, _ = executors._STARTED.get()
        pool.submit(int, "3").result(timeout=120)
        processes = _processes(pool)
        run_sensitivity(spec, ds, executor="processes", workers=1)
        assert _gone(processes)


def test_variants_with_nothing_to_fit_start_no_worker(ds, spec, monkeypatch):
    """mortality_small's variants have the primary's structure but those with nothing to fit
    (a row saying why): those rows are written here, and no worker process starts for them."""
    from hlh_meta.sensitivity import run_sensitivity

    made = []
    monkeypatch.setattr(executors, "worker_pool", lambda n: made.append(n))
    out = run_sensitivity(spec, ds, executor="processes", workers=1)
    assert made == []
    assert out["note"].astype(str).str.startswith(("not run", "not estimable")).any()


def test_workers_started_ahead_are_taken_over(spec, monkeypatch):
    """A pool started ahead (as a sensitivity command begins) with the number of processes
    workers_started wants is the one it uses: no other pool is made, and it is gone after."""
    made = []
    real = executors.worker_pool
    monkeypatch.setattr(executors, "worker_pool", lambda n: made.append(n) or real(n))
    with workers.started_ahead(1, ("json",)):
        ahead, n = workers._AHEAD[0]
        with executors.workers_started(spec, "processes", workers=1):
            pool, size = executors._STARTED.get()
            assert pool is ahead and size == n == 1 and made == []
            assert pool.submit(int, "3").result(timeout=120) == 3
            processes = _processes(pool)
            assert not workers._AHEAD
    assert processes and _gone(processes)


def test_workers_started_ahead_of_another_number_are_stopped(spec):
    with workers.started_ahead(2):
        ahead, _ = workers._AHEAD[0]
        ahead.submit(int, "3").result(timeout=120)
        stopped = _processes(ahead)
        with executors.workers_started(spec, "processes", workers=1):
            pool, size = executors._STARTED.get()
            assert pool is not ahead and size == 1
            assert stopped and _gone(stopped)


def test_workers_started_ahead_and_never_taken_stop_with_the_block():
    with pytest.raises(RuntimeError, match="bad spec"):
        with workers.started_ahead(1):
            pool, _ = workers._AHEAD[0]
            pool.submit(int, "3").result(timeout=120)
            processes = _processes(pool)
            raise RuntimeError("bad spec")
    assert not workers._AHEAD and processes and _gone(processes)


def test_a_worker_started_ahead_imports_what_it_is_given():
    """The modules named are imported in the worker before its first work: a module that
    does not exist fails there (the pool is only a head start: the caller goes on)."""
    import sys

    with workers.started_ahead(1, ("json",)):
        pool, _ = workers._AHEAD[0]
        assert pool.submit(sorted, ["json" in sys.modules]).result(timeout=120)
    with workers.started_ahead(1, ("hlh_meta_no_such_module",)):
        pool, _ = workers._AHEAD[0]
        with pytest.raises(ModuleNotFoundError):
            workers.submit(pool, workers.import_modules, ("hlh_meta_no_such_module",)).result(timeout=120)


@pytest.mark.parametrize("cores,chains,expected", [(1, 4, 0), (2, 4, 1), (8, 4, 1), (16, 4, 3), (16, 2, 7)])
def test_workers_for_a_machine(cores, chains, expected):
    assert workers.workers_for(chains, cores) == expected


def test_how_many_workers_a_run_starts_ahead(tmp_path, monkeypatch):
    import hlh_meta.orchestrate as orchestrate

    monkeypatch.setattr(orchestrate.os, "cpu_count", lambda: 16)
    path = SPECS / "mortality_small.toml"
    two, bare = tmp_path / "two.toml", tmp_path / "bare.toml"
    assert "\nchains = 2\n" in path.read_text()
    two.write_text(path.read_text())
    bare.write_text(path.read_text().replace("\nchains = 2\n", "\n"))            # the default chains
    ahead = orchestrate._workers_ahead
    assert ahead(path, False, "processes", None) == 0            # no sensitivity analysis
    assert ahead(path, True, "serial", None) == 0
    assert ahead(path, True, "processes", 3) == 3                 # asked for
    assert ahead(two, True, "processes", None) == 7               # 16 cores, 2 chains
    assert ahead(bare, True, "processes", None) == 1              # chains not given: one
    assert ahead(tmp_path / "missing.toml", True, "processes", None) == 0
    monkeypatch.setattr(orchestrate.os, "cpu_count", lambda: 1)
    assert ahead(two, True, "processes", None) == 0


def test_a_sensitivity_run_uses_the_workers_started_ahead(ds, tmp_path, monkeypatch):
    """run_all with a sensitivity analysis on local processes starts its worker ahead, and the
    variants' groups go to it: workers_started makes no pool of its own."""
    from contextlib import contextmanager

    import hlh_meta as hm
    import hlh_meta.orchestrate as orchestrate
    import hlh_meta.pipeline as pipeline

    path = tmp_path / "m.toml"
    path.write_text((SPECS / "mortality_small.toml").read_text().replace(
        'families = ["leave_one_out", "attribution", "count_alternatives", "exclude_high_risk"]',
        'families = ["fixed_effect"]'))
    ahead, taken, started = [], [], []
    real_ahead, real_take, real_started = workers.started_ahead, executors.take_ahead, executors.workers_started
    monkeypatch.setattr(orchestrate, "started_ahead", lambda n, imports: ahead.append((n, imports)) or real_ahead(n, imports))
    monkeypatch.setattr(executors, "take_ahead", lambda: taken.append(real_take()) or taken[-1])

    @contextmanager
    def watched(*args):
        with real_started(*args):
            started.append(executors._STARTED.get())
            yield

    monkeypatch.setattr(pipeline, "workers_started", watched)
    done = hm.run_all([path], out=tmp_path / "out", sensitivity=True, executor="processes", workers=1)
    assert [o.status for o in done] == ["written"] and ahead == [(1, orchestrate.WORKER_IMPORTS)]
    assert len(taken) == 1 and taken[0] is not None and taken[0][1] == 1
    assert len(started) == 1 and started[0][0] is taken[0][0]        # workers_started took it over
    assert not workers._AHEAD
