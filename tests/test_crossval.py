"""Leave-one-study-out by importance sampling against exact refits (analyses/crossval.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.analyses import crossval
from hlh_meta.analyses.crossval import PARETO_K_REFIT, exact_lpd, integrated_study_loglik, psis_lpd, study_loglik
from hlh_meta.models.binomial import prepare_binomial


def test_importance_sampling_agrees_with_exact_refits_on_twelve_studies():
    """12 simulated small studies (4-15 patients): for every study whose Pareto k is at most the
    refit threshold, the importance-sampling estimate of its log predictive density agrees
    with the exact refit without it within their Monte Carlo errors, with weights from the
    likelihood given the sampled study effect and with the effect integrated out; the
    integrated weights leave at least as many studies (and 8 of the 12) below the threshold."""
    rng = np.random.default_rng(12)
    k = 12
    x = np.tile([0.0, 1.0], k // 2)
    n = rng.integers(4, 16, k)
    p = 1 / (1 + np.exp(-(-1.0 + 0.8 * x + 0.3 * rng.standard_normal(k))))
    frame = pd.DataFrame({"study": [f"s{i:02d}" for i in range(k)], "events": rng.binomial(n, p), "total": n, "x": x})
    fit = dict(covariates=["x"], draws=500, tune=500, seed=3)
    full = hm.fit_binomial(frame, **fit)
    integrated = integrated_study_loglik(prepare_binomial(frame, covariates=["x"]), full)
    assert integrated is not None and integrated.dims == ("chain", "draw", "study")
    methods = {"as sampled": psis_lpd(study_loglik(full, "events")), "integrated": psis_lpd(integrated)}
    checked = {m: 0 for m in methods}
    for i, sid in enumerate(frame["study"]):
        weights = np.ones(k)
        weights[i] = 0
        held = hm.fit_binomial(frame, weights=weights, **fit)
        exact, exact_se = exact_lpd(held.heldout_log_likelihood["events"].sum("row").values)
        assert 0 < exact_se < 0.1
        for method, approx in methods.items():
            est, se, pareto_k = approx[sid]
            assert 0 < se < 0.2
            if pareto_k <= PARETO_K_REFIT:
                checked[method] += 1
                assert abs(est - exact) < 4 * np.hypot(se, exact_se) + 0.05, (method, sid, est, exact, se, exact_se)
    # how many of the 12 the weights given the sampled effect leave below the threshold varies with the
    # draws: 6, 3, 4 and 1 with seeds 3-6, and 2 with seed 3 where the compiled code rounds otherwise
    # (another machine, another order of the tests); the integrated weights left all 12 with each
    assert checked["as sampled"] >= 1 and checked["integrated"] >= max(8, checked["as sampled"]), checked


@pytest.mark.filterwarnings("ignore::hlh_meta.GateWarning")
@pytest.mark.parametrize("path", ["expand", "batched"])
def test_integrated_loglik_is_the_quadrature_of_the_study_likelihood(path, monkeypatch):
    """One study of one stratum: the integrated log-likelihood at a draw equals the integral
    of Binomial(y | n, expit(mu + tau z)) over z ~ Normal(0, 1), by adaptive quadrature,
    with the rows' log-likelihood through the compiled model's expand callback and through
    the batched function of the log-likelihood alone (the path taken where the first would
    take longer than compiling the second)."""
    from scipy import integrate, stats
    from scipy.special import expit

    from hlh_meta.models import batched

    monkeypatch.setattr(batched, "WORTH_COMPILING_S", np.inf if path == "expand" else -1.0)
    built = []
    monkeypatch.setattr(batched, "_build", lambda *a, _b=batched._build: built.append(1) or _b(*a))
    batched.clear_cache()
    frame = pd.DataFrame({"study": ["a", "b", "c"], "events": [2, 9, 4], "total": [10, 12, 15]})
    full = hm.fit_binomial(frame, draws=50, tune=100, chains=1, seed=1)
    got = integrated_study_loglik(prepare_binomial(frame), full)
    assert bool(built) == (path == "batched")
    post = full.posterior
    for d in (0, 17, 49):
        mu, tau = float(post["mu"][0, d]), float(post["tau"][0, d])
        for sid, y, n in frame[["study", "events", "total"]].itertuples(index=False):
            exact = integrate.quad(lambda z: stats.binom.pmf(y, n, expit(mu + tau * z)) * stats.norm.pdf(z),
                                   -10, 10, epsabs=1e-14)[0]
            assert float(got.sel(study=sid)[0, d]) == pytest.approx(np.log(exact), abs=2e-3), (sid, d)


@pytest.mark.filterwarnings("ignore::hlh_meta.GateWarning")
def test_integrated_loglik_needs_the_stored_draws():
    """A fit without the unconstrained draws (e.g. read from an older results folder) gives
    None, and the comparison falls back to the likelihood given the sampled effect."""
    frame = pd.DataFrame({"study": ["a", "b"], "events": [2, 9], "total": [10, 12]})
    full = hm.fit_binomial(frame, draws=50, tune=100, chains=1, seed=1)
    del full["unconstrained_posterior"]
    assert integrated_study_loglik(prepare_binomial(frame), full) is None


def test_exact_lpd_is_log_mean_exp_with_its_error():
    rng = np.random.default_rng(0)
    ll = rng.normal(-3.0, 0.5, (4, 1000))
    est, se = exact_lpd(ll)
    assert est == pytest.approx(np.log(np.exp(ll).mean()), abs=1e-12)
    e = np.exp(ll)
    assert abs(se - e.std() / np.sqrt(e.size) / e.mean()) < 0.2 * se       # independent draws: ESS ~ draws


def test_bundled_comparison_agrees_with_exact_refits(ds):
    """On the bundled data (the small test spec), each covariate set's elpd with importance
    sampling first agrees with the all-exact comparison within their Monte Carlo errors."""
    import warnings
    from pathlib import Path

    from hlh_meta.analyses import analysis_for, load_spec

    spec = load_spec(Path(__file__).parent / "specs" / "mortality_small.toml")
    analysis = analysis_for(spec)
    spec = analysis.resolve(ds, spec)
    used, _ = analysis.frame(ds, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = analysis.compare(ds, spec, used).set_index("covariate_set")
        exact = analysis.compare(ds, spec, used, refit_k=-np.inf).set_index("covariate_set")
    assert (exact["refits"] == exact["studies"]).all() and (fast["refits"] <= fast["studies"]).all()
    for name in exact.index:
        tol = 4 * np.hypot(fast.loc[name, "elpd_mcse"], exact.loc[name, "elpd_mcse"]) + 0.1
        assert abs(fast.loc[name, "elpd_loso"] - exact.loc[name, "elpd_loso"]) < tol, name


def test_batched_values_are_the_compiled_models(ds):
    """The bundled primary mortality model (unknown route shares, the mixture likelihood,
    prediction profiles): the batched function's row log-likelihood and profile
    probabilities equal the compiled model's expand callback at random points."""
    from hlh_meta.analyses import analysis_for, load_spec
    from hlh_meta.analyses.base import PRIMARY
    from hlh_meta.models.batched import batched_values
    from hlh_meta.models.points import compiled_with, expand

    spec = load_spec(Path(__file__).parents[1] / "models" / "mortality.toml")
    analysis = analysis_for(spec)
    inp = analysis.variant_inputs(ds, analysis.resolve(ds, spec), PRIMARY)
    compiled = compiled_with(inp)
    points = np.random.default_rng(4).standard_normal((40, int(compiled.n_dim))) * 0.7
    names = ["loglik", "p_typical"]
    want, got = expand(compiled, points, names), batched_values(inp, compiled, points, names)
    for name in names:
        assert got[name].shape == want[name].shape and len(got[name]) == 40
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore::hlh_meta.GateWarning")
def test_a_model_that_cannot_be_batched_takes_the_expand_path(monkeypatch):
    """Where PyTensor cannot vectorise the graph, batched_values warns once and raises
    PointsUnavailable, and the integrated log-likelihood comes through the expand callback
    with the same numbers."""
    import pytensor.graph.replace as replace

    from hlh_meta.models import batched
    from hlh_meta.models.points import PointsUnavailable

    frame = pd.DataFrame({"study": ["a", "b", "c"], "events": [2, 9, 4], "total": [10, 12, 15]})
    full = hm.fit_binomial(frame, draws=50, tune=100, chains=1, seed=1)
    inp = prepare_binomial(frame)
    monkeypatch.setattr(batched, "WORTH_COMPILING_S", np.inf)
    by_expand = integrated_study_loglik(inp, full)

    def refuse(*args, **kwargs):
        raise NotImplementedError("no vectorize rule")

    monkeypatch.setattr(replace, "vectorize_graph", refuse)
    monkeypatch.setattr(batched, "WORTH_COMPILING_S", -1.0)
    monkeypatch.setattr(batched, "_WARNED", set())
    batched.clear_cache()
    crossval.clear_cache()                   # the same fit and inputs: computed again, not the one kept
    with pytest.warns(RuntimeWarning, match="cannot be evaluated in batches"):
        fallback = integrated_study_loglik(inp, full)
    np.testing.assert_array_equal(fallback.values, by_expand.values)
    with pytest.raises(PointsUnavailable):
        batched.batched_values(inp, None, np.zeros((1, 1)), ["loglik"])


