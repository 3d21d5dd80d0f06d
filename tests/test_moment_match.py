"""Moment matching of importance weights (sensitivity/moment_match.py) on Gaussian targets,
whose moments are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hlh_meta.sensitivity.moment_match import moment_match
from hlh_meta.sensitivity.reweight import _smoothed

DRAWS = 4000


def _gaussian(mean, sd):
    return lambda x: stats.norm.logpdf(x, mean, sd).sum(axis=1)


def _matched(target_mean, target_sd, seed=1):
    flat = np.random.default_rng(seed).standard_normal((DRAWS, 2))      # the primary: N(0, I)
    primary, target = _gaussian(0.0, 1.0), _gaussian(np.asarray(target_mean), np.asarray(target_sd))
    return flat, moment_match(flat, primary(flat), target(flat), target, primary, _smoothed, 0.5, 400)


@pytest.mark.parametrize("mean, sd", [([2.0, -1.0], [1.0, 1.0]), ([1.5, 0.0], [0.4, 2.0]), ([0.0, 0.0], [0.15, 0.3])])
def test_moment_matched_weights_give_the_targets_moments(mean, sd):
    """Targets the primary's draws cannot carry (k above 0.5 or few effective draws): after
    moment matching the weighted draws have the target's mean and SD (to their Monte Carlo
    error), with k at most 0.5."""
    flat, got = _matched(mean, sd)
    plain, k_plain = _smoothed(_gaussian(np.asarray(mean), np.asarray(sd))(flat) - _gaussian(0.0, 1.0)(flat))
    assert k_plain > 0.5 or 1.0 / np.sum(plain ** 2) < 400
    assert got is not None and got.steps
    w, k = _smoothed(got.log_weights)
    ess = 1.0 / np.sum(w ** 2)
    assert k <= 0.5 and ess >= 400
    m = w @ got.points
    s = np.sqrt(w @ (got.points - m) ** 2)
    tol = 4 * np.asarray(sd) / np.sqrt(ess)
    np.testing.assert_array_less(np.abs(m - mean), tol)
    np.testing.assert_array_less(np.abs(s - sd), tol)


def test_half_the_draws_are_moved_and_the_others_kept():
    flat, got = _matched([2.0, -1.0], [1.0, 1.0])
    np.testing.assert_array_equal(got.points[1::2], flat[1::2])
    assert not np.allclose(got.points[::2], flat[::2])


def test_nothing_to_gain_gives_none():
    """Weights that are already good need no step: None (the caller keeps them)."""
    _, got = _matched([0.1, 0.0], [1.0, 1.0])
    assert got is None
