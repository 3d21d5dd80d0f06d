"""The prior coding of categorical covariates (models/coding.py): the exchangeable coding
against quadrature of its exact posterior, its prior against the distribution it is
built to have, and the invariance it exists for (no level's estimate depends on which
level is the reference)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

import hlh_meta as hm
from hlh_meta.analyses import analysis_for, load_spec
from hlh_meta.errors import PriorError
from hlh_meta.models.binomial import prepare_binomial

from test_mixture import FIXED, ROWS, _agree, _grid_summary, _loglik

#: six studies, three levels of a text covariate
SIX = pd.DataFrame({"study": list("abcdef"), "events": [0, 3, 5, 2, 8, 1], "total": [13, 3, 10, 8, 12, 9],
                    "trig": ["r", "m", "i", "r", "m", "i"]})


def test_exchangeable_two_levels_match_quadrature():
    """Two categories (a group of shares), tau fixed at 0: under the exchangeable coding
    mu = m + e_0 and beta = e_1 - e_0 with m ~ N(0, 1.5) and (e_0, e_1) = (-d/2, d/2),
    d ~ N(0, 1), so the prior density of (mu, beta) is N(mu + beta/2; 0, 1.5) N(beta; 0, 1)."""
    idata = hm.fit_binomial(ROWS, covariates=["b"], fractions={"g": ["b"]}, priors=FIXED, draws=2000, seed=3)
    assert idata.posterior.attrs["coding"] == "exchangeable"
    mu = np.linspace(-6, 5, 441)[:, None]
    beta = np.linspace(-5, 6, 441)[None, :]
    lp = stats.norm.logpdf(mu + beta / 2, 0, 1.5) + stats.norm.logpdf(beta, 0, 1)
    for y, n, share in zip(ROWS["events"], ROWS["total"], ROWS["b"]):
        lp = lp + _loglik(y, n, (1 - share) * expit(mu) + share * expit(mu + beta))
    ess = az.ess(idata, var_names=["mu", "beta"])
    _agree(idata.posterior["mu"].values.ravel(), _grid_summary(mu[:, 0], lp, 1), float(ess["mu"].values), "mu")
    _agree(idata.posterior["beta"].values.ravel(), _grid_summary(beta[0], lp, 0), float(ess["beta"].values[0]), "beta")


@pytest.mark.filterwarnings("ignore::hlh_meta.inference.GateWarning")
def test_exchangeable_prior_of_contrasts():
    """Three levels: each contrast against the reference has the beta prior N(0, sigma) and
    two contrasts correlate 0.5 (they share the reference's effect); every level's log-odds
    has the same prior, N(0, sqrt(1.5^2 + sigma^2 / 2 * 2/3))."""
    idata = hm.fit_binomial(SIX, covariates=["trig"], priors={"beta": {"dist": "Normal", "mu": 0, "sigma": 2.0}},
                            draws=100, tune=100, chains=1, seed=2)
    prior = idata.prior
    b = prior["beta"].values.reshape(-1, 2)
    n = b.shape[0]
    assert n >= 400
    for j in range(2):
        assert abs(b[:, j].std() - 2.0) < 4 * 2.0 / np.sqrt(2 * n), b[:, j].std()
    assert abs(np.corrcoef(b.T)[0, 1] - 0.5) < 4 / np.sqrt(n)
    level_sd = np.sqrt(1.5**2 + 2.0**2 / 2 * (2 / 3))      # mean of levels + a zero-sum effect
    mu = prior["mu"].values.ravel()
    for eta in (mu, mu + b[:, 0], mu + b[:, 1]):
        assert abs(eta.std() - level_sd) < 4 * level_sd / np.sqrt(2 * n)


def _level_mortality(idata, ref: str) -> dict[str, np.ndarray]:
    post = idata.posterior
    out = {}
    for level in ("i", "m", "r"):
        eta = post["mu"] + (post["beta"].sel(covariate=f"trig[{level}]") if level != ref else 0)
        out[level] = expit(eta.values.ravel())
    return out


def test_no_level_depends_on_the_reference():
    """Each level's mortality agrees across two references within Monte Carlo error."""
    fits = {ref: hm.fit_binomial(SIX, covariates=["trig"], reference={"trig": ref}, draws=1000, chains=2, seed=11)
            for ref in ("r", "m")}
    a, b = _level_mortality(fits["r"], "r"), _level_mortality(fits["m"], "m")
    for level in a:
        se = np.sqrt(a[level].var() / az.ess(a[level].reshape(2, -1)) + b[level].var() / az.ess(b[level].reshape(2, -1)))
        assert abs(np.median(a[level]) - np.median(b[level])) < 5 * se + 0.005, level


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_sum_to_zero_basis_is_pymc_zero_sum_normal(k):
    """The free values' map is PyMC's ZeroSumTransform, and iid Normal(0, s) free values have
    the density of pm.ZeroSumNormal(sigma=s) at the effects they give."""
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.distributions.transforms import ZeroSumTransform

    from hlh_meta.models.coding import sum_to_zero_basis

    basis = sum_to_zero_basis(k)
    rng = np.random.default_rng(k)
    for _ in range(5):
        free, s = rng.normal(size=k - 1), rng.uniform(0.3, 2.0)
        effects = basis @ free
        np.testing.assert_allclose(effects, ZeroSumTransform([-1]).backward(pt.as_tensor(free)).eval(), atol=1e-14)
        assert abs(effects.sum()) < 1e-12
        zsn = pm.logp(pm.ZeroSumNormal.dist(sigma=s, shape=k), effects).eval()
        np.testing.assert_allclose(stats.norm(0, s).logpdf(free).sum(), zsn, rtol=1e-12)


def test_effect_maps_give_contrasts_against_each_reference():
    """Two categorical covariates: beta's rows are each level's effect less its covariate's
    reference effect (zero for a numeric column), and the reference rows pick the first level."""
    from hlh_meta.models.coding import blocks, effect_maps

    df = SIX.assign(age=["a", "c", "a", "c", "a", "a"], x=np.linspace(-1, 1, 6))
    design = prepare_binomial(df, covariates=["trig", "age", "x"]).design
    bl = blocks(design)
    effects, contrasts, starts = effect_maps(design, bl)
    free = np.random.default_rng(1).normal(size=effects.shape[1])
    every, beta = effects @ free, contrasts @ free
    for b, start in zip(bl, starts):
        own = every[start:start + len(b.levels)]
        assert abs(own.sum()) < 1e-12
        np.testing.assert_allclose(beta[list(b.columns)], own[1:] - own[0], atol=1e-14)
    numeric = [j for j in range(len(design.names)) if j not in {c for b in bl for c in b.columns}]
    assert numeric and np.all(beta[numeric] == 0.0)


def test_exchangeable_needs_a_centred_normal():
    with pytest.raises(PriorError, match="coding = 'treatment'"):
        prepare_binomial(SIX, covariates=["trig"], priors={"beta": {"dist": "StudentT", "nu": 3, "mu": 0, "sigma": 1}})
    with pytest.raises(PriorError, match="mu = 0"):
        prepare_binomial(SIX, covariates=["trig"], priors={"beta": {"dist": "Normal", "mu": 0.5, "sigma": 1}})
    # numeric covariates only: any beta prior, nothing to exchange
    prepare_binomial(SIX.assign(x=np.arange(6.0)), covariates=["x"],
                     priors={"beta": {"dist": "StudentT", "nu": 3, "mu": 0.5, "sigma": 1}})
    with pytest.raises(hm.InputError, match="coding must be one of"):
        prepare_binomial(SIX, covariates=["trig"], coding="sum")


def test_mortality_spec_coding_key(ds, tmp_path):
    """[model] coding reaches the model; a bad value names the spec key before any sampling;
    the coding family gives the other coding as a variant."""
    src = open("models/mortality.toml", encoding="utf-8").read()
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace('coding = "exchangeable"', 'coding = "dummy"'), encoding="utf-8")
    spec = load_spec(bad)
    analysis = analysis_for(spec)
    spec = analysis.resolve(ds, spec)
    used, _ = analysis.frame(ds, spec)
    with pytest.raises(hm.InputError, match="model.coding"):
        analysis.inputs(ds, spec, used)
    spec = analysis.resolve(ds, load_spec("models/mortality.toml"))
    inputs = analysis.inputs(ds, spec, used)
    assert inputs.structure.coding == "exchangeable"
    (variant,) = analysis.families["coding"](analysis, ds, spec, used)
    assert variant.patch == {"model": {"coding": "treatment"}}
    assert analysis.inputs(ds, spec.patched(variant.patch), used).structure.coding == "treatment"


def test_composition_family_drops_what_sources_say(ds):
    """[model] composition = "flat": every unknown trigger mix gets a flat prior over all
    triggers (no exclusions, no known parts); the family offers it as a variant."""
    analysis = analysis_for(load_spec("models/mortality.toml"))
    spec = analysis.resolve(ds, load_spec("models/mortality.toml"))
    used, _ = analysis.frame(ds, spec)
    told = analysis.inputs(ds, spec, used).design.latent["trigger"]
    assert not told.allowed.all()                     # the bundled sources narrow some mixes
    (variant,) = analysis.families["composition"](analysis, ds, spec, used)
    flat = analysis.inputs(ds, spec.patched(variant.patch), used).design.latent["trigger"]
    assert flat.allowed.all() and (flat.weight == 1).all() and flat.n_units == told.n_units
    bad = spec.patched({"model": {"composition": "wide"}})
    with pytest.raises(hm.InputError, match="model.composition"):
        analysis.inputs(ds, bad, used)
