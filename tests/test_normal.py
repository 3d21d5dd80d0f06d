"""The sampled normal engine against the exact (quadrature) engine and simulations."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest

import hlh_meta as hm
from hlh_meta.errors import DataError
from hlh_meta.models.normal_exact import exact_normal_posterior as fit_normal_exact

LOGRATIO = pd.DataFrame({"study": list("abcde"), "yi": [-0.35, -0.10, -0.62, 0.05, -0.28],
                         "sei": [0.18, 0.25, 0.30, 0.22, 0.15]})
REGRESSION = pd.DataFrame({"study": list("abcdef"), "yi": [-0.62, -0.35, -0.08, 0.04, -0.45, 0.12],
                           "sei": [0.20, 0.15, 0.25, 0.18, 0.30, 0.22], "x": [0.1, 0.3, 0.6, 0.8, 0.2, 0.9]})


def _check(draws: np.ndarray, exact, name: str, ess: float) -> None:
    sd = exact.sd(name)
    mcse = sd / np.sqrt(ess)
    assert abs(draws.mean() - exact.mean(name)) < 4 * mcse + 1e-3, name
    assert abs(draws.std() - sd) < 4 * sd / np.sqrt(2 * ess) + 5e-3, name
    for q in (0.025, 0.975):
        assert abs(np.quantile(draws, q) - exact.quantile(name, q)) < 10 * mcse + 5e-3, f"{name} {q}"


@pytest.mark.parametrize("frame, covariates", [(LOGRATIO, []), (REGRESSION, ["x"])], ids=["no-covariate", "covariate"])
def test_sampler_matches_numerical_integration(frame, covariates):
    priors = {"tau": {"dist": "HalfNormal", "sigma": 0.5}}
    idata = hm.fit_normal(frame, estimate="yi", std_err="sei", study="study", covariates=covariates, priors=priors,
                          draws=2000, seed=7)
    exact = fit_normal_exact(frame["yi"].to_numpy(), frame["sei"].to_numpy(),
                             X=frame[covariates].to_numpy() if covariates else None,
                             covariate_names=covariates or None, priors=priors)
    ess = az.ess(idata)
    for name in ("mu", "tau"):
        _check(idata.posterior[name].values.ravel(), exact, name, float(ess[name]))
    for name in covariates:
        _check(idata.posterior["beta"].sel(covariate=name).values.ravel(), exact, name,
               float(ess["beta"].sel(covariate=name)))
    # study effects (shrunken estimates) agree too
    theta = idata.posterior["theta"].mean(("chain", "draw")).values
    np.testing.assert_allclose(theta, exact.theta_mean, atol=0.02)


def test_multivariate_recovers_known_means():
    rng = np.random.default_rng(42)
    mu = {"crp": -1.0, "ferritin": -0.8, "fibrinogen": -0.3}
    tau, rho = 0.25, 0.6
    cov = tau**2 * (rho * np.ones((3, 3)) + (1 - rho) * np.eye(3))
    rows = []
    for s in range(25):
        u = rng.multivariate_normal(np.zeros(3), cov)
        for k, (name, m) in enumerate(mu.items()):
            if rng.random() < 0.85:               # studies report a subset of biomarkers
                se = rng.uniform(0.1, 0.3)
                rows.append((f"s{s:02d}", name, m + u[k] + rng.normal(0, se), se))
    frame = pd.DataFrame(rows, columns=["study", "biomarker", "yi", "sei"])
    idata = hm.fit_normal(frame, estimate="yi", std_err="sei", study="study", outcome="biomarker", seed=3)
    post = idata.posterior
    assert post["mu"].dims == ("chain", "draw", "outcome")
    for name, truth in mu.items():
        d = post["mu"].sel(outcome=name).values.ravel()
        assert np.quantile(d, 0.005) < truth < np.quantile(d, 0.995), name
    omega = post["Omega"].sel(outcome="crp", outcome_bis="ferritin").values.ravel()
    assert omega.mean() > 0          # the simulated correlation is positive
    assert np.allclose(post["Omega"].sel(outcome="crp", outcome_bis="crp"), 1.0)


def test_multivariate_labels_and_groups():
    frame = pd.DataFrame({"study": ["a", "a", "b", "c", "c"], "marker": ["crp", "ferritin", "crp", "crp", "ferritin"],
                          "yi": [-1.0, -0.8, -0.9, -1.2, -0.5], "sei": [0.3, 0.4, 0.3, 0.25, 0.3]})
    idata = hm.fit_normal(frame, estimate="yi", std_err="sei", study="study", outcome="marker",
                          draws=300, tune=300, seed=1)
    assert list(idata.posterior["outcome"].values) == ["crp", "ferritin"]
    assert idata.posterior["theta"].sizes["row"] == 5
    for group in ("prior", "posterior_predictive", "log_likelihood", "observed_data"):
        assert group in idata.groups()


@pytest.fixture
def no_sampling(monkeypatch):
    import hlh_meta.inference.sampling as sampling

    monkeypatch.setattr(sampling, "_sample_once", lambda *a, **k: (_ for _ in ()).throw(AssertionError("sampled")))


@pytest.mark.parametrize(
    "frame, kwargs, error, fragment",
    [
        (LOGRATIO.assign(sei=[0.18, 0.0, 0.3, 0.22, 0.15]), {}, DataError, "must be > 0"),
        (LOGRATIO.assign(sei=[0.18, np.nan, 0.3, 0.22, 0.15]), {}, DataError, "finite"),
        (LOGRATIO.assign(yi=[0.1, "x", 0.3, 0.2, 0.1]), {}, DataError, "finite"),
        (LOGRATIO.assign(m=["crp", None, "fer", "fer", "crp"]), {"outcome": "m"}, DataError, "outcome is missing"),
        (LOGRATIO.assign(m=["crp", "crp", "fer", "fer", "fer"], study=list("aabbb")), {"outcome": "m"}, DataError, "twice"),
        (LOGRATIO, {"std_err": "se"}, ValueError, "did you mean 'sei'"),
        (LOGRATIO, {"priors": {"mu": {"dist": "HalfNormal", "sigma": 1}}}, ValueError, "not allowed"),
    ],
)
def test_bad_input_fails_before_compilation(no_sampling, frame, kwargs, error, fragment):
    args = {"estimate": "yi", "std_err": "sei", "study": "study", **kwargs}
    with pytest.raises(error, match=fragment):
        hm.fit_normal(frame, **args)


def test_multivariate_common_effect_matches_conjugate_posterior():
    frame = pd.DataFrame({"study": ["a", "a", "b", "c", "c"], "marker": ["crp", "ferritin", "crp", "crp", "ferritin"],
                          "yi": [-1.0, -0.8, -0.9, -1.2, -0.5], "sei": [0.3, 0.4, 0.3, 0.25, 0.3]})
    idata = hm.fit_normal(frame, estimate="yi", std_err="sei", study="study", outcome="marker", draws=2000, seed=1,
                          priors={"tau": {"dist": "Fixed", "value": 0.0}})
    for marker in ("crp", "ferritin"):
        d = frame[frame["marker"] == marker]
        w = 1 / d["sei"] ** 2
        precision = w.sum() + 1.0                     # prior mu ~ Normal(0, 1)
        mean, sd = (w * d["yi"]).sum() / precision, precision ** -0.5
        draws = idata.posterior["mu"].sel(outcome=marker).values.ravel()
        ess = float(az.ess(idata, var_names=["mu"])["mu"].sel(outcome=marker))
        assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(ess)
        assert abs(draws.std() - sd) < 0.05 * sd


def test_one_level_outcome_is_the_univariate_model_named_by_it():
    idata = hm.fit_normal(LOGRATIO.assign(m="crp"), estimate="yi", std_err="sei", study="study", outcome="m",
                          draws=200, tune=200, seed=4)
    assert "outcome" not in idata.posterior.dims
    assert set(idata.constant_data["row_outcome"].values) == {"crp"}


def test_exact_engine_returns_inference_data_like_the_samplers():
    """fit_normal_exact gives the same variable names and dims as fit_normal, and its draws
    agree with the exact (quadrature) summaries within Monte Carlo error."""
    import json

    idata = hm.fit_normal_exact(REGRESSION["yi"], REGRESSION["sei"], X=REGRESSION[["x"]], draws=2000, seed=7)
    exact = json.loads(idata.posterior.attrs["exact_summary"])
    assert set(idata.posterior.data_vars) == {"mu", "tau", "beta", "theta"}
    assert list(idata.posterior["covariate"].values) == ["x"]
    assert hm.diagnostics(idata).passed
    n = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    for name, draws in (("mu", idata.posterior["mu"]), ("tau", idata.posterior["tau"]),
                        ("x", idata.posterior["beta"].sel(covariate="x"))):
        d = draws.values.ravel()
        assert abs(d.mean() - exact[name]["mean"]) < 4 * exact[name]["sd"] / np.sqrt(n), name
        assert abs(np.quantile(d, 0.975) - exact[name]["q97.5"]) < 12 * exact[name]["sd"] / np.sqrt(n) + 0.01, name


# ---- one study per outcome, the between-outcome rule, the within-study correlation

SPARSE = pd.DataFrame({"study": ["a", "a", "b", "c", "a"], "marker": ["crp", "ferritin", "ferritin", "ferritin", "fib"],
                       "yi": [-1.1, -0.9, -0.7, -0.5, -0.45], "sei": [0.46, 0.35, 0.3, 0.25, 0.2]})


def test_an_outcome_one_study_reports_is_that_studys_theta_under_mus_prior():
    """With one study the outcome's estimate is the conjugate normal posterior of the study's
    true effect, y ~ N(theta, se), theta ~ mu's prior: no between-study term widens it."""
    prior = {"mu": {"dist": "Normal", "mu": 0.2, "sigma": 0.8}}
    idata = hm.fit_normal(SPARSE, estimate="yi", std_err="sei", study="study", outcome="marker", priors=prior,
                          draws=1000, seed=2, target_accept=0.95)
    post = idata.posterior
    ess = az.ess(idata, var_names=["mu"])["mu"]
    for marker in ("crp", "fib"):
        y, se = SPARSE.set_index("marker").loc[marker, ["yi", "sei"]]
        precision = 1 / se**2 + 1 / 0.8**2
        mean, sd = (y / se**2 + 0.2 / 0.8**2) / precision, precision**-0.5
        draws = post["mu"].sel(outcome=marker).values.ravel()
        n = float(ess.sel(outcome=marker))
        assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(n), marker
        assert abs(draws.std() - sd) < 4 * sd / np.sqrt(2 * n) + 0.01 * sd, marker
        # the study's true effect is the outcome's mean (no u), and so is the typical study's
        row = f"{SPARSE.index[SPARSE['marker'] == marker][0]}"
        np.testing.assert_array_equal(post["theta"].sel(row=row).values, post["mu"].sel(outcome=marker).values)
        np.testing.assert_array_equal(post["theta_typical"].sel(outcome=marker, profile="pooled").values,
                                      post["mu"].sel(outcome=marker).values)
    # an outcome of three studies keeps its between-study term
    ferritin = post["theta"].sel(row=[str(i) for i in SPARSE.index[SPARSE["marker"] == "ferritin"]]).values
    assert not np.allclose(ferritin[..., 0], post["mu"].sel(outcome="ferritin").values)


