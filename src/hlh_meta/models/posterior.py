"""Completing a sampled InferenceData: log-likelihood, prior draws, replicated data, labels, metadata.

Every derived variable (row parameters, log-likelihoods, profile predictions) is computed
by the model's own graph: with the posterior draws, and for the prior by putting prior draws
of the parameters through the same compiled model (or, with PyMC's sampler, PyMC's forward
sampler). The replicated data are drawn from the engine's observation distribution.
Whatever is compiled is compiled once (per model structure, and per engine) and reseeded per fit.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from ..inference import Diagnostics, SamplerSettings
from ..inference.sampling import model_data
from ..inference.trace import draws_dataset
from .points import GROUP as POINTS
from .points import unconstrained
from .shared import _SHARED, shared_model
from .structure import LOG_PRIOR

if TYPE_CHECKING:
    from .engine import ModelInputs

PRIOR_DRAWS = 500
_PRIOR_CACHE: dict = {}         # model structure -> (model, compiled prior sampler, names, rngs)
_POINT_CACHE: dict = {}         # model structure -> (model, prior point function, its RNGs, value names, names)
_PRIOR_DRAWS_CACHE: dict = {}   # (structure, data digest, seed) -> prior draws
_REPLICATE_CACHE: dict = {}     # engine -> (compiled replicate sampler, rngs)
_WARNED: set[str] = set()
#: stored by the graph for the log-likelihood group, not for the posterior
LOGLIK = "loglik"


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _forward_sampler(model: pm.Model, names: list[str]):
    """A compiled function returning one joint prior draw of ``names`` per call, with its RNGs.

    Uses PyMC's forward-sampling compiler (``compile_forward_sampling_function``); if its
    signature does not match, returns None and the caller uses ``pm.sample_prior_predictive``.
    """
    from pytensor.tensor.random.type import RandomGeneratorType

    try:
        from pymc.sampling.forward import compile_forward_sampling_function

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn, _ = compile_forward_sampling_function([model[n] for n in names], vars_in_trace=[],
                                                      basic_rvs=model.basic_RVs, givens_dict=None,
                                                      allow_input_downcast=True, accept_inplace=True)
    except (ImportError, TypeError) as exc:
        _warn_once("forward", f"PyMC's compile_forward_sampling_function is missing or did not accept the expected "
                              f"arguments ({exc}); prior draws fall back to pm.sample_prior_predictive (slower)")
        return None
    rngs = [v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)]
    return fn, rngs


def _prior_names(model: pm.Model) -> list[str]:
    """The variables the prior group holds: every parameter and derived quantity."""
    return sorted(v.name for v in model.free_RVs + model.deterministics if v.name not in (LOGLIK, LOG_PRIOR))


def prior_sampler(build: Callable[[], pm.Model], key: Hashable):
    """The model of structure ``key``, its compiled prior sampler and the names it draws
    (built and compiled on first use in this process)."""
    entry = _PRIOR_CACHE.get(key)
    if entry is None:
        model = build()
        names = _prior_names(model)
        entry = _PRIOR_CACHE[key] = (model, _forward_sampler(model, names), names)
        while len(_PRIOR_CACHE) > 32:
            _PRIOR_CACHE.pop(next(iter(_PRIOR_CACHE)))
    return entry


def _digest(data: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(data):
        a = np.ascontiguousarray(data[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def _expanded_prior(inp: "ModelInputs", seed: int | None) -> dict[str, tuple]:
    """Prior draws through the sampler's compiled model: each draw of the parameters
    (PyMC's initial-point expression with the "prior" strategy: a joint prior draw,
    transformed to the sampler's unconstrained space; evaluated without compiling) goes
    through nutpie's expand callback, which computes every
    derived variable from the graph the posterior draws came from. Nothing is compiled
    beyond the fit's own model."""
    import pytensor
    from pymc.initial_point import make_initial_point_expression
    from pymc.pytensorf import compile as compile_fn
    from pymc.pytensorf import find_rng_nodes, replace_rng_nodes, reseed_rngs

    from ..inference.point_calls import expand_points
    from ..inference.sampling import compiled_for

    entry = _POINT_CACHE.get(inp.structure)
    if entry is None:
        model = shared_model(inp)
        draws = replace_rng_nodes(make_initial_point_expression(
            free_rvs=model.free_RVs, rvs_to_transforms=model.rvs_to_transforms, initval_strategies={},
            jitter_rvs=set(), default_strategy="prior", return_transformed=True))
        point = compile_fn(inputs=[], outputs=draws, mode=pytensor.compile.mode.FAST_COMPILE)   # nothing to compile
        value_names = [model.rvs_to_values[rv].name for rv in model.free_RVs]
        entry = _POINT_CACHE[inp.structure] = (model, point, find_rng_nodes(point.maker.fgraph.outputs),
                                               value_names, _prior_names(model))
        while len(_POINT_CACHE) > 32:
            _POINT_CACHE.pop(next(iter(_POINT_CACHE)))
    model, point, rngs, value_names, names = entry
    compiled = compiled_for(partial(shared_model, inp), inp.structure, inp.data)
    where = {name: (part, shape) for name, part, shape in zip(*compiled.shape_info)}
    free = [name for name, (part, _) in where.items() if part.stop <= compiled.n_dim]
    if free != value_names:
        raise ValueError(f"the sampler's parameters ({', '.join(free)}) are not the model's ({', '.join(value_names)})")
    missing = [name for name in names if name not in where]
    if missing:
        raise KeyError(f"the compiled model does not store {', '.join(missing)}")
    reseed_rngs(rngs, np.random.default_rng(seed).integers(2**30))
    points = np.empty((PRIOR_DRAWS, compiled.n_dim))
    # the prior hyperparameters are data: this fit's are set into the shared model while its
    # parameters are drawn, then the model's own are put back
    with model_data(model, inp.data):
        for i in range(PRIOR_DRAWS):
            points[i] = np.concatenate([np.asarray(v, dtype=float).ravel() for v in point()])
    values = expand_points(compiled, points)
    dims = model.named_vars_to_dims
    return {name: (dims.get(name, ()), values[:, where[name][0]].reshape((PRIOR_DRAWS, *where[name][1]))[None])
            for name in names}


def prior_draws(inp: "ModelInputs", seed: int | None, sampler: str = "nutpie") -> xr.Dataset:
    """PRIOR_DRAWS joint prior draws of every model variable (one chain).

    With the nutpie sampler the draws go through the fit's compiled model
    (:func:`_expanded_prior`); otherwise, or if that fails (with a warning), PyMC's forward
    sampler, compiled once per structure, with the data and prior hyperparameters of this fit
    set into it. Draws are cached per data and seed.
    """
    from pymc.pytensorf import reseed_rngs

    draws_key = (inp.structure, _digest(inp.data), seed, sampler)
    if seed is not None and draws_key in _PRIOR_DRAWS_CACHE:
        return _PRIOR_DRAWS_CACHE[draws_key].copy()
    from ..inference.callbacks import public_only

    columns = None
    if sampler == "nutpie" and not public_only():
        try:
            columns = _expanded_prior(inp, seed)
        except Exception as exc:  # noqa: BLE001 - any failure: PyMC's forward sampler gives the same distribution
            _warn_once("expand", f"prior draws through the compiled model failed ({type(exc).__name__}: {exc}); "
                                 "they use PyMC's forward sampler instead (the same distribution; it compiles a "
                                 "model of its own)")
    if columns is not None:
        prior = draws_dataset(columns, inp.all_coords())
        if seed is not None:
            _remember(draws_key, prior)
        return prior.copy()
    model, forward, names = prior_sampler(inp.model, inp.structure)
    for name, value in inp.data.items():
        model[name].set_value(np.asarray(value, dtype=model[name].dtype))
    dims = model.named_vars_to_dims
    if forward is not None:
        fn, rngs = forward
        reseed_rngs(rngs, np.random.default_rng(seed).integers(2**30))
        values = [fn() for _ in range(PRIOR_DRAWS)]
        columns = {name: (dims.get(name, ()), np.stack([v[i] for v in values])[None]) for i, name in enumerate(names)}
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = pm.sample_prior_predictive(draws=PRIOR_DRAWS, model=model, var_names=names, random_seed=seed,
                                             return_inferencedata=False)
        columns = {name: (dims.get(name, ()), np.asarray(got[name])[None]) for name in names}
    prior = draws_dataset(columns, inp.all_coords())
    if seed is not None:
        _remember(draws_key, prior)
    return prior.copy()


def _remember(key, prior: xr.Dataset) -> None:
    _PRIOR_DRAWS_CACHE[key] = prior
    while len(_PRIOR_DRAWS_CACHE) > 64:
        _PRIOR_DRAWS_CACHE.pop(next(iter(_PRIOR_DRAWS_CACHE)))


def _replicate_sampler(inp: "ModelInputs"):
    """Compiled draws from the engine's observation distribution, given a (draws, rows)
    array of row parameters and the constant data; compiled once per engine."""
    import pytensor.tensor as pt
    from pymc.pytensorf import compile as compile_fn
    from pytensor.tensor.random.type import RandomGeneratorType

    key = inp.structure.engine
    entry = _REPLICATE_CACHE.get(key)
    if entry is None:
        param = pt.matrix("param")
        constant = {k: pt.vector(k, dtype=np.asarray(v).dtype) for k, v in inp.constant.items()}
        fn = compile_fn([param, *constant.values()], inp.observation(param, constant), random_seed=0,
                        on_unused_input="ignore")
        rngs = [v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)]
        entry = _REPLICATE_CACHE[key] = (fn, list(constant), rngs)
    return entry


