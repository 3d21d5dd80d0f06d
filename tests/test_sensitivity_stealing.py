"""Local worker processes: groups no worker has started run in the calling process
(so it does not wait idle), with the same numbers as a serial run."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pandas as pd
import pytest

from hlh_meta.analyses import load_spec
from hlh_meta.sensitivity import run_sensitivity

SPECS = Path(__file__).parent / "specs"


class _Pool:
    """A process pool whose worker takes the first ``busy`` groups (run at once, here) and
    never gets to the others."""

    busy = 0
    submitted: list = []

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        fut = Future()
        _Pool.submitted.append(fut)
        if len(_Pool.submitted) <= _Pool.busy:
            fut.set_running_or_notify_cancel()
            fut.set_result(fn(*args))
        return fut

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_groups_no_worker_started_run_here(ds, tmp_path, monkeypatch):
    from hlh_meta.sensitivity import executors

    path = tmp_path / "b.toml"
    path.write_text((SPECS / "biomarkers_small.toml").read_text().replace(
        'families = ["correlation", "leave_one_out"]', 'families = ["correlation", "fixed_effect", "priors", "missing_dispersion"]'))
    spec = load_spec(path)
    serial = run_sensitivity(spec, ds, executor="serial")
    cols = [c for c in serial.columns if c != "seconds"]
    monkeypatch.setattr(executors, "ProcessPoolExecutor", _Pool)
    for busy in (0, 1):
        _Pool.busy, _Pool.submitted = busy, []
        ticks = []
        local = run_sensitivity(spec, ds, executor="processes", workers=1,
                                progress=lambda i, n, name: ticks.append(name))
        pd.testing.assert_frame_equal(serial[cols], local[cols])
        assert len(_Pool.submitted) >= 2                                  # groups other than the primary's
        assert sum(f.cancelled() for f in _Pool.submitted) == len(_Pool.submitted) - busy
        assert ticks                                                       # progress reported


@pytest.mark.filterwarnings("ignore::hlh_meta.inference.GateWarning")      # the small spec's primary fit
def test_refits_left_by_reweighting_join_the_workers_queue(ds, tmp_path, monkeypatch):
    """With the primary's fit at hand, the variants of its group are reweighted here first;
    those the weights leave to a refit join the end of the workers' queue (as groups of one,
    with the attempt's k and ESS), and this process takes back what no worker started. Rows
    are a serial run's whichever process refits them."""
    from hlh_meta.analyses import analysis_for
    from hlh_meta.sensitivity import executors

    path = tmp_path / "b.toml"
    path.write_text((SPECS / "biomarkers_small.toml").read_text().replace(
        'families = ["correlation", "leave_one_out"]', 'families = ["priors", "fixed_effect"]'))
    analysis = analysis_for(load_spec(path))
    spec = analysis.resolve(ds, load_spec(path))
    fits = []

    def primary():
        fits.append(analysis.run(ds, spec).idata)
        return fits[-1]

    serial = run_sensitivity(spec, ds, executor="serial", alongside=primary)
    cols = [c for c in serial.columns if c != "seconds"]
    methods = serial.drop_duplicates("variant").set_index("variant")["method"]
    refitted = [v for v, m in methods.items() if m == "refit" and v.startswith("prior")]
    assert refitted and (methods == "reweighted").any()         # both outcomes in the primary's group
    assert serial.loc[serial["variant"].isin(refitted), ["pareto_k", "ess"]].notna().all().all()   # the attempt's
    monkeypatch.setattr(executors, "ProcessPoolExecutor", _Pool)
    remote = 1                                                  # the common-effect group
    for busy in (0, remote, remote + len(refitted)):
        _Pool.busy, _Pool.submitted = busy, []
        local = run_sensitivity(spec, ds, executor="processes", workers=1, alongside=primary)
        pd.testing.assert_frame_equal(serial[cols], local[cols])
        assert len(_Pool.submitted) == remote + len(refitted)
        assert sum(f.cancelled() for f in _Pool.submitted) == len(_Pool.submitted) - busy
