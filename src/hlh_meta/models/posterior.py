"""Completing a sampled InferenceData: prior, predictive draws, log-likelihood, metadata."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Hashable, Mapping

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr
from pytensor.tensor.random.type import RandomGeneratorType

from ..inference import Diagnostics, SamplerSettings
from ..inference.trace import draws_dataset
from .design import Design
from .priors import prior_data

PRIOR_DRAWS = 500
_PRIOR_CACHE: dict = {}   # model structure -> (model, compiled prior sampler, names, rngs)
_PRIOR_DRAWS_CACHE: dict = {}   # (structure, hyperparameters, seed) -> prior draws
logging.getLogger("pymc").setLevel(logging.WARNING)


def _draws_like(template: xr.DataArray, values: np.ndarray, name: str) -> xr.DataArray:
    return xr.DataArray(values, dims=template.dims, coords=template.coords, name=name)


def _row_template(group: xr.Dataset, row_labels: list[str]) -> xr.DataArray:
    shape = (group.sizes["chain"], group.sizes["draw"], len(row_labels))
    return xr.DataArray(np.zeros(shape), dims=("chain", "draw", "row"),
                        coords={"chain": group["chain"], "draw": group["draw"], "row": row_labels})


def _prior_sampler(build: Callable[[], pm.Model], key: Hashable):
    """A compiled forward sampler of every model variable, kept per model structure."""
    from pymc.sampling.forward import compile_forward_sampling_function

    entry = _PRIOR_CACHE.get(key)
    if entry is None:
        model = build()
        names = sorted(v.name for v in model.free_RVs + model.deterministics)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn, _ = compile_forward_sampling_function([model[n] for n in names], vars_in_trace=[],
                                                      basic_rvs=model.basic_RVs, givens_dict=None,
                                                      allow_input_downcast=True, accept_inplace=True)
        rngs = [v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)]
        entry = _PRIOR_CACHE[key] = (model, fn, names, rngs)
        while len(_PRIOR_CACHE) > 32:
            _PRIOR_CACHE.pop(next(iter(_PRIOR_CACHE)))
    return entry


def _prior_draws(build: Callable[[], pm.Model], key: Hashable, hyper: Mapping[str, np.ndarray],
                 seed: int | None) -> xr.Dataset:
    """PRIOR_DRAWS prior draws of every model variable (one chain).

    They depend on the model structure, the prior hyperparameters and the seed only: the
    sampler is compiled once per structure and the hyperparameters are swapped in.
    """
    from pymc.pytensorf import reseed_rngs

    draws_key = (key, json.dumps({k: np.asarray(v).tolist() for k, v in sorted(hyper.items())}), seed)
    if seed is not None and draws_key in _PRIOR_DRAWS_CACHE:
        return _PRIOR_DRAWS_CACHE[draws_key].copy()
    model, fn, names, rngs = _prior_sampler(build, key)
    for name, value in hyper.items():
        if name in model.named_vars:
            model[name].set_value(np.asarray(value, dtype=model[name].dtype))
    reseed_rngs(rngs, np.random.default_rng(seed).integers(2**30))
    values = [fn() for _ in range(PRIOR_DRAWS)]
    dims = model.named_vars_to_dims
    columns = {name: (dims.get(name, ()), np.stack([v[i] for v in values])[None]) for i, name in enumerate(names)}
    prior = draws_dataset(columns, {d: list(c) for d, c in model.coords.items() if c is not None})
    if seed is not None:
        _PRIOR_DRAWS_CACHE[draws_key] = prior
        while len(_PRIOR_DRAWS_CACHE) > 64:
            _PRIOR_DRAWS_CACHE.pop(next(iter(_PRIOR_DRAWS_CACHE)))
    return prior.copy()


def finish_idata(idata: az.InferenceData, build: Callable[[], pm.Model], key: Hashable, settings: SamplerSettings,
                 diag: Diagnostics, priors: Mapping, design: Design, row_labels: list[str], weights: np.ndarray,
                 *, observed: Mapping[str, np.ndarray], constant: Mapping[str, np.ndarray],
                 loglik: Callable[[np.ndarray], np.ndarray], predict: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                 row_param: Callable[[xr.Dataset], np.ndarray], row_name: str, outcome: str) -> az.InferenceData:
    """Add the groups every fit carries; log-likelihood covers the rows with weight 1.

    ``row_param`` computes each row's parameter (e.g. its mortality) from a group's draws;
    it is added to the posterior and the prior as ``row_name`` on the ``row`` dimension.
    """
    rng = np.random.default_rng(settings.seed)
    template = _row_template(idata.posterior, row_labels)
    idata.posterior[row_name] = _draws_like(template, row_param(idata.posterior), row_name)
    post = idata.posterior[row_name]
    included = np.flatnonzero(weights > 0)
    ll = _draws_like(post, loglik(post.values), outcome).isel(row=included)
    pp = _draws_like(post, predict(post.values, rng), outcome)
    prior = _prior_draws(build, key, prior_data(priors), settings.seed)
    prior[row_name] = _draws_like(_row_template(prior, row_labels), row_param(prior), row_name)
    prior_p = prior[row_name]
    extra = {
        "log_likelihood": xr.Dataset({outcome: ll}),
        "posterior_predictive": xr.Dataset({outcome: pp}),
        "prior_predictive": xr.Dataset({outcome: _draws_like(prior_p, predict(prior_p.values, rng), outcome)}),
        "observed_data": xr.Dataset({k: xr.DataArray(v, dims="row", coords={"row": row_labels}) for k, v in observed.items()}),
        "constant_data": xr.Dataset({k: xr.DataArray(v, dims="row", coords={"row": row_labels}) for k, v in constant.items()}),
    }
    idata.add_groups({"prior": prior})
    idata.add_groups(extra)
    idata.posterior.attrs.update({
        "diagnostics": diag.to_json(),
        "priors": json.dumps(priors),
        "covariates": json.dumps(design.names),
        "references": json.dumps(design.references),
        "sampler": json.dumps({k: getattr(settings, k) for k in ("sampler", "draws", "tune", "chains", "seed", "target_accept")}),
    })
    return idata


def clear_prior_cache() -> None:
    """Forget the compiled prior samplers and cached prior draws (as a fresh process would)."""
    _PRIOR_CACHE.clear()
    _PRIOR_DRAWS_CACHE.clear()


def diagnostics_of(idata: az.InferenceData) -> Diagnostics:
    return Diagnostics.from_json(idata.posterior.attrs["diagnostics"])