def replicates(inp: "ModelInputs", param: xr.DataArray, seed) -> xr.DataArray:
    """Replicated outcomes of every row for each draw of the row parameter."""
    from pymc.pytensorf import reseed_rngs

    fn, names, rngs = _replicate_sampler(inp)
    reseed_rngs(rngs, seed)
    values = param.values
    flat = fn(values.reshape(-1, values.shape[-1]), *[inp.constant[n] for n in names])
    return xr.DataArray(np.asarray(flat).reshape(values.shape), dims=param.dims, coords=param.coords,
                        name=inp.outcome)


#: sampler parameterisation, not quantities a user reads: the standardised study effects of the
#: non-centred form (z, z_new), the packed LKJ Cholesky factor (chol; Omega and tau hold it),
#: stick-breaking fractions of unknown shares, transformed values
INTERNAL_NAMES = ("z", "z_new", "chol")
INTERNAL_SUFFIXES = ("__", "_stick")


def internal(name: str) -> bool:
    """Whether a sampled variable is the sampler's parameterisation (left out of the posterior and prior groups)."""
    return name in INTERNAL_NAMES or name.endswith(INTERNAL_SUFFIXES)


def _readable(group: xr.Dataset) -> xr.Dataset:
    """A posterior or prior group as a user reads it: without the sampler's parameterisation,
    the log-likelihood and log prior (their own groups hold them) and coordinates no variable uses."""
    kept = group.drop_vars([LOGLIK, LOG_PRIOR] + [v for v in group.data_vars if internal(str(v))], errors="ignore")
    return kept.drop_vars([c for c in kept.coords if c not in ("chain", "draw")
                           and not any(c in kept[v].dims for v in kept.data_vars)])