def test_the_between_outcome_correlation_needs_two_studies_reporting_one_pair():
    from hlh_meta.errors import InputError
    from hlh_meta.models.normal import between_outcomes, prepare_normal

    def structure(frame, mode="auto"):
        inputs = prepare_normal(frame, "yi", "sei", "study", outcome="marker", multivariate=mode)
        return dict(inputs.structure.priors)["Omega"], "Omega" in inputs.model().named_vars, inputs.attrs

    # the bundled shape: one study reports three markers, another one of them
    assert structure(SPARSE)[:2] == ("Identity", False)
    assert "would be its prior alone" in structure(SPARSE)[2]["between_outcomes_reason"]
    two = pd.DataFrame({"study": ["a", "a", "b", "b"], "marker": ["crp", "ferritin"] * 2,
                        "yi": [-1.0, -0.8, -0.9, -0.6], "sei": [0.3, 0.3, 0.25, 0.3]})
    assert structure(two)[:2] == ("LKJ", True)
    assert structure(SPARSE, "always")[:2] == ("LKJ", True)
    assert structure(two, "never")[:2] == ("Identity", False)
    # a study given weight 0 does not count: the pair is then reported by one study
    assert between_outcomes("auto", np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([1, 1, 0, 0]))[0] is False
    with pytest.raises(InputError, match="multivariate must be one of"):
        prepare_normal(two, "yi", "sei", "study", outcome="marker", multivariate="sometimes")


