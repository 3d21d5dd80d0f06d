"""The binomial engine against exact answers and simulations with known truth."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.errors import DataError
from hlh_meta.models.posterior import diagnostics_of

from quadrature import grid_posterior, marginal_summary

FIVE = pd.DataFrame({"study": list("abcde"), "events": [2, 5, 0, 9, 3], "total": [10, 20, 13, 30, 8]})


def _agree(draws: np.ndarray, exact: dict, ess: float, name: str) -> None:
    """Sampler summaries within Monte Carlo error of the exact ones (about 4 MCSE)."""
    sd = exact["sd"]
    mcse_mean = sd / np.sqrt(ess)
    assert abs(draws.mean() - exact["mean"]) < 4 * mcse_mean + 0.005, name
    assert abs(draws.std() - sd) < 4 * sd / np.sqrt(2 * ess) + 0.01, name
    for q, key in ((0.025, "q2.5"), (0.975, "q97.5")):
        # the MCSE of a tail quantile is a few times that of the mean
        assert abs(np.quantile(draws, q) - exact[key]) < 10 * mcse_mean + 0.01, f"{name} {key}"


@pytest.mark.parametrize("frame", [FIVE, pd.DataFrame({"study": ["only"], "events": [0], "total": [13]})],
                         ids=["five-studies", "one-study-zero-events"])
def test_posterior_matches_quadrature(frame):
    idata = hm.fit_binomial(frame, events="events", total="total", study="study", draws=2000, seed=11)
    mu_g, tau_g, post = grid_posterior(frame["events"], frame["total"])
    ess = az.ess(idata, var_names=["mu", "tau"])
    for name, grid, mass in (("mu", mu_g, post.sum(axis=1)), ("tau", tau_g, post.sum(axis=0))):
        _agree(idata.posterior[name].values.ravel(), marginal_summary(grid, mass), float(ess[name]), name)


def test_fixed_effect_single_study_matches_1d_integral():
    frame = pd.DataFrame({"study": ["s"], "events": [3], "total": [3]})
    idata = hm.fit_binomial(frame, events="events", total="total", study="study", draws=2000, seed=3,
                            priors={"tau": {"dist": "Fixed", "value": 0.0}})
    mu_g, _, post = grid_posterior([3], [3], tau_grid=np.array([0.0]), mu_grid=np.linspace(-8, 10, 4001))
    exact = marginal_summary(mu_g, post[:, 0])
    ess = float(az.ess(idata, var_names=["mu"])["mu"])
    _agree(idata.posterior["mu"].values.ravel(), exact, ess, "mu")
    assert np.allclose(idata.posterior["tau"].values, 0.0)


@pytest.mark.parametrize("seed", [101, 202, 303])
def test_recovers_known_parameters(seed):
    rng = np.random.default_rng(seed)
    k, mu, beta, tau = 30, -1.0, 0.8, 0.3
    x = np.repeat([0.0, 1.0], k // 2)
    n = rng.integers(60, 150, size=k)
    p = 1 / (1 + np.exp(-(mu + beta * x + tau * rng.standard_normal(k))))
    frame = pd.DataFrame({"study": [f"s{i:02d}" for i in range(k)], "deaths": rng.binomial(n, p), "n": n, "x": x})
    idata = hm.fit_binomial(frame, events="deaths", total="n", study="study", covariates=["x"], seed=seed)
    post = idata.posterior
    for name, truth in (("mu", mu), ("tau", tau)):
        d = post[name].values.ravel()
        assert np.quantile(d, 0.005) < truth < np.quantile(d, 0.995), name
    b = post["beta"].sel(covariate="x").values.ravel()
    assert np.quantile(b, 0.005) < beta < np.quantile(b, 0.995)
    assert abs(b.mean() - beta) < 3 * b.std()


def test_inference_data_groups_and_labels():
    frame = FIVE.assign(trigger=["infection", "rheum", "rheum", "infection", "malignancy"])
    idata = hm.fit_binomial(frame, events="events", total="total", study="study", covariates=["trigger"],
                            reference={"trigger": "infection"}, draws=300, tune=300, seed=5)
    for group in ("prior", "posterior", "posterior_predictive", "log_likelihood", "observed_data"):
        assert group in idata.groups(), group
    assert list(idata.posterior["covariate"].values) == ["trigger[malignancy]", "trigger[rheum]"]
    assert idata.posterior["p"].dims == ("chain", "draw", "row")
    assert idata.posterior_predictive["events"].shape[-1] == 5
    assert (idata.posterior_predictive["events"] <= FIVE["total"].to_numpy()).all()
    diag = diagnostics_of(idata)
    assert diag.attempts in (1, 2)


def test_same_seed_same_numbers():
    a = hm.fit_binomial(FIVE, events="events", total="total", study="study", draws=200, tune=200, seed=9)
    b = hm.fit_binomial(FIVE, events="events", total="total", study="study", draws=200, tune=200, seed=9)
    np.testing.assert_array_equal(a.posterior["mu"].values, b.posterior["mu"].values)


def test_unknown_share_is_a_parameter_not_a_dropped_row():
    frame = FIVE.assign(iv=[1.0, 0.0, np.nan, 0.5, np.nan])
    idata = hm.fit_binomial(frame, events="events", total="total", study="study", covariates=["iv"],
                            fractions={"route": ["iv"]}, draws=300, tune=300, seed=2)
    share = idata.posterior["route_share"]
    assert share.shape[-2:] == (2, 2)        # two rows with unknown IV share, (SC, IV)
    assert idata.log_likelihood["events"].shape[-1] == 5


@pytest.fixture
def no_sampling(monkeypatch):
    """Any attempt to sample fails: errors must come before compilation."""
    import hlh_meta.inference.sampling as sampling

    def boom(*args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(sampling, "_sample_once", boom)


@pytest.mark.parametrize(
    "change, kwargs, error, fragment",
    [
        (lambda d: d.iloc[0:0], {}, DataError, "empty"),
        (lambda d: d, {"events": "event"}, ValueError, "did you mean 'events'"),
        (lambda d: d.assign(events=[2, 5, 0, 99, 3]), {}, DataError, "exceed total"),
        (lambda d: d.assign(events=[2, -5, 0, 9, 3]), {}, DataError, "must be >= 0"),
        (lambda d: d.assign(events=[2, 5.5, 0, 9, 3]), {}, DataError, "whole number"),
        (lambda d: d.assign(events=[2, np.nan, 0, 9, 3]), {}, DataError, "finite"),
        (lambda d: d.assign(total=[10, 0, 13, 30, 8], events=[2, 0, 0, 9, 3]), {}, DataError, "must be > 0"),
        (lambda d: d, {"priors": {"sigma": {"dist": "Normal", "mu": 0, "sigma": 1}}}, ValueError, "unknown parameter 'sigma'"),
        (lambda d: d, {"priors": {"tau": {"dist": "Gamma", "alpha": 1, "beta": 1}}}, ValueError, "unknown distribution"),
        (lambda d: d, {"priors": {"tau": {"dist": "Normal", "mu": 0, "sigma": 1}}}, ValueError, "not allowed"),
        (lambda d: d, {"priors": {"mu": {"dist": "Normal", "mu": 0}}}, ValueError, "takes mu, sigma"),
        (lambda d: d, {"covariates": ["age"]}, ValueError, "column 'age' not found"),
        (lambda d: d.assign(x=[1, np.nan, 0, 1, 0]), {"covariates": ["x"]}, ValueError, "missing"),
        (lambda d: d, {"sampler": "stan"}, ValueError, "unknown sampler"),
        (lambda d: d, {"draws": 0}, ValueError, "draws"),
        (lambda d: d, {"tune": 0}, ValueError, "at least 1 with the nutpie sampler"),
    ],
)
def test_bad_input_fails_before_compilation(no_sampling, change, kwargs, error, fragment):
    args = {"events": "events", "total": "total", "study": "study", **kwargs}
    with pytest.raises(error, match=fragment.replace("(", r"\(")):
        hm.fit_binomial(change(FIVE.copy()), **args)


def test_all_zero_events_fit():
    frame = FIVE.assign(events=0)
    idata = hm.fit_binomial(frame, events="events", total="total", study="study", draws=500, seed=4)
    p = idata.posterior["p"].values
    assert np.median(p) < 0.1


def test_study_level_share_is_one_unknown_per_study():
    frame = pd.DataFrame({"study": ["a", "a", "b", "c"], "events": [1, 4, 2, 3], "total": [10, 12, 9, 11],
                          "iv": [np.nan, np.nan, np.nan, 1.0]})
    idata = hm.fit_binomial(frame, events="events", total="total", study="study", covariates=["iv"],
                            fractions={"route": ["iv"]}, shared={"route": "study"}, draws=300, tune=300, seed=2)
    assert idata.posterior["route_share"].shape[-2:] == (2, 2)   # studies a and b, (SC, IV)
    p = idata.posterior["p"]
    beta = idata.posterior["beta"].sel(covariate="iv")
    share = idata.posterior["route_share"].isel(route_unit=0, route_category=1)
    # both strata of study a use the same unknown share: p differs only through study-free terms
    eta = np.log(p / (1 - p))
    diff = (eta.isel(row=0) - eta.isel(row=1)).values
    np.testing.assert_allclose(diff, 0.0, atol=1e-9)
    assert float((beta * share).std()) > 0


def test_prior_draws_follow_swapped_hyperparameters():
    """The prior sampler is compiled once per structure; new hyperparameters are swapped in.
    The draws must equal those of a freshly compiled sampler and follow the stated prior."""
    from hlh_meta.models import posterior

    wide = {"tau": {"dist": "HalfNormal", "sigma": 2.0}, "mu": {"dist": "Normal", "mu": 1.0, "sigma": 0.5}}
    kwargs = dict(events="events", total="total", study="study", draws=100, tune=100, seed=4)
    hm.fit_binomial(FIVE, **kwargs)                                # default priors compile the sampler
    swapped = hm.fit_binomial(FIVE, priors=wide, **kwargs).prior
    posterior.clear_prior_cache()
    fresh = hm.fit_binomial(FIVE, priors=wide, **kwargs).prior
    for name in ("mu", "tau", "p"):                                 # p = expit(mu + tau z): z's draws too
        np.testing.assert_array_equal(swapped[name].values, fresh[name].values)
    n = swapped.sizes["draw"]
    tau, mu = swapped["tau"].values.ravel(), swapped["mu"].values.ravel()
    # HalfNormal(2): mean 2 sqrt(2/pi) = 1.596, sd 2 sqrt(1 - 2/pi) = 1.206; Normal(1, 0.5)
    assert abs(tau.mean() - 1.596) < 4 * 1.206 / np.sqrt(n)
    assert abs(mu.mean() - 1.0) < 4 * 0.5 / np.sqrt(n) and abs(mu.std() - 0.5) < 0.1
    assert swapped["p"].dims == ("chain", "draw", "row")


@pytest.mark.parametrize("k", [2, 4])
def test_stick_breaking_shares_are_flat_dirichlet(k):
    """Each share of a flat Dirichlet over k categories is Beta(1, k - 1); shares sum to 1 and
    have covariance -1 / (k^2 (k + 1)) (compared with scipy's Dirichlet, not with itself)."""
    import pymc as pm
    from scipy import stats

    from hlh_meta.models.shares import composition_shares, stick_data

    with pm.Model():
        share = composition_shares("s", stick_data("s", np.ones((3, k), dtype=bool), np.arange(3), np.ones(3), 3))
    x = pm.draw(share, draws=20000, random_seed=1)                    # (draws, units, k)
    assert x.shape == (20000, 3, k)
    np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-12)
    for j in range(k):
        assert stats.kstest(x[:, 0, j], stats.beta(1, k - 1).cdf).pvalue > 0.001, j
    ref = stats.dirichlet(np.ones(k))
    np.testing.assert_allclose(np.cov(x[:, 1, :].T), ref.cov(), atol=4 * np.sqrt(2 / 20000) * ref.var().max())
    assert abs(np.corrcoef(x[:, 0, 0], x[:, 1, 0])[0, 1]) < 0.03    # units are independent


