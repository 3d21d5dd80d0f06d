"""Sensitivity variants by importance reweighting of the primary draws (sensitivity/reweight.py),
against the posterior of the variant computed on a grid (tests/quadrature.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from quadrature import grid_posterior, marginal_summary

from hlh_meta.inference import GATE, SamplerSettings
from hlh_meta.models.binomial import prepare_binomial
from hlh_meta.models.engine import fit_model
from hlh_meta.sensitivity import reweight as reweighting
from hlh_meta.sensitivity.reweight import left_out_studies, reweight

FRAME = pd.DataFrame({"study": [f"s{i}" for i in range(6)], "events": [3, 7, 2, 9, 4, 6],
                      "total": [12, 20, 10, 25, 15, 18]})
PRIORS = {"mu": {"dist": "Normal", "mu": 0.0, "sigma": 1.5}, "tau": {"dist": "HalfNormal", "sigma": 1.0}}
SETTINGS = SamplerSettings(draws=1000, tune=1000, chains=4, seed=5)


@pytest.fixture(scope="module")
def primary():
    inputs = prepare_binomial(FRAME, priors=PRIORS)
    return inputs, fit_model(inputs, SETTINGS, extras=False)


def _check(idata, events, mu_sd, tau_sd, ess, totals=FRAME["total"], **grid):
    mu, tau, post = grid_posterior(events, totals, mu_sd=mu_sd, tau_sd=tau_sd, **grid)
    for name, grid, mass in (("mu", mu, post.sum(axis=1)), ("tau", tau, post.sum(axis=0))):
        exact = marginal_summary(grid, mass)
        draws = idata.posterior[name].values.reshape(-1)
        tol = 4 * exact["sd"] / np.sqrt(ess) + 0.01
        assert abs(draws.mean() - exact["mean"]) < tol, (name, draws.mean(), exact["mean"], tol)
        assert abs(draws.std() - exact["sd"]) < 2 * tol, (name, draws.std(), exact["sd"])


@pytest.mark.parametrize("mu_sd, tau_sd", [(1.5, 0.5), (3.0, 1.0), (0.75, 2.0)])
def test_a_prior_variant_reweighted_matches_the_grid_posterior(primary, mu_sd, tau_sd):
    inputs, idata = primary
    priors = {"mu": {"dist": "Normal", "mu": 0.0, "sigma": mu_sd}, "tau": {"dist": "HalfNormal", "sigma": tau_sd}}
    got = reweight(inputs, idata, prepare_binomial(FRAME, priors=priors), SETTINGS)
    assert got.idata is not None and got.pareto_k <= 0.5 and 500 < got.ess <= 4000
    _check(got.idata, FRAME["events"], mu_sd, tau_sd, got.ess)


def test_a_data_variant_reweighted_matches_the_grid_posterior(primary):
    """One more death in one study: the variant's counts go through the compiled model (its
    log-likelihood, and the stored row probabilities of the variant's data)."""
    inputs, idata = primary
    events = FRAME["events"].copy()
    events[1] += 2
    got = reweight(inputs, idata, prepare_binomial(FRAME.assign(events=events), priors=PRIORS), SETTINGS)
    assert got.idata is not None
    _check(got.idata, events, 1.5, 1.0, got.ess)
    assert (got.idata.observed_data["events"].values == events.to_numpy()).all()
    assert got.idata.log_likelihood["events"].sizes["row"] == len(FRAME)


def test_a_variant_of_the_same_density_is_reweighted_with_equal_weights(primary):
    """A log ratio that is the same at every draw (ArviZ's Pareto fit gives k = inf for it)
    means equal weights: the variant is the primary's draws, not a refit."""
    inputs, idata = primary
    got = reweight(inputs, idata, prepare_binomial(FRAME, priors=PRIORS), SETTINGS)
    assert got.idata is not None and got.pareto_k == -np.inf and got.ess == pytest.approx(4000)
    _check(got.idata, FRAME["events"], 1.5, 1.0, got.ess)


