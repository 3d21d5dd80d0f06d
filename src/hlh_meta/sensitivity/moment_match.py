"""Importance weights of a variant after moving the primary's draws to match its moments.

Where the importance weights of a variant (its log density minus the primary's, at the
primary's draws) are too uneven to trust, the draws can first be moved by an affine map
that brings their mean, then their per-coordinate SDs, then their covariance to the
weighted ones, each step kept only where it lowers the Pareto k of the new weights (or,
once k is small, raises their effective sample size). This is importance weighted moment
matching (Paananen, Piironen, Bürkner & Vehtari 2021, Statistics and Computing 31:16; the
``loo_moment_match`` of the R package loo), here on the variant's whole posterior rather
than one left-out observation. The final weights are those of the split version: half
the draws (every other one) moved, the other half kept, and each weighed against the
equal mixture of the primary posterior and its image under the map, whose density at any
point is known from the primary's log density and the map's Jacobian; the map is fitted
to the same draws, which the mixture keeps from biasing the weights.

Everything happens in the sampler's unconstrained coordinates, where an affine map keeps
every draw inside the support; the densities are the compiled models' own
(:func:`hlh_meta.models.points.log_density`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: how many accepted steps at most (each step evaluates the variant's density once more)
MAX_STEPS = 10
#: steps go on until the weights of the draws all moved have a Pareto k at most this (and
#: enough effective draws): below the limit the final, split weights must meet, whose k
#: comes out higher (on the bundled tau prior variant, stopping at k 0.36 gave split
#: weights of k 0.55; going on to 0.3, 0.39)
K_ITER = 0.3



@dataclass(frozen=True)
class Matched:
    """Moved draws (every other one moved, the rest the primary's) with their log weights,
    and the steps taken (``"shift"``, ``"scale"``, ``"covariance"``)."""

    points: np.ndarray
    log_weights: np.ndarray
    steps: tuple[str, ...]


def _candidate(kind: str, th: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step ``kind`` as an affine map ``x -> x @ a.T + c`` (a, c) moving the draws ``th``
    toward the moments of their weights ``w``."""
    m, mw = th.mean(axis=0), w @ th
    d = th.shape[1]
    if kind == "shift":
        a = np.eye(d)
    elif kind == "scale":
        sd, sdw = th.std(axis=0), np.sqrt(w @ (th - mw) ** 2)
        a = np.diag(np.where(sd > 0, sdw / np.where(sd > 0, sd, 1.0), 1.0))
    else:
        centred = th - mw
        chol = np.linalg.cholesky(np.cov(th, rowvar=False).reshape(d, d))
        chol_w = np.linalg.cholesky((centred.T * w) @ centred)
        a = chol_w @ np.linalg.inv(chol)
    return a, mw - m @ a.T


def moment_match(flat: np.ndarray, primary_density: np.ndarray, variant_density: np.ndarray,
                 log_density_of: Callable[[np.ndarray], np.ndarray],
                 primary_log_density_of: Callable[[np.ndarray], np.ndarray],
                 smooth: Callable[[np.ndarray], tuple[np.ndarray, float]],
                 k_max: float, ess_min: float) -> Matched | None:
    """Moment-matched importance weights, or None where no step improves the weights.

    ``flat``: the primary's draws (draws, n_dim) in the sampler's coordinates;
    ``primary_density`` and ``variant_density``: the two models' log densities there;
    ``log_density_of`` / ``primary_log_density_of``: each model's log density at other points;
    ``smooth``: normalised Pareto-smoothed weights and their k from log weights;
    ``k_max``, ``ess_min``: the Pareto k and effective sample size the weights must reach.
    Steps go on until the moved draws' weights have a k at most :data:`K_ITER` and at least
    ``ess_min`` effective draws; a step is kept where it lowers k, or, with k at most
    :data:`K_ITER` already, where it raises the effective sample size and keeps k at most
    ``k_max``. The caller judges the returned (split) weights against ``k_max`` and ``ess_min``."""
    th, target = flat, variant_density
    a_total, c_total = np.eye(flat.shape[1]), np.zeros(flat.shape[1])
    log_det = 0.0
    w, k = smooth(target - primary_density)
    ess = 1.0 / float(np.sum(w ** 2))
    steps: list[str] = []
    while len(steps) < MAX_STEPS and not (k <= K_ITER and ess >= ess_min):
        for kind in ("shift", "scale", "covariance"):
            try:
                a, c = _candidate(kind, th, w)
            except np.linalg.LinAlgError:
                continue
            sign, det = np.linalg.slogdet(a)
            if sign <= 0 or not np.isfinite(det):
                continue
            moved = th @ a.T + c
            moved_target = log_density_of(moved)
            lw = moved_target - primary_density + log_det + det
            if not np.all(np.isfinite(lw)):
                continue
            w_new, k_new = smooth(lw)
            ess_new = 1.0 / float(np.sum(w_new ** 2))
            if k_new < k if k > K_ITER else (k_new <= k_max and ess_new > ess):
                th, target, w, k, ess = moved, moved_target, w_new, k_new, ess_new
                a_total, c_total = a @ a_total, c_total @ a.T + c
                log_det += det
                steps.append(kind)
                break
        else:
            break
    if not steps:
        return None
    # split: every other draw moved (its target density is at hand), the others kept; each
    # weighed against the equal mixture of the primary and its image under the map
    moved_rows = np.arange(len(flat)) % 2 == 0
    points = np.where(moved_rows[:, None], th, flat)
    at_points = np.where(moved_rows, target, variant_density)
    primary_at_points = primary_density.copy()
    primary_at_points[moved_rows] = primary_log_density_of(points[moved_rows])
    back = primary_density.copy()         # the primary's density at the map's inverse of each point
    back[~moved_rows] = primary_log_density_of(np.linalg.solve(a_total, (flat[~moved_rows] - c_total).T).T)
    mixture = np.logaddexp(primary_at_points, back - log_det)
    return Matched(points, at_points - mixture, tuple(steps))