def test_composition_prior_excludes_categories_and_keeps_known_parts():
    """An unknown that excludes categories is a flat Dirichlet over the others; a known part
    (half of the patients within given categories) adds that part's own flat Dirichlet
    (compared with scipy's Beta marginals)."""
    import pymc as pm
    from scipy import stats

    from hlh_meta.models.design import _composition
    from hlh_meta.models.shares import composition_shares, stick_data

    cats = ["t[rest]", "t[a]", "t[b]", "t[c]"]
    allowed, part_unit, weight = _composition("t", cats, ["u0", "u1"], {
        "u0": {"exclude": ["t[a]"]}, "u1": {"parts": [{"share": 0.5, "categories": ["t[rest]", "t[c]"]}]}})
    assert part_unit.tolist() == [0, 1, 1] and weight.tolist() == [1.0, 0.5, 0.5]
    with pm.Model():
        share = composition_shares("s", stick_data("s", allowed, part_unit, weight, 2))
    x = pm.draw(share, draws=20000, random_seed=3)
    np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-12)
    assert (x[:, 0, 1] == 0).all()                                  # the excluded category holds nothing
    for j in (0, 2, 3):                                              # flat over three categories: Beta(1, 2) each
        assert stats.kstest(x[:, 0, j], stats.beta(1, 2).cdf).pvalue > 0.001, j
    # unit 1: half within {rest, c} (Beta(1, 1) split), half flat over all four (Beta(1, 3) each)
    assert ((x[:, 1, 0] + x[:, 1, 3]) >= 0.5 - 1e-12).all()
    assert stats.kstest(x[:, 1, 1] / 0.5, stats.beta(1, 3).cdf).pvalue > 0.001
    assert abs(x[:, 1, 0].mean() - (0.5 * 0.5 + 0.5 * 0.25)) < 0.01