def test_a_variant_leaving_a_study_out_is_weighted_with_the_studys_effect_integrated(primary, monkeypatch):
    """Leaving study s3 out: weighted by its likelihood with its effect integrated over the
    prior (a smaller Pareto k than weights given the sampled effect), the variant matches the
    grid posterior of the other five studies, and s3's effect follows its prior, N(0, 1)."""
    inputs, idata = primary
    keep = (FRAME["study"] != "s3").to_numpy()
    variant = prepare_binomial(FRAME, priors=PRIORS, weights=keep.astype(float))
    assert left_out_studies(inputs, variant) == [3]
    got = reweight(inputs, idata, variant, SETTINGS)
    assert got.idata is not None and got.pareto_k <= 0.5
    _check(got.idata, FRAME["events"][keep], 1.5, 1.0, got.ess, totals=FRAME["total"][keep])
    post = got.idata.posterior
    logit = np.log(post["p"].isel(row=3) / (1 - post["p"].isel(row=3)))        # mu + tau z of s3's only row
    z = ((logit - post["mu"]) / post["tau"]).values.reshape(-1)
    assert abs(z.mean()) < 4 / np.sqrt(len(z)) and abs(z.std() - 1) < 0.06
    monkeypatch.setattr(reweighting, "_integrated", lambda *a: None)
    as_sampled = reweight(inputs, idata, variant, SETTINGS)
    assert got.pareto_k < as_sampled.pareto_k and got.ess > as_sampled.ess


def test_only_a_variant_that_leaves_whole_studies_out_and_changes_nothing_else_is_integrated(primary):
    inputs, _ = primary
    out = np.ones(len(FRAME))
    out[[1, 4]] = 0.0
    assert left_out_studies(inputs, prepare_binomial(FRAME, priors=PRIORS, weights=out)) == [1, 4]
    assert left_out_studies(inputs, prepare_binomial(FRAME, priors=PRIORS)) == []
    events = FRAME["events"].copy()
    events[2] += 1
    assert left_out_studies(inputs, prepare_binomial(FRAME.assign(events=events), priors=PRIORS, weights=out)) == []
    wider = {**PRIORS, "mu": {"dist": "Normal", "mu": 0.0, "sigma": 3.0}}
    assert left_out_studies(inputs, prepare_binomial(FRAME, priors=wider, weights=out)) == []


def test_weights_that_cannot_be_trusted_leave_the_variant_to_a_refit(primary):
    inputs, idata = primary
    far = FRAME.assign(events=FRAME["total"] - 1)            # nearly every patient dies: far from the primary
    got = reweight(inputs, idata, prepare_binomial(far, priors=PRIORS), SETTINGS)
    assert got.idata is None and got.pareto_k > 0.5 and got.ess < 100


def test_weights_with_fewer_effective_draws_than_a_refit_must_reach_leave_the_variant_to_a_refit(primary):
    """A much narrower prior on mu: smooth weights (k well below 0.5), but fewer effective
    draws than the diagnostics gate asks of a refit's bulk ESS."""
    inputs, idata = primary
    narrow = prepare_binomial(FRAME, priors={**PRIORS, "mu": {"dist": "Normal", "mu": 0.0, "sigma": 0.2}})
    got = reweight(inputs, idata, narrow, SETTINGS)
    assert got.pareto_k <= 0.5 and got.ess < GATE["ess_bulk_min"] and got.idata is None


@pytest.mark.parametrize("prior, logpdf", [
    ({"dist": "HalfCauchy", "beta": 1.0}, lambda t: stats.halfcauchy.logpdf(t, scale=1.0)),
    ({"dist": "Exponential", "lam": 2.0}, lambda t: stats.expon.logpdf(t, scale=0.5)),
])
def test_another_family_of_tau_prior_is_reweighted_by_the_ratio_of_the_priors(primary, prior, logpdf):
    """Another family of tau's prior is another structure, but the same parameters and
    likelihood: weighted by the two priors' log densities (no model compiled for it), it
    matches the grid posterior under that prior, and its log prior is the variant's."""
    inputs, idata = primary
    variant = prepare_binomial(FRAME, priors={**PRIORS, "tau": prior})
    assert variant.structure != inputs.structure
    got = reweight(inputs, idata, variant, SETTINGS)
    assert got.idata is not None and got.pareto_k <= 0.7
    _check(got.idata, FRAME["events"], 1.5, None, got.ess, tau_logpdf=logpdf, tau_grid=np.linspace(0, 12, 481),
           mu_grid=np.linspace(-4, 3, 281))
    post = got.idata.posterior
    expected = stats.norm.logpdf(post["mu"], 0, 1.5) + logpdf(post["tau"].values)
    np.testing.assert_allclose(got.idata.log_prior["log_prior"].values, expected, rtol=1e-9)
    assert json.loads(post.attrs["priors"])["tau"] == prior


