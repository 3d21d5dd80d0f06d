"""Importance weights made trustworthy by moving the draws: importance-weighted moment matching.

Importance sampling from draws ``x`` of a proposal ``g`` (the primary posterior) towards a
target ``p`` (a sensitivity variant's posterior) fails when ``p`` lies away from the bulk of
``g``: a few draws carry most of the weight, and the Pareto k of the weights is high.
Moment matching (Paananen, Piironen, Bürkner & Vehtari 2021, *Implicitly adaptive importance
sampling*, Statistics and Computing 31:16) moves the draws by affine maps that give them the
weighted mean, then the weighted marginal variances, then the weighted covariance, each map
kept only where it lowers the Pareto k (or, once the k is low enough, where it raises the
weights' effective sample size by a tenth). The maps change the proposal to ``g_T``, the density
of the moved draws, whose log density at a moved draw is ``g``'s at the draw it came from less
the log determinant of the accumulated linear map.

Because the maps are chosen from the draws they move, the final weights use the split form of
the paper (as R's loo does in ``loo_moment_match``): half of the draws are moved, half are
kept, and every draw is weighted against the mixture ``(g + g_T) / 2``, which needs ``g`` at
the moved half and at the inverse map of the kept half. Those weights, Pareto-smoothed, give
the reported k and effective sample size; the caller judges them by its own thresholds.

Everything here works on arrays: the callers pass the log densities as functions of a
(points, dimensions) array.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import arviz as az
import numpy as np

#: the most maps tried in turn (each needs the target's log density at every draw)
MAX_STEPS = 12

#: the least a map must lower the Pareto k, or (once the k is low enough) raise the effective
#: sample size by (a fraction), to be kept: smaller gains cost a log density at every draw each
MIN_GAIN_K, MIN_GAIN_ESS = 0.01, 0.1

Density = Callable[[np.ndarray], np.ndarray]


def smoothed(log_ratio: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Pareto-smoothed importance weights (normalised) of ``log_ratio``, their Pareto k (-inf for
    a constant ratio: equal weights, where ArviZ's fit of the tail gives inf) and their
    effective sample size, 1 / sum(w^2). Non-finite log ratios weigh nothing."""
    log_ratio = np.asarray(log_ratio, dtype=float).reshape(-1)
    log_ratio = np.where(np.isfinite(log_ratio), log_ratio, -np.inf)
    if not np.isfinite(log_ratio).any():
        return np.full(len(log_ratio), np.nan), np.inf, 0.0
    if np.ptp(log_ratio[np.isfinite(log_ratio)]) == 0 and np.isfinite(log_ratio).all():
        return np.full(len(log_ratio), 1.0 / len(log_ratio)), -np.inf, float(len(log_ratio))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lw, k = az.psislw(log_ratio - log_ratio.max(), reff=1.0)
    weights = np.exp(np.asarray(lw, dtype=float).reshape(-1))
    weights = weights / weights.sum()
    return weights, float(k), float(1.0 / np.sum(weights**2))


@dataclass(frozen=True)
class Matched:
    """Weighted draws of the target: ``points`` (draws, dimensions) with normalised
    ``weights``, their Pareto k and effective sample size, and the maps kept, in order."""

    points: np.ndarray
    weights: np.ndarray
    pareto_k: float
    ess: float
    steps: tuple[str, ...]

    def passes(self, k_max: float, ess_min: float) -> bool:
        return bool(self.pareto_k <= k_max and self.ess >= ess_min)