@pytest.mark.parametrize("rule, fragment", [({"exclude": ["route[rest]", "iv"]}, "every category is excluded"),
                                            ({"minimum": {"iv": 0.7, "route[rest]": 0.6}}, "more than 1"),
                                            ({"parts": [{"share": 0.5}]}, "needs 'share' and 'categories'"),
                                            ({"exclude": ["bus"]}, "unknown category"),
                                            ({"minimum": {"iv": 0.5}, "exclude": ["iv"]}, "cannot be excluded")])
def test_bad_composition_rule_is_refused(no_sampling, rule, fragment):
    frame = FIVE.assign(iv=[1.0, 0.0, np.nan, 0.5, np.nan])
    with pytest.raises(ValueError, match=fragment):
        hm.fit_binomial(frame, events="events", total="total", study="study", covariates=["iv"],
                        fractions={"route": ["iv"]}, composition={"route": {"2": rule}})


def test_prior_draws_go_through_the_compiled_model():
    """With nutpie the prior draws are parameter draws put through the fit's compiled model
    (no forward sampler is compiled). Each derived variable must be the model's function
    of the drawn parameters, written out here (intercept only: logit p_row = mu + tau z_study,
    logit p_typical = mu, logit p_new = mu + tau z_new), and the parameters must follow the
    stated priors (Kolmogorov-Smirnov against scipy)."""
    from scipy import stats
    from scipy.special import expit

    from hlh_meta.models import posterior

    from hlh_meta.models.binomial import prepare_binomial

    posterior.clear_prior_cache()
    group = hm.fit_binomial(FIVE, events="events", total="total", study="study", draws=100, tune=100, seed=4).prior
    assert not posterior._PRIOR_CACHE                       # PyMC's forward sampler was not compiled
    assert "mu" in group and not [v for v in group.data_vars if v in ("z", "z_new", "loglik") or v.endswith("__")]
    # every variable of the model, as the fit drew them (the prior group leaves out z and z_new)
    prior = posterior.prior_draws(prepare_binomial(FIVE, events="events", total="total", study="study"), 4)
    np.testing.assert_array_equal(prior["mu"].values.reshape(-1), group["mu"].values.reshape(-1))
    mu, tau, z, z_new = (prior[n].values[0] for n in ("mu", "tau", "z", "z_new"))
    np.testing.assert_allclose(prior["p"].values[0], expit(mu[:, None] + tau[:, None] * z), rtol=1e-12)
    np.testing.assert_allclose(prior["p_typical"].values[0, :, 0], expit(mu), rtol=1e-12)
    np.testing.assert_allclose(prior["p_new"].values[0, :, 0], expit(mu + tau * z_new), rtol=1e-12)
    for draws, dist in ((mu, stats.norm(0, 1.5)), (tau, stats.halfnorm(scale=1.0)), (z[:, 0], stats.norm()),
                        (z_new, stats.norm())):
        assert stats.kstest(draws, dist.cdf).pvalue > 1e-3
    assert len({float(v) for v in mu}) == mu.size          # every draw its own


