"""Importance-weighted moment matching (sensitivity/moment_match.py) against exact answers:
Gaussian proposals and targets whose moments are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hlh_meta.sensitivity.moment_match import moment_match, smoothed

N = 4000


def _gaussian(mean, cov):
    dist = stats.multivariate_normal(mean, cov)
    return lambda x: dist.logpdf(x)


@pytest.fixture(scope="module")
def proposal():
    """4000 draws of N(0, I) in three dimensions, with their log density."""
    draws = np.random.default_rng(11).standard_normal((N, 3))
    log_g = _gaussian(np.zeros(3), np.eye(3))
    return draws, log_g(draws), log_g


def _weighted_moments(matched):
    mean = matched.weights @ matched.points
    sd = np.sqrt(matched.weights @ (matched.points - mean) ** 2)
    return mean, sd


@pytest.mark.parametrize("mean, sd, steps", [
    ([1.5, -1.0, 0.5], [1.0, 1.0, 1.0], "shift"),
    ([0.8, -0.5, 0.0], [0.35, 1.6, 0.8], "scale"),
])
def test_moved_draws_weigh_to_the_targets_moments(proposal, mean, sd, steps):
    """A target the draws cover badly (weights as they are: k above 0.5 or too few effective
    draws) is reached by moving them; the split-form weights give its mean and SDs within
    their Monte Carlo error, with smooth weights."""
    draws, log_g, g = proposal
    target = _gaussian(np.array(mean), np.diag(np.square(sd)))
    _, k0, ess0 = smoothed(target(draws) - log_g)
    assert k0 > 0.5 or ess0 < 400
    got = moment_match(draws, log_g, target, g, k_max=0.5, ess_min=400)
    assert got is not None and got.passes(0.5, 400) and steps in got.steps
    assert got.points.shape == draws.shape and got.weights.sum() == pytest.approx(1.0)
    m, s = _weighted_moments(got)
    tol = 4 * np.array(sd) / np.sqrt(got.ess)
    np.testing.assert_array_less(np.abs(m - mean), tol)
    np.testing.assert_array_less(np.abs(s / sd - 1), 0.1)


def test_a_correlated_target_is_reached_with_the_covariance_map(proposal):
    draws, log_g, g = proposal
    cov = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 0.3]])
    mean = np.array([0.5, 0.5, -0.5])
    target = _gaussian(mean, cov)
    got = moment_match(draws, log_g, target, g, k_max=0.5, ess_min=400)
    assert got is not None and got.passes(0.5, 400)
    centred = got.points - got.weights @ got.points
    weighted_cov = (centred.T * got.weights) @ centred
    np.testing.assert_allclose(weighted_cov, cov, atol=0.12)
    np.testing.assert_array_less(np.abs(got.weights @ got.points - mean), 4 / np.sqrt(got.ess))


def test_half_the_draws_are_moved_and_weighed_against_the_mixture(proposal):
    """Split form: the second half of the returned draws are the proposal's own, unmoved."""
    draws, log_g, g = proposal
    target = _gaussian(np.array([1.5, -1.0, 0.5]), np.eye(3))
    got = moment_match(draws, log_g, target, g, k_max=0.5, ess_min=400)
    np.testing.assert_array_equal(got.points[N // 2:], draws[N // 2:])
    assert not np.allclose(got.points[:N // 2], draws[:N // 2])


def test_a_target_with_heavier_tails_than_any_moved_draws_is_not_matched(proposal):
    """A Cauchy target: its density over any Gaussian cloud's grows without bound in the tails,
    so no shift, scaling or covariance of the draws gives smooth weights; nothing passes and
    the caller refits (the case of a HalfCauchy prior for a HalfNormal one)."""
    draws, log_g, g = proposal
    cauchy = stats.multivariate_t(np.zeros(3), np.eye(3), df=1)
    got = moment_match(draws, log_g, cauchy.logpdf, g, k_max=0.5, ess_min=400)
    assert got is None or not got.passes(0.5, 400)


def test_equal_and_non_finite_log_ratios():
    w, k, ess = smoothed(np.zeros(100))
    assert k == -np.inf and ess == pytest.approx(100) and np.allclose(w, 0.01)
    lr = np.random.default_rng(0).normal(size=1000)
    lr[:10] = -np.inf
    w, k, ess = smoothed(lr)
    assert np.all(w[:10] == 0) and w.sum() == pytest.approx(1.0) and np.isfinite(k)