@pytest.mark.filterwarnings("ignore::hlh_meta.GateWarning")
def test_the_integrated_loglik_asked_again_is_not_computed_twice(monkeypatch):
    """Asked again for the same fit and equal inputs (a sensitivity run asks for the primary
    fit's, which its comparison computed), the last one comes back, equal and a copy; other
    inputs or another fit are computed."""
    frame = pd.DataFrame({"study": ["a", "b", "c"], "events": [2, 9, 4], "total": [10, 12, 15]})
    full = hm.fit_binomial(frame, draws=50, tune=100, chains=1, seed=1)
    computed = []
    monkeypatch.setattr(crossval, "_integrated", lambda *a, _f=crossval._integrated: computed.append(1) or _f(*a))
    crossval.clear_cache()
    first = integrated_study_loglik(prepare_binomial(frame), full)
    again = integrated_study_loglik(prepare_binomial(frame), full)          # equal inputs, another object
    assert len(computed) == 1 and again is not first
    np.testing.assert_array_equal(again.values, first.values)
    again[...] = 0.0                                                        # a caller's change is its own
    np.testing.assert_array_equal(integrated_study_loglik(prepare_binomial(frame), full).values, first.values)
    other = prepare_binomial(frame.assign(events=[3, 9, 4]))
    integrated_study_loglik(other, full)
    assert len(computed) == 2
    refit = hm.fit_binomial(frame, draws=50, tune=100, chains=1, seed=2)
    integrated_study_loglik(prepare_binomial(frame), refit)
    assert len(computed) == 3


@pytest.mark.parametrize("loc, scale, transform, expected", [
    (0.0, 1.0, False, True), (0.0, 2.0, False, False), (0.5, 1.0, False, False),
    ([0.0, 0.0, 0.0], 1.0, False, True), ([0.0, 0.5, 0.0], 1.0, False, False), (0.0, 1.0, True, False),
])
def test_a_study_effect_is_taken_as_standard_normal_only_when_it_is(loc, scale, transform, expected):
    """Only an untransformed Normal(0, 1), its parameters read from the graph (one number
    broadcast) or evaluated (a vector of constants), makes the integrated weights apply."""
    import pymc as pm

    with pm.Model() as model:
        kw = {"default_transform": pm.distributions.transforms.Interval(-10, 10)} if transform else {}
        pm.Normal("z", loc, scale, shape=3, **kw)
    assert crossval._standard_normal(model, model["z"]) is expected