def _relabel(group: xr.Dataset, coords: Mapping[str, list]) -> xr.Dataset:
    return group.assign_coords({d: list(v) for d, v in coords.items() if d in group.dims})


def complete(idata: az.InferenceData, inp: "ModelInputs", settings: SamplerSettings, diag: Diagnostics,
             extras: bool = True) -> az.InferenceData:
    """Add the groups every fit carries; the log-likelihood covers the rows with weight 1."""
    coords = inp.all_coords()
    post = _relabel(idata.posterior, coords)
    included = np.flatnonzero(inp.weights > 0)
    loglik = post[LOGLIK].isel(row=included).rename(inp.outcome)
    groups = {"sample_stats": idata.sample_stats, "log_likelihood": xr.Dataset({inp.outcome: loglik})}
    heldout = np.flatnonzero(inp.weights == 0)
    if heldout.size:       # rows left out of the likelihood: their log predictive density, for cross-validation
        groups["heldout_log_likelihood"] = xr.Dataset({inp.outcome: post[LOGLIK].isel(row=heldout).rename(inp.outcome)})
    if LOG_PRIOR in post:
        groups["log_prior"] = xr.Dataset({LOG_PRIOR: post[LOG_PRIOR]})
    groups["posterior"] = _readable(post)
    points = unconstrained(inp, post)       # the sampler's coordinates: derived variables recomputed at the draws
    if points is not None:
        groups[POINTS] = points
    def rowdata(values):
        out = {}
        for k, v in values.items():
            dims, v = v if isinstance(v, tuple) else (("row",), v)
            out[k] = xr.DataArray(v, dims=dims, coords={d: coords[d] for d in dims})
        return xr.Dataset(out)

    groups["observed_data"] = rowdata(inp.observed)
    groups["constant_data"] = rowdata({**inp.constant, **inp.rows()})
    if extras:
        seeds = [int(s) for s in np.random.default_rng(settings.seed).integers(2**30, size=2)]
        prior = prior_draws(inp, settings.seed, settings.sampler)
        groups["prior"] = _readable(prior)
        groups["posterior_predictive"] = xr.Dataset({inp.outcome: replicates(inp, post[inp.row_param], seeds[0])})
        groups["prior_predictive"] = xr.Dataset({inp.outcome: replicates(inp, prior[inp.row_param], seeds[1])})
    out = az.InferenceData(**groups)
    out.posterior.attrs.update({
        "diagnostics": diag.to_json(),
        "engine": inp.structure.engine,
        "priors": json.dumps(inp.priors),
        "covariates": json.dumps(inp.design.names),
        "references": json.dumps(inp.design.references),
        "likelihood": inp.structure.likelihood,
        "coding": inp.structure.coding,
        "profiles": json.dumps(inp.profile_values, default=str),
        "sampler": json.dumps(settings.public()),
        **inp.attrs,
    })
    return out


def clear_prior_cache() -> None:
    """Forget the compiled prior samplers, cached prior draws and the models shared by
    structure (as a fresh process would)."""
    _SHARED.clear()
    _PRIOR_CACHE.clear()
    _POINT_CACHE.clear()
    _PRIOR_DRAWS_CACHE.clear()


def diagnostics_of(idata: az.InferenceData) -> Diagnostics:
    """The diagnostics gate's verdict recorded with a fit.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit made by one of the engines (``fit_binomial``, ``fit_normal``,
        ``fit_normal_exact``) or the posterior of an :class:`~hlh_meta.AnalysisResult`.

    Returns
    -------
    Diagnostics
        Worst R-hat, bulk and tail ESS, divergent transitions, the number of attempts
        (2 after added chains or a refit, 3 after both) and the problems that remain (``passed`` when none), as
        recorded in ``idata.posterior.attrs["diagnostics"]``.

    Raises
    ------
    KeyError
        If the posterior records no diagnostics (not a fit of this package).
    """
    return Diagnostics.from_json(idata.posterior.attrs["diagnostics"])