def _map(kind: str, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The affine map ``y = (x - m) M' + mw`` of a step: the matrix M, the draws' mean m and
    their weighted mean mw; None where the weighted moments cannot give one."""
    m, mw = x.mean(axis=0), w @ x
    if kind == "shift":
        return np.eye(x.shape[1]), m, mw
    if kind == "scale":
        sd, sdw = x.std(axis=0), np.sqrt(w @ (x - mw) ** 2)
        if not (np.all(sd > 0) and np.all(sdw > 0)):
            return None
        return np.diag(sdw / sd), m, mw
    try:
        chol = np.linalg.cholesky(np.cov(x, rowvar=False))
        chol_w = np.linalg.cholesky(((x - mw).T * w) @ (x - mw))
    except np.linalg.LinAlgError:
        return None
    return chol_w @ np.linalg.inv(chol), m, mw


def _split(draws: np.ndarray, proposal_density: np.ndarray, target_at_draws: np.ndarray, moved: np.ndarray,
           target_at_moved: np.ndarray, matrix: np.ndarray, offset: np.ndarray, proposal: Density,
           steps: tuple[str, ...]) -> Matched:
    """The split-form weights: the first half of the draws moved by the accumulated map
    ``x A' + b``, the second half kept, each weighted against the mixture of ``g`` and ``g_T``."""
    n = len(draws)
    half = n // 2
    points = draws.copy()
    points[:half] = moved[:half]
    log_det = float(np.linalg.slogdet(matrix)[1])
    g = proposal_density.copy()
    g_t = proposal_density - log_det                 # g_T at a moved draw: g at its origin, less log|det A|
    g[:half] = proposal(points[:half])
    inverse = (draws[half:] - offset) @ np.linalg.inv(matrix).T
    g_t[half:] = proposal(inverse) - log_det
    target = target_at_draws.copy()
    target[:half] = target_at_moved[:half]
    weights, k, ess = smoothed(target - np.logaddexp(g, g_t))
    return Matched(points, weights, k, ess, steps)


def moment_match(draws: np.ndarray, proposal_density: np.ndarray, target: Density, proposal: Density, *,
                 k_max: float, ess_min: float, target_at_draws: np.ndarray | None = None,
                 max_steps: int = MAX_STEPS) -> Matched | None:
    """Weighted draws of ``target`` from ``draws`` of ``proposal`` by moment matching.

    Parameters
    ----------
    draws : ndarray (draws, dimensions)
        Draws of the proposal.
    proposal_density : ndarray (draws,)
        The proposal's log density (unnormalised) at ``draws``.
    target, proposal : callable
        Log densities (unnormalised, each with a constant of its own) at the rows of an array.
    k_max, ess_min : float
        The Pareto k at most and effective sample size at least that the caller accepts:
        maps are added until the weights of the moved draws meet them, and the split-form
        weights are then computed and returned.
    target_at_draws : ndarray (draws,), optional
        ``target(draws)``, where the caller has it.
    max_steps : int
        The most maps tried.

    Returns
    -------
    Matched or None
        The split-form weighted draws of the first map sequence whose moved draws met the
        thresholds (their own k and ESS may still miss them: :meth:`Matched.passes`), the
        last such sequence tried, or None where none met them.
    """
    draws = np.asarray(draws, dtype=float)
    at_draws = target(draws) if target_at_draws is None else np.asarray(target_at_draws, dtype=float)
    matrix, offset = np.eye(draws.shape[1]), np.zeros(draws.shape[1])
    x, at_x = draws, at_draws
    w, k, ess = smoothed(at_x - proposal_density)
    steps: list[str] = []
    best = None
    tried = 0
    while tried < max_steps:
        if steps and k <= k_max and ess >= ess_min:
            best = _split(draws, proposal_density, at_draws, x, at_x, matrix, offset, proposal, tuple(steps))
            if best.passes(k_max, ess_min):
                return best
        for kind in ("shift", "scale", "covariance"):
            if tried >= max_steps:
                break
            found = _map(kind, x, w)
            if found is None:
                continue
            step, m, mw = found
            y = (x - m) @ step.T + mw
            tried += 1
            at_y = target(y)
            w_y, k_y, ess_y = smoothed(at_y - proposal_density)
            if (k_y < k - MIN_GAIN_K) if k > k_max else (k_y <= k_max and ess_y > (1 + MIN_GAIN_ESS) * ess):
                x, at_x, w, k, ess = y, at_y, w_y, k_y, ess_y
                matrix, offset = step @ matrix, (offset - m) @ step.T + mw
                steps.append(kind)
                break
        else:
            break                                  # no map improved the weights
    return best