def _loglik(inputs, shift=0.3):
    model = inputs.model()
    fn = model.compile_fn([model["loglik"], model["theta"]], inputs=model.value_vars, on_unused_input="ignore")
    return fn({k: v + shift for k, v in model.initial_point().items()})


@pytest.mark.parametrize("rho", [0.0, 0.5, -0.3])
def test_the_within_study_correlation_enters_the_likelihood_as_a_block_diagonal_covariance(rho):
    """Each study's rows sum to its multivariate normal log density with covariance
    D R D (R_ij = rho within the study); the rows of different studies are independent."""
    from scipy import stats

    from hlh_meta.models.normal import prepare_normal

    inputs = prepare_normal(SPARSE, "yi", "sei", "study", outcome="marker", within_correlation=rho)
    loglik, theta = _loglik(inputs)
    for study, rows in SPARSE.groupby("study").groups.items():
        i = np.asarray([SPARSE.index.get_loc(r) for r in rows])
        se = SPARSE["sei"].to_numpy()[i]
        R = np.full((len(i), len(i)), rho) + (1 - rho) * np.eye(len(i))
        expected = stats.multivariate_normal(theta[i], np.outer(se, se) * R).logpdf(SPARSE["yi"].to_numpy()[i])
        np.testing.assert_allclose(loglik[i].sum(), expected, rtol=1e-10, err_msg=study)
    # a row with weight 0 leaves its study's correlation: its own term is its marginal density
    w = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
    loglik, theta = _loglik(prepare_normal(SPARSE, "yi", "sei", "study", outcome="marker", within_correlation=rho,
                                           weights=w))
    np.testing.assert_allclose(loglik[1], stats.norm(theta[1], 0.35).logpdf(-0.9), rtol=1e-10)
    i = np.array([0, 4])
    R = np.array([[1, rho], [rho, 1]])
    np.testing.assert_allclose(loglik[i].sum(), stats.multivariate_normal(theta[i], np.outer([0.46, 0.2], [0.46, 0.2])
                                                                          * R).logpdf([-1.1, -0.45]), rtol=1e-10)


