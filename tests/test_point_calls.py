"""A compiled model's callbacks called at many points (inference/point_calls.py): blocks of rows
in threads give, bit for bit, what one thread gives; an error in a block is raised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hlh_meta.inference import point_calls
from hlh_meta.inference.point_calls import expand_points, logp_points
from hlh_meta.models.binomial import prepare_binomial
from hlh_meta.models.points import compiled_with

FRAME = pd.DataFrame({"study": [f"s{i}" for i in range(6)], "events": [3, 7, 2, 9, 4, 6],
                      "total": [12, 20, 10, 25, 15, 18]})
PRIORS = {"mu": {"dist": "Normal", "mu": 0.0, "sigma": 1.5}, "tau": {"dist": "HalfNormal", "sigma": 1.0}}


@pytest.fixture(scope="module")
def compiled():
    return compiled_with(prepare_binomial(FRAME, priors=PRIORS))


def test_rows_in_threads_give_what_one_thread_gives(compiled, monkeypatch):
    points = np.random.default_rng(1).normal(size=(1001, int(compiled.n_dim)))
    points[7, 0] = np.nan                                  # a non-finite density: -inf in either case
    monkeypatch.setattr(point_calls, "_ROWS_PER_THREAD", 10**9)
    one = expand_points(compiled, points[np.arange(1001) != 7]), logp_points(compiled, points)
    monkeypatch.setattr(point_calls, "_ROWS_PER_THREAD", 100)
    monkeypatch.setattr(point_calls.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    used = []
    real = point_calls.ThreadPoolExecutor
    monkeypatch.setattr(point_calls, "ThreadPoolExecutor", lambda n: used.append(n) or real(n))
    many = expand_points(compiled, points[np.arange(1001) != 7]), logp_points(compiled, points)
    assert used == [4, 4]
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])
    assert many[1][7] == -np.inf and np.isfinite(np.delete(many[1], 7)).all()


def test_an_error_in_one_block_is_raised(monkeypatch):
    monkeypatch.setattr(point_calls, "_ROWS_PER_THREAD", 10)
    monkeypatch.setattr(point_calls.os, "sched_getaffinity", lambda pid: set(range(3)), raising=False)
    seen = []

    def run(start, stop):
        seen.append((start, stop))
        if start > 0:
            raise RuntimeError("status -2 at a point")

    with pytest.raises(RuntimeError, match="status -2"):
        point_calls._in_threads(run, 90)
    assert sorted(seen) == [(0, 30), (30, 60), (60, 90)]


def test_points_of_the_wrong_width_are_refused(compiled):
    with pytest.raises(ValueError, match="unconstrained values"):
        logp_points(compiled, np.zeros((3, int(compiled.n_dim) + 1)))


@pytest.mark.parametrize("repeated", [True, False])
def test_expand_gives_each_row_its_values_in_order(compiled, monkeypatch, repeated):
    """points.expand calls the callback once per distinct row (resampled draws repeat rows)
    and returns the rows' values in their own order, repeated or not, as row-by-row calls do."""
    from hlh_meta.models.points import _layout, expand

    base = np.random.default_rng(2).normal(size=(40, int(compiled.n_dim)))
    rows = base[np.random.default_rng(3).integers(0, 40, size=120)] if repeated else base[::-1]
    names = list(_layout(compiled))
    called = []
    real = point_calls.expand_points
    monkeypatch.setattr(point_calls, "expand_points", lambda c, p: called.append(len(p)) or real(c, p))
    got = expand(compiled, rows, names)
    assert called == [len(np.unique(rows, axis=0))]
    for i in (0, 5, len(rows) - 1):
        one = expand(compiled, rows[i:i + 1], names)
        for n in names:
            np.testing.assert_array_equal(got[n][i], one[n][0])