def test_a_fit_builds_its_model_once_and_prior_draws_leave_it_as_compiled(monkeypatch):
    """nutpie's compile, the sampler's transforms and the prior draws share the model of a
    structure, built once. Prior draws of other hyperparameters (data of the same structure)
    put the model's own data back: the compiled model's initial points read them, so a later
    fit of the first priors gives the draws it gave before."""
    from hlh_meta.inference import sampling
    from hlh_meta.models import binomial, points, posterior

    sampling.clear_cache()
    points.clear_cache()
    posterior.clear_prior_cache()
    built = []
    real = binomial.build_binomial_model
    monkeypatch.setattr(binomial, "build_binomial_model", lambda inp: built.append(1) or real(inp))
    kwargs = dict(events="events", total="total", study="study", draws=100, tune=100, seed=4)
    first = hm.fit_binomial(FIVE, **kwargs)
    assert len(built) == 1                          # not once more for the transforms and the prior draws
    other = hm.fit_binomial(FIVE, priors={"mu": {"dist": "Normal", "mu": 3.0, "sigma": 0.1}}, **kwargs)
    assert abs(float(other.prior["mu"].mean()) - 3.0) < 0.05       # its own prior was drawn
    again = hm.fit_binomial(FIVE, **kwargs)
    assert len(built) == 1
    np.testing.assert_array_equal(first.posterior["mu"].values, again.posterior["mu"].values)
    np.testing.assert_array_equal(first.prior["mu"].values, again.prior["mu"].values)