def test_an_impossible_within_study_correlation_is_refused():
    from hlh_meta.errors import InputError
    from hlh_meta.models.normal import prepare_normal

    for rho, fragment in ((1.0, "in \\(-1, 1\\)"), (-0.6, "impossible for a study with 3 outcomes")):
        with pytest.raises(InputError, match=fragment):
            prepare_normal(SPARSE, "yi", "sei", "study", outcome="marker", within_correlation=rho)


def test_independent_outcomes_are_each_the_normal_normal_model_of_their_own_rows():
    """One study reports both outcomes, so the auto rule models them independently: each
    outcome's mu and tau agree with the exact (quadrature) posterior of its own rows alone."""
    frame = pd.DataFrame({"study": ["a", "a", "b", "c", "d"], "marker": ["crp", "fer", "fer", "fer", "crp"],
                          "yi": [-1.0, -0.7, -0.2, -0.55, -0.4], "sei": [0.3, 0.25, 0.2, 0.3, 0.35]})
    priors = {"tau": {"dist": "HalfNormal", "sigma": 0.5}}
    idata = hm.fit_normal(frame, estimate="yi", std_err="sei", study="study", outcome="marker", priors=priors,
                          draws=2000, seed=5, target_accept=0.95)
    assert idata.posterior.attrs["between_outcomes"] == "independent" and "Omega" not in idata.posterior
    ess = az.ess(idata, var_names=["mu", "tau"])
    for marker in ("crp", "fer"):
        rows = frame[frame["marker"] == marker]
        exact = fit_normal_exact(rows["yi"].to_numpy(), rows["sei"].to_numpy(), priors=priors)
        for name in ("mu", "tau"):
            _check(idata.posterior[name].sel(outcome=marker).values.ravel(), exact, name,
                   float(ess[name].sel(outcome=marker)))
