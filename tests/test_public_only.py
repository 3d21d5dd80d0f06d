"""HLH_META_PUBLIC_ONLY=1: every use of nutpie's and PyMC's undocumented internals switched off
(the generated callbacks, the direct trace conversion, derived variables and prior draws
through the compiled model's callbacks); the public paths give the same posterior draws and
the same predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.analyses.crossval import integrated_study_loglik
from hlh_meta.inference import sampling
from hlh_meta.inference.callbacks import PUBLIC_ONLY
from hlh_meta.models import points
from hlh_meta.models.binomial import prepare_binomial

FRAME = pd.DataFrame({"study": ["a", "b", "c", "d"], "events": [2, 9, 4, 6], "total": [10, 12, 15, 20],
                      "x": [0.0, 1.0, 0.0, 1.0]})


@pytest.fixture
def public(monkeypatch):
    sampling.clear_cache()                   # compiled models of this process were built with the private paths
    monkeypatch.setenv(PUBLIC_ONLY, "1")
    yield
    sampling.clear_cache()


@pytest.fixture(scope="module")
def private_fit():
    return hm.fit_binomial(FRAME, covariates=["x"], draws=200, tune=200, chains=2, seed=4)


@pytest.mark.filterwarnings("ignore::hlh_meta.GateWarning")
def test_the_public_paths_give_the_same_posterior_draws(private_fit, public, recwarn):
    fit = hm.fit_binomial(FRAME, covariates=["x"], draws=200, tune=200, chains=2, seed=4)
    for name in ("mu", "tau", "beta", "p"):
        np.testing.assert_array_equal(fit.posterior[name].values, private_fit.posterior[name].values)
    np.testing.assert_allclose(fit.log_likelihood["events"].values, private_fit.log_likelihood["events"].values)
    assert "prior" in fit.groups() and fit.prior.sizes["draw"] == private_fit.prior.sizes["draw"]
    assert not [w for w in recwarn if "instead of" in str(w.message)]     # switched off on purpose: no warning
    # what needs the compiled model's callbacks says it cannot, and its callers take their public paths
    assert integrated_study_loglik(prepare_binomial(FRAME, covariates=["x"]), fit) is None


@pytest.mark.filterwarnings("ignore::hlh_meta.GateWarning")
def test_prediction_takes_pymcs_public_path_with_the_same_numbers(ds, monkeypatch):
    result = hm.run_analysis(Path(__file__).parent / "specs" / "mortality_small.toml", ds, compare=False)
    profiles = pd.DataFrame({"trigger": ["malignancy", "other"], "iv_fraction": [1.0, None]})
    fast = result.predict(profiles)
    sampling.clear_cache()
    points.clear_cache()
    monkeypatch.setenv(PUBLIC_ONLY, "1")
    slow = result.predict(profiles)
    pd.testing.assert_frame_equal(fast, slow, rtol=1e-9)
