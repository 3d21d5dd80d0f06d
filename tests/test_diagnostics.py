"""The gate's vectorised R-hat and ESS against ArviZ's scalar implementation."""

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from hlh_meta.inference.diagnostics import GATE, check, gate_statistics


def _chains(rng, kind, chains=4, draws=1000):
    if kind == "iid":
        return rng.normal(size=(chains, draws))
    if kind == "ar1":        # strongly autocorrelated: ESS far below the draw count
        x = np.zeros((chains, draws))
        for t in range(1, draws):
            x[:, t] = 0.95 * x[:, t - 1] + rng.normal(size=chains)
        return x
    if kind == "shifted":    # one chain elsewhere: R-hat well above 1
        x = rng.normal(size=(chains, draws))
        x[0] += 2.0
        return x
    if kind == "heavy":      # heavy tails and a scale difference: the folded R-hat matters
        x = rng.standard_t(2, size=(chains, draws))
        x[1] *= 3.0
        return x
    if kind == "ties":       # many ties (a discrete quantity)
        return rng.poisson(1.5, size=(chains, draws)).astype(float)
    if kind == "antithetic":  # negatively autocorrelated: ESS above the draw count
        x = np.zeros((chains, draws))
        for t in range(1, draws):
            x[:, t] = -0.6 * x[:, t - 1] + rng.normal(size=chains)
        return x
    if kind == "constant":
        return np.full((chains, draws), 0.7)
    raise ValueError(kind)


KINDS = ["iid", "ar1", "shifted", "heavy", "ties", "antithetic", "constant"]


@pytest.mark.parametrize("chains,draws", [(4, 1000), (2, 57), (3, 8)])
def test_matches_arviz(chains, draws):
    rng = np.random.default_rng(chains * draws)
    x = np.stack([_chains(rng, kind, chains, draws) for kind in KINDS], axis=-1)
    rhat, bulk, tail = gate_statistics(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j, kind in enumerate(KINDS):
            ref = (az.rhat(x[..., j]), az.ess(x[..., j], method="bulk"), az.ess(x[..., j], method="tail"))
            np.testing.assert_allclose([rhat[j], bulk[j], tail[j]], ref, rtol=1e-9, err_msg=kind, equal_nan=True)


def test_undefined_cases_are_nan():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 200, 2))
    rhat, bulk, _ = gate_statistics(x)
    assert np.isnan(rhat).all() and np.isfinite(bulk).all()       # R-hat needs two chains
    x = rng.normal(size=(4, 200, 2))
    x[2, 10, 1] = np.nan
    rhat, bulk, tail = gate_statistics(x)
    assert np.isfinite([rhat[0], bulk[0], tail[0]]).all()
    assert np.isnan([rhat[1], bulk[1], tail[1]]).all()


def test_check_reports_every_failure():
    rng = np.random.default_rng(2)
    good = rng.normal(size=(4, 1000))
    stuck = _chains(rng, "shifted")
    stuck[:, :] = np.repeat(stuck[:, :100], 10, axis=1)        # sticky chains: low ESS as well
    post = xr.Dataset({"mu": (("chain", "draw"), good), "tau": (("chain", "draw"), stuck)})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.eye(4, 1000, dtype=bool))})
    idata = az.InferenceData(posterior=post, sample_stats=stats)
    assert check(idata, ["mu"]).passed is False                  # divergences alone fail it
    diag = check(idata, ["mu", "tau"])
    text = " | ".join(diag.problems)
    assert "R-hat" in text and "bulk ESS" in text and "tail ESS" in text and "4 divergent" in text
    assert diag.r_hat_max > GATE["r_hat_max"]


def test_each_gate_problem_is_named_by_its_check():
    from hlh_meta.inference.diagnostics import check_name

    assert [check_name(p) for p in ("R-hat 1.011 > 1.01", "bulk ESS 343 < 400", "tail ESS 292 < 400",
                                    "1 divergent transitions", "3 divergent transitions")] == \
        ["R-hat", "bulk ESS", "tail ESS", "divergences", "divergences"]