def test_another_structure_or_no_stored_draws_is_not_reweighted(primary):
    inputs, idata = primary
    for tau in ({"dist": "Fixed", "value": 0.0}, {"dist": "Uniform", "lower": 0.0, "upper": 3.0}):
        got = reweight(inputs, idata, prepare_binomial(FRAME, priors={**PRIORS, "tau": tau}), SETTINGS)
        assert got.idata is None and np.isnan(got.pareto_k), tau
    other = prepare_binomial(FRAME.assign(x=[0, 1, 0, 1, 0, 1]), priors=PRIORS, covariates=["x"])
    assert reweight(inputs, idata, other, SETTINGS).idata is None
    bare = idata.copy()
    del bare["unconstrained_posterior"]
    assert reweight(inputs, bare, prepare_binomial(FRAME, priors=PRIORS), SETTINGS).idata is None


def test_a_fits_draws_in_the_samplers_coordinates_are_the_samplers_own(primary, monkeypatch):
    """nutpie stores each value variable: a fit keeps those (no transform compiled), laid out as
    the transforms of the constrained draws give them, which is the path without a compiled model."""
    from hlh_meta.inference import sampling
    from hlh_meta.models import points

    inputs, idata = primary
    kept = idata[points.GROUP]
    np.testing.assert_allclose(kept["tau_log__"].values, np.log(idata.posterior["tau"].values), rtol=0, atol=1e-12)
    post = idata.posterior.assign({k: kept[k] for k in kept})                    # as the sampler stored them
    assert points.unconstrained(inputs, post).equals(kept)
    marked = post.assign(tau_log__=post["tau_log__"] + 1e-3)                     # not the transform of tau
    np.testing.assert_array_equal(points.unconstrained(inputs, marked)["tau_log__"].values, marked["tau_log__"].values)
    monkeypatch.setattr(sampling, "compiled_model", lambda key: None)            # no compiled model: transforms
    transformed = points.unconstrained(inputs, post)
    assert list(transformed) == list(kept) and all(transformed[k].dims == kept[k].dims for k in kept)
    np.testing.assert_allclose(transformed["tau_log__"].values, kept["tau_log__"].values, rtol=0, atol=1e-12)


#: one study (tau fixed at 0): a stratum of category A, one of B, and one mixing them half and
#: half, with a wide prior on B's effect, so that the two likelihoods of the mixed stratum give
#: posteriors of beta about three of the test's tolerances apart
MIXED = pd.DataFrame({"study": ["s", "s", "s"], "events": [2, 9, 6], "total": [10, 10, 12], "b": [0.0, 1.0, 0.5]})
MIXED_ARGS = {"covariates": ["b"], "fractions": {"g": ["b"]}, "coding": "treatment",
              "priors": {"tau": {"dist": "Fixed", "value": 0.0}, "beta": {"dist": "Normal", "mu": 0.0, "sigma": 2.5}}}


@pytest.fixture(scope="module")
def mixed():
    inputs = prepare_binomial(MIXED, likelihood="mixture", **MIXED_ARGS)
    return inputs, fit_model(inputs, SamplerSettings(draws=1000, tune=1000, chains=4, seed=8), extras=False)


