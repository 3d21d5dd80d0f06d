"""A sensitivity variant from the primary analysis's draws, by importance reweighting.

A variant whose model has the primary's structure differs from it only in data: study
weights, counts, a prior's hyperparameters. Its posterior is the primary posterior times the
ratio of the two models' densities, which the compiled model gives at each primary draw in
the sampler's coordinates (:func:`hlh_meta.inference.point_calls.logp_points`, the primary's
data and the variant's swapped in turn). The log ratios are Pareto-smoothed (``az.psislw``,
as priorsense does for power-scaling); where the Pareto k is at most
:data:`~hlh_meta.analyses.crossval.PARETO_K_REFIT` the draws, resampled in proportion to
their smoothed weights (systematic resampling), go through the compiled model with the
variant's data to give every derived variable of the variant, as a fit would. Above it the
weights cannot be trusted and the variant is refitted. Nothing else differs from a refit:
the result is summarised by the same code, and its row says how it was computed, the
Pareto k and the effective sample size of the weights. A variant of another structure that
samples the same parameters (:func:`same_parameters`: another likelihood of mixed strata,
another partition of a study's rows) is weighted the same way, by its own compiled model's
log density against the primary's, once the two compiled models are seen to sample the
same parameters in the same order.

A variant that leaves whole studies out (leave one out, a subset of sources) is weighted by
the inverse of those studies' likelihood with each one's effect integrated over its prior
(:func:`~hlh_meta.analyses.crossval.integrated_study_loglik`, the weights of integrated
importance sampling that cross-validation uses), not given its sampled effect; the effect of
a study the variant leaves out is drawn again from its prior, which is its posterior there.
The weights then carry only how far the shared parameters move, and are much more even.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from ..analyses.crossval import PARETO_K_REFIT, effect_slice, integrated_study_loglik
from ..inference import GATE, SamplerSettings
from ..inference.trace import draws_dataset
from ..models.engine import ModelInputs
from ..models.normal_exact import tau_log_density
from ..models.points import GROUP, PointsUnavailable, compiled_with, expand, flat_points, log_density, model_of, slices
from ..models.posterior import complete, diagnostics_of
from ..models.structure import LOG_PRIOR

#: the families of tau's prior a change between which is reweighted: all have the positive
#: reals as support, so the primary's draws cover the variant's posterior
REWEIGHTED_FAMILIES = frozenset({"HalfNormal", "HalfCauchy", "HalfStudentT", "Exponential"})


def tau_family_change(primary_inputs: ModelInputs, inputs: ModelInputs) -> bool:
    """Whether ``inputs`` differ from ``primary_inputs`` only in the family of ``tau``'s prior
    (and its hyperparameters), between families of :data:`REWEIGHTED_FAMILIES`."""
    a, b = primary_inputs.structure, inputs.structure
    if a == b or replace(b, priors=a.priors) != a:
        return False
    if {p for p, _ in set(a.priors) ^ set(b.priors)} != {"tau"}:
        return False
    if not {primary_inputs.priors["tau"]["dist"], inputs.priors["tau"]["dist"]} <= REWEIGHTED_FAMILIES:
        return False
    other = [{k: v for k, v in d.items() if not k.startswith("prior_tau_")} for d in (primary_inputs.data, inputs.data)]
    return other[0].keys() == other[1].keys() and all(np.array_equal(v, other[1][k]) for k, v in other[0].items()) \
        and np.array_equal(primary_inputs.weights, inputs.weights)


#: the parts of a :class:`~hlh_meta.models.structure.Structure` that say only how the rows enter
#: the likelihood: which study each row belongs to, how a stratum that mixes categories
#: enters, the mixture's width. Which unknown shares each row uses, and the parts' weights,
#: are compared apart (:func:`same_parameters`)
ROW_FIELDS = ("study_index", "likelihood", "mixture_slots")


def same_parameters(primary_inputs: ModelInputs, inputs: ModelInputs) -> bool:
    """Whether ``inputs`` have another structure than ``primary_inputs`` but sample the same
    parameters: the same studies, and structures that differ only in how the rows enter the
    likelihood (:data:`ROW_FIELDS`: another partition of a study's patients into rows,
    the linear likelihood of mixed strata) and in which unknown shares the rows use, with as
    many unknown parts per composition group. Then both posteriors are densities on one
    space of parameters, and the variant's is the primary's times the ratio of the two
    (:func:`reweight` checks the compiled models' parameters agree before using it)."""
    a, b = primary_inputs.structure, inputs.structure
    if a == b or list(primary_inputs.studies) != list(inputs.studies):
        return False
    rows = {name: getattr(a, name) for name in ROW_FIELDS}
    if replace(b, latent=a.latent, **rows) != a or len(a.latent) != len(b.latent):
        return False
    # per group: its name and the bytes of its (parts, categories) allowed mask, whose
    # length fixes the size of the group's stick-breaking parameter
    return all(ga[0] == gb[0] and len(ga[3]) == len(gb[3]) for ga, gb in zip(a.latent, b.latent))


def on_primary_draws(primary_inputs: ModelInputs, inputs: ModelInputs) -> bool:
    """Whether the variant of ``inputs`` has its posterior on the primary's parameters, so
    that it can be reweighted from the primary's draws: the primary's structure, another
    family of tau's prior (:func:`tau_family_change`) or another structure of the same
    parameters (:func:`same_parameters`). Such a variant runs where the primary's draws are."""
    return inputs.structure == primary_inputs.structure or tau_family_change(primary_inputs, inputs) \
        or same_parameters(primary_inputs, inputs)


def left_out_studies(primary_inputs: ModelInputs, inputs: ModelInputs) -> list[int]:
    """The studies (indices into the primary's ``studies``) that ``inputs`` leave out whole
    and nothing else: the same structure and data but the row weights, which are 1 on every
    row of these studies in the primary and 0 in the variant, and unchanged elsewhere. Empty
    where the variant differs in anything else."""
    a, b = primary_inputs, inputs
    if a.structure != b.structure or list(a.studies) != list(b.studies) or a.data.keys() != b.data.keys() \
            or not np.array_equal(a.study_index, b.study_index):
        return []
    if any(not np.array_equal(v, b.data[k]) for k, v in a.data.items() if k != "weight"):
        return []
    changed = np.asarray(a.weights) != np.asarray(b.weights)
    left = sorted({int(s) for s in a.study_index[changed]})
    for s in left:
        rows = a.study_index == s
        if not (np.all(np.asarray(a.weights)[rows] == 1.0) and np.all(np.asarray(b.weights)[rows] == 0.0)):
            return []
    return left


def _prior_of_tau(inputs: ModelInputs, tau: np.ndarray) -> np.ndarray:
    """The log prior density of ``tau`` (draws, with any trailing dimensions summed) under ``inputs``' prior."""
    values = tau_log_density(inputs.priors["tau"], np.asarray(tau, dtype=float))
    return values.reshape(len(values), -1).sum(axis=1)


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


_NOT_YET = object()     # the integrated log-likelihood before it is first asked for


@dataclass
class _Primary:
    """The primary fit last reweighted from, its compiled model (the primary's data swapped
    in), its draws in the sampler's coordinates, its log density there and (once asked for)
    each study's integrated log-likelihood at each draw: the same for every variant of a
    sensitivity run, so computed once."""
    fit: az.InferenceData
    inputs: ModelInputs
    compiled: Any
    flat: np.ndarray
    density: np.ndarray
    integrated: Any = _NOT_YET         # (draws, studies), None where it cannot be computed, or _NOT_YET


_PRIMARY: list[_Primary] = []       # at most one: the last primary fit


def _primary(primary_inputs: ModelInputs, primary: az.InferenceData) -> _Primary:
    if not (_PRIMARY and _PRIMARY[0].fit is primary and _PRIMARY[0].inputs is primary_inputs):
        base = compiled_with(primary_inputs)
        flat = flat_points(base, primary[GROUP])
        _PRIMARY[:] = [_Primary(primary, primary_inputs, base, flat, log_density(base, flat))]
    return _PRIMARY[0]


def _integrated(primary_inputs: ModelInputs, primary: az.InferenceData) -> np.ndarray | None:
    """Each study's log-likelihood with its effect integrated out (draws, studies) at the
    primary's draws (:func:`~hlh_meta.analyses.crossval.integrated_study_loglik`), or None."""
    kept = _primary(primary_inputs, primary)
    if kept.integrated is _NOT_YET:
        ll = integrated_study_loglik(primary_inputs, primary)
        kept.integrated = None if ll is None else \
            ll.reindex(study=list(primary_inputs.studies)).values.reshape(-1, len(primary_inputs.studies))
    return kept.integrated


def _smoothed(log_ratio: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance weights (normalised) of ``log_ratio`` and their Pareto k
    (-inf for a constant ratio: equal weights, where ArviZ's fit of the tail gives inf)."""
    log_ratio = np.asarray(log_ratio, dtype=float).reshape(-1)
    if np.ptp(log_ratio) == 0:
        return np.full(len(log_ratio), 1.0 / len(log_ratio)), -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smoothed, k = az.psislw(log_ratio.copy(), reff=1.0)
    weights = np.exp(np.asarray(smoothed, dtype=float).reshape(-1))
    return weights / weights.sum(), float(k)


def reweight(primary_inputs: ModelInputs, primary: az.InferenceData, inputs: ModelInputs, settings: SamplerSettings,
             k_max: float = PARETO_K_REFIT) -> Reweighted:
    """The variant of model inputs ``inputs`` from the primary fit ``primary`` (of
    ``primary_inputs``), or why not (``idata`` None): another structure, draws not kept in
    the sampler's coordinates, a sampler other than nutpie, a Pareto k above ``k_max``, or
    weights whose effective sample size is below the diagnostics gate's minimum ESS (the
    least a refit must reach).
    ``settings``: the variant's sampler settings (its seed seeds the resampling; they are
    recorded in the result as a fit's are)."""
    sampler = json.loads(primary.posterior.attrs.get("sampler", "{}"))
    if not on_primary_draws(primary_inputs, inputs) or GROUP not in primary.groups() or sampler.get("sampler") != "nutpie":
        return Reweighted(None)
    by_prior = tau_family_change(primary_inputs, inputs)
    shift, left = None, left_out_studies(primary_inputs, inputs)
    try:
        kept = _primary(primary_inputs, primary)
        flat, base_density = kept.flat, kept.density
        integrated = _integrated(primary_inputs, primary) if left else None
        other = compiled_with(inputs) if integrated is not None else None
        effects = None if other is None else effect_slice(inputs, other)
        if integrated is not None and effects is not None:     # left-out studies' effects integrated out
            log_ratio = -integrated[:, left].sum(axis=1)
        elif by_prior:        # the primary's compiled model gives every stored variable; the priors' ratio weighs
            other = kept.compiled
            tau = expand(other, flat, ["tau"])["tau"]
            shift = _prior_of_tau(inputs, tau) - _prior_of_tau(primary_inputs, tau)
            log_ratio = shift
        else:
            other = compiled_with(inputs)
            if inputs.structure != primary_inputs.structure and not _same_layout(kept.compiled, other):
                return Reweighted(None)
            log_ratio = log_density(other, flat) - base_density
    except PointsUnavailable:
        return Reweighted(None)
    if not np.isfinite(log_ratio).any() or np.isnan(log_ratio).any():
        return Reweighted(None)
    weights, k = _smoothed(log_ratio)
    ess = float(1.0 / np.sum(weights**2))
    if not k <= k_max or ess < GATE["ess_bulk_min"]:
        return Reweighted(None, k, ess)
    index = _systematic(weights, len(flat), settings.seed or 0)
    points = flat[index]
    if effects is not None:     # a left-out study's effect is its prior's
        points[:, [effects.start + s for s in left]] = \
            np.random.default_rng([settings.seed or 0, 1]).standard_normal((len(points), len(left)))
    try:
        idata = _as_fit(inputs, other, points, primary, settings,
                        None if shift is None else shift[index])
    except PointsUnavailable:
        return Reweighted(None, k, ess)
    return Reweighted(idata, k, ess)


def _same_layout(a, b) -> bool:
    """Whether two compiled models sample the same parameters in the same order (names and
    sizes in the sampler's coordinates)."""
    return int(a.n_dim) == int(b.n_dim) and slices(a) == slices(b)


def _as_fit(inputs: ModelInputs, compiled, points: np.ndarray, primary: az.InferenceData,
            settings: SamplerSettings, log_prior_shift: np.ndarray | None = None) -> az.InferenceData:
    """An InferenceData like a fit's (``extras=False``) from equally weighted unconstrained
    draws: every stored variable through the compiled model with the variant's data (its
    log prior moved by ``log_prior_shift`` at each draw where the compiled model has another
    prior); the diagnostics are the primary fit's, whose draws these are."""
    free = slices(compiled)
    names = [n for n in compiled.shape_info[0] if not (n in free and n.endswith("__"))]   # not a transformed value
    values = expand(compiled, points, names)
    if log_prior_shift is not None and LOG_PRIOR in values:
        values[LOG_PRIOR] = values[LOG_PRIOR] + log_prior_shift.reshape(values[LOG_PRIOR].shape)
    dims = model_of(inputs).named_vars_to_dims
    columns = {n: (dims.get(n, ()), v[None]) for n, v in values.items()}
    post = draws_dataset(columns, inputs.all_coords())
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, len(points)), dtype=bool))},
                       coords={"chain": [0], "draw": np.arange(len(points))})     # none: no sampling was done
    raw = az.InferenceData(posterior=post, sample_stats=stats)
    return complete(raw, inputs, settings, diagnostics_of(primary), extras=False)
