"""A sensitivity variant from the primary analysis's draws, by importance reweighting.

A variant whose model has the primary's structure differs from it only in data: study
weights, counts, a prior's hyperparameters. Its posterior is the primary posterior times the
ratio of the two models' densities, which the compiled model gives at each primary draw in
the sampler's coordinates (:func:`hlh_meta.inference.callbacks.logp_points`, the primary's
data and the variant's swapped in turn). The log ratios are Pareto-smoothed (``az.psislw``,
as priorsense does for power-scaling); where the Pareto k is at most
:data:`~hlh_meta.analyses.crossval.PARETO_K_REFIT` the draws, resampled in proportion to
their smoothed weights (systematic resampling), go through the compiled model with the
variant's data to give every derived variable of the variant, as a fit would. Above it the
weights cannot be trusted and the variant is refitted. Nothing else differs from a refit:
the result is summarised by the same code, and its row says how it was computed, the
Pareto k and the effective sample size of the weights.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import xarray as xr

from ..analyses.crossval import PARETO_K_REFIT
from ..inference import SamplerSettings
from ..inference.trace import draws_dataset
from ..models.engine import ModelInputs
from ..models.points import GROUP, PointsUnavailable, compiled_with, expand, flat_points, log_density, model_of, slices
from ..models.posterior import complete, diagnostics_of


@dataclass(frozen=True)
class Reweighted:
    """The outcome of an attempt: the variant's InferenceData (None: refit), the Pareto k of
    its weights and their effective sample size (NaN where the attempt could not be made)."""

    idata: az.InferenceData | None
    pareto_k: float = float("nan")
    ess: float = float("nan")


def _systematic(weights: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices drawn in proportion to ``weights`` by systematic resampling."""
    u = (np.random.default_rng(seed).random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(weights), u), len(weights) - 1)


#: the primary fit last reweighted from, its draws in the sampler's coordinates and its log density there
#: (the same for every variant of a sensitivity run: computed once)
_PRIMARY: list = []


def _primary_density(primary_inputs: ModelInputs, primary: az.InferenceData) -> tuple[np.ndarray, np.ndarray]:
    if not (_PRIMARY and _PRIMARY[0] is primary and _PRIMARY[1] is primary_inputs):
        base = compiled_with(primary_inputs)
        flat = flat_points(base, primary[GROUP])
        _PRIMARY[:] = [primary, primary_inputs, flat, log_density(base, flat)]
    return _PRIMARY[2], _PRIMARY[3]


def reweight(primary_inputs: ModelInputs, primary: az.InferenceData, inputs: ModelInputs, settings: SamplerSettings,
             k_max: float = PARETO_K_REFIT) -> Reweighted:
    """The variant of model inputs ``inputs`` from the primary fit ``primary`` (of
    ``primary_inputs``), or why not (``idata`` None): another structure, draws not kept in
    the sampler's coordinates, a sampler other than nutpie, or a Pareto k above ``k_max``.
    ``settings``: the variant's sampler settings (its seed seeds the resampling; they are
    recorded in the result as a fit's are)."""
    sampler = json.loads(primary.posterior.attrs.get("sampler", "{}"))
    if inputs.structure != primary_inputs.structure or GROUP not in primary.groups() or \
            sampler.get("sampler") != "nutpie":
        return Reweighted(None)
    try:
        flat, base_density = _primary_density(primary_inputs, primary)
        other = compiled_with(inputs)
        log_ratio = log_density(other, flat) - base_density
    except PointsUnavailable:
        return Reweighted(None)
    if not np.isfinite(log_ratio).any() or np.isnan(log_ratio).any():
        return Reweighted(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smoothed, k = az.psislw(log_ratio.copy(), reff=1.0)
    weights = np.exp(np.asarray(smoothed, dtype=float).reshape(-1))
    weights /= weights.sum()
    k, ess = float(k), float(1.0 / np.sum(weights**2))
    if not k <= k_max:
        return Reweighted(None, k, ess)
    picked = flat[_systematic(weights, len(flat), settings.seed or 0)]
    try:
        idata = _as_fit(inputs, other, picked, primary, settings)
    except PointsUnavailable:
        return Reweighted(None, k, ess)
    return Reweighted(idata, k, ess)


def _as_fit(inputs: ModelInputs, compiled, points: np.ndarray, primary: az.InferenceData,
            settings: SamplerSettings) -> az.InferenceData:
    """An InferenceData like a fit's (``extras=False``) from equally weighted unconstrained
    draws: every stored variable through the compiled model with the variant's data; the
    diagnostics are the primary fit's, whose draws these are."""
    free = slices(compiled)
    names = [n for n in compiled.shape_info[0] if not (n in free and n.endswith("__"))]   # not a transformed value
    values = expand(compiled, points, names)
    dims = model_of(inputs).named_vars_to_dims
    columns = {n: (dims.get(n, ()), v[None]) for n, v in values.items()}
    post = draws_dataset(columns, inputs.all_coords())
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, len(points)), dtype=bool))},
                       coords={"chain": [0], "draw": np.arange(len(points))})     # none: no sampling was done
    raw = az.InferenceData(posterior=post, sample_stats=stats)
    return complete(raw, inputs, settings, diagnostics_of(primary), extras=False)