def test_another_likelihood_of_the_same_parameters_is_reweighted_and_matches_the_grid_posterior(mixed):
    """The linear likelihood of the mixed stratum (logit p = mu + beta / 2) instead of the
    mixture (p = expit(mu) / 2 + expit(mu + beta) / 2): another structure, the same
    parameters. Reweighted from the mixture fit, it matches the linear model's posterior on a
    grid, and its row probabilities are the linear model's at its own draws."""
    from scipy.special import expit

    mixture, fit = mixed
    linear = prepare_binomial(MIXED, likelihood="linear", **MIXED_ARGS)
    assert linear.structure != mixture.structure and reweighting.same_parameters(mixture, linear)
    got = reweight(mixture, fit, linear, SETTINGS)
    assert got.idata is not None and got.pareto_k <= 0.5 and got.ess >= GATE["ess_bulk_min"]
    mu = np.linspace(-7, 5, 481)[:, None]
    beta = np.linspace(-6, 8, 561)[None, :]
    lp = stats.norm.logpdf(mu, 0, 1.5) + stats.norm.logpdf(beta, 0, 2.5)
    for y, n, share in zip(MIXED["events"], MIXED["total"], MIXED["b"]):
        lp = lp + stats.binom.logpmf(y, n, expit(mu + share * beta))
    mass = np.exp(lp - lp.max())
    mass /= mass.sum()
    post = got.idata.posterior
    for name, grid, marginal in (("mu", mu[:, 0], mass.sum(axis=1)), ("beta", beta[0], mass.sum(axis=0))):
        exact = marginal_summary(grid, marginal)
        draws = post[name].values.reshape(-1)
        tol = 4 * exact["sd"] / np.sqrt(got.ess) + 0.01
        assert abs(draws.mean() - exact["mean"]) < tol, (name, draws.mean(), exact["mean"], tol)
        assert abs(draws.std() - exact["sd"]) < 2 * tol, (name, draws.std(), exact["sd"])
    np.testing.assert_allclose(post["p"].values[..., 2], expit(post["mu"].values + 0.5 * post["beta"].values[..., 0]),
                               rtol=1e-10)


def test_same_parameters_means_another_structure_with_the_same_studies_and_unknown_parts():
    mixture = prepare_binomial(MIXED, likelihood="mixture", **MIXED_ARGS)
    assert reweighting.same_parameters(mixture, prepare_binomial(MIXED, likelihood="linear", **MIXED_ARGS))
    assert not reweighting.same_parameters(mixture, mixture)                               # the same structure
    two = MIXED.assign(study=["s", "s", "t"])
    assert not reweighting.same_parameters(mixture, prepare_binomial(two, likelihood="linear", **MIXED_ARGS))
    other_priors = {**MIXED_ARGS, "priors": {"tau": {"dist": "Fixed", "value": 0.0},
                                             "beta": {"dist": "StudentT", "nu": 3, "mu": 0.0, "sigma": 2.5}}}
    assert not reweighting.same_parameters(mixture, prepare_binomial(MIXED, likelihood="linear", **other_priors))


def test_a_variant_whose_compiled_parameters_differ_is_left_to_a_refit(mixed, monkeypatch):
    """Should the structure comparison call two models of other parameters the same, the
    compiled models' layouts differ and the variant is refitted, not reweighted on the wrong space."""
    mixture, fit = mixed
    wider = prepare_binomial(MIXED.assign(c=[0.0, 1.0, 1.0]), likelihood="linear",
                             **{**MIXED_ARGS, "covariates": ["b", "c"]})
    monkeypatch.setattr(reweighting, "same_parameters", lambda a, b: True)
    got = reweight(mixture, fit, wider, SETTINGS)
    assert got.idata is None and np.isnan(got.pareto_k)


def test_the_bundled_variants_called_of_the_same_parameters_have_them(ds):
    """Every bundled mortality variant that :func:`same_parameters` sends to reweighting has the
    primary's value variables (names and sizes, in order), the linear likelihood among them."""
    from hlh_meta.analyses import analysis_for, load_spec
    from hlh_meta.analyses.base import PRIMARY
    from hlh_meta.analyses.frames import frames_kept
    from hlh_meta.models.points import model_of
    from hlh_meta.sensitivity.runner import plan

    spec = load_spec("models/mortality.toml")
    analysis = analysis_for(spec)
    with frames_kept():
        spec = analysis.resolve(ds, spec)
        planned = plan(spec, ds, [PRIMARY] + analysis.expand_variants(ds, spec))

    def layout(inputs):
        model = model_of(inputs)
        point = model.initial_point()
        return [(v.name, point[v.name].size) for v in model.value_vars]

    primary = planned[0].inputs
    same = [it for it in planned[1:] if it.inputs is not None and reweighting.same_parameters(primary, it.inputs)]
    assert "linear likelihood for mixed strata" in [it.variant.name for it in same]
    for it in same:
        assert layout(it.inputs) == layout(primary), it.variant.name