@pytest.mark.filterwarnings("ignore::hlh_meta.GateWarning")      # few draws: only their equality is tested
def test_a_fits_draws_do_not_depend_on_which_data_compiled_its_structure():
    """Models of one structure share a compiled model, whose chains start at jittered initial
    points computed from model data (tau's starts at its prior's scale). A fit with a wider
    tau prior compiled first must leave a later fit of the narrower one the draws it has
    alone: in a sensitivity run which process fits a variant, and after which, is timing."""
    from hlh_meta.inference import sampling
    from hlh_meta.models import points, posterior

    kwargs = dict(events="events", total="total", study="study", draws=60, tune=60, seed=11, refit=False)
    narrow, wide = ({"tau": {"dist": "HalfNormal", "sigma": s}} for s in (0.2, 5.0))
    sampling.clear_cache()
    points.clear_cache()
    posterior.clear_prior_cache()
    alone = hm.fit_binomial(FIVE, priors=narrow, **kwargs)
    sampling.clear_cache()
    points.clear_cache()
    posterior.clear_prior_cache()
    hm.fit_binomial(FIVE, priors=wide, **kwargs)                   # compiles the structure with its data
    after = hm.fit_binomial(FIVE, priors=narrow, **kwargs)
    np.testing.assert_array_equal(alone.posterior["tau"].values, after.posterior["tau"].values)


def test_model_data_are_set_for_the_block_and_put_back_after_it_even_on_an_error():
    import pymc as pm

    from hlh_meta.inference.sampling import model_data

    with pm.Model() as model:
        pm.Data("prior_tau_sigma", 1.0)
        pm.Data("weight", np.ones(3))
    with pytest.raises(RuntimeError), model_data(model, {"prior_tau_sigma": 2.5, "weight": np.zeros(3)}):
        assert float(model["prior_tau_sigma"].get_value()) == 2.5
        np.testing.assert_array_equal(model["weight"].get_value(), np.zeros(3))
        raise RuntimeError("inside")
    assert float(model["prior_tau_sigma"].get_value()) == 1.0
    np.testing.assert_array_equal(model["weight"].get_value(), np.ones(3))
    with model_data(None, {"prior_tau_sigma": 2.5}):       # no model: nothing to set
        pass
