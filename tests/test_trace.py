"""The direct Arrow-trace conversion against nutpie's own conversion of the same trace."""

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hlh_meta as hm
from hlh_meta.inference import sampling
from hlh_meta.inference.trace import trace_to_inference_data

nutpie = pytest.importorskip("nutpie")


@pytest.fixture(scope="module")
def compiled():
    """A compiled model with a named dimension, an unnamed vector and a transformed scalar."""
    df = pd.DataFrame({"study": ["a", "b", "c"], "events": [3, 5, 9], "total": [20, 25, 30], "x": [0.0, 1.0, 0.5]})
    hm.fit_binomial(df, covariates=["x"], draws=20, tune=20, chains=2, seed=1)
    return next(c for k, c in sampling._CACHE.items() if k[0] == "binomial" and "x" in k[2])


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
