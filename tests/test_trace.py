"""The direct Arrow-trace conversion against nutpie's own conversion of the same trace."""

import warnings

import numpy as np
import pymc as pm
import pytest
import xarray as xr

from hlh_meta.inference.callbacks import compile_pymc_model
from hlh_meta.inference.trace import trace_to_inference_data

nutpie = pytest.importorskip("nutpie")


@pytest.fixture(scope="module")
def compiled():
    """A compiled model with a named dimension (text coordinates), an unnamed vector and a
    transformed scalar."""
    with pm.Model(coords={"study": ["a", "b", "c"]}) as model:
        events = pm.Data("events", np.array([3, 5, 9]), dims="study")
        total = pm.Data("total", np.array([20, 25, 30]))
        x = pm.Data("x", np.array([0.0, 1.0, 0.5]))
        mu = pm.Normal("mu", 0.0, 1.5)
        beta = pm.Normal("beta", 0.0, 1.0, shape=1)
        tau = pm.HalfNormal("tau", 1.0)
        u = pm.Normal("u", 0.0, 1.0, dims="study")
        p = pm.Deterministic("p", pm.math.invlogit(mu + beta[0] * x + tau * u), dims="study")
        pm.Binomial("obs", n=total, p=p, observed=events, dims="study")
    return compile_pymc_model(model)


@pytest.mark.parametrize("chains,draws,tune", [(2, 30, 40), (3, 7, 1)])
def test_same_groups_as_nutpie(compiled, chains, draws, tune):
    kwargs = dict(draws=draws, tune=tune, chains=chains, seed=7, progress_bar=False, save_warmup=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = nutpie.sample(compiled, **kwargs)
        ours = trace_to_inference_data(nutpie.sample(compiled, **kwargs, return_raw_trace=True), compiled)
    assert set(ours.groups()) == {"posterior", "sample_stats"}
    for group in ("posterior", "sample_stats"):
        a, b = ours[group], theirs[group]
        assert a.sizes["chain"] == chains and a.sizes["draw"] == draws
        xr.testing.assert_equal(a.reset_coords(drop=True), b.reset_coords(drop=True))
        for name in b.coords:
            np.testing.assert_array_equal(a[name].values, b[name].values)
        for name in b.data_vars:
            assert a[name].dims == b[name].dims and a[name].dtype == b[name].dtype, name
