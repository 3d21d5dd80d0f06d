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

from ..inference import Diagnostics, SamplerSettings
from .design import Design

PRIOR_DRAWS = 500
_PRIOR_CACHE: dict = {}
logging.getLogger("pymc").setLevel(logging.WARNING)


def _draws_like(template: xr.DataArray, values: np.ndarray, name: str) -> xr.DataArray:
    return xr.DataArray(values, dims=template.dims, coords=template.coords, name=name)


def _row_template(group: xr.Dataset, row_labels: list[str]) -> xr.DataArray:
    shape = (group.sizes["chain"], group.sizes["draw"], len(row_labels))
    return xr.DataArray(np.zeros(shape), dims=("chain", "draw", "row"),
                        coords={"chain": group["chain"], "draw": group["draw"], "row": row_labels})


def _prior_draws(build: Callable[[], pm.Model], key: Hashable, seed: int | None) -> xr.Dataset:
    """Prior draws of every model variable; they depend only on the model structure and the seed."""
    cache_key = (key, seed)
    if seed is not None and cache_key in _PRIOR_CACHE:
        return _PRIOR_CACHE[cache_key].copy()
    model = build()
    names = [v.name for v in model.free_RVs + model.deterministics]
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = pm.sample_prior_predictive(draws=PRIOR_DRAWS, var_names=names, random_seed=seed).prior
    if seed is not None:
        _PRIOR_CACHE[cache_key] = prior
        while len(_PRIOR_CACHE) > 32:
            _PRIOR_CACHE.pop(next(iter(_PRIOR_CACHE)))
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
    prior = _prior_draws(build, (key, json.dumps(priors, sort_keys=True)), settings.seed)
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


def diagnostics_of(idata: az.InferenceData) -> Diagnostics:
    return Diagnostics.from_json(idata.posterior.attrs["diagnostics"])
