"""A sensitivity run's worker processes start before its variants are planned (workers_started):
the groups go to them, nothing is started where no worker runs, and none is left behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

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
    pd.testing.assert_frame_equal(serial[cols], local[cols])


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
