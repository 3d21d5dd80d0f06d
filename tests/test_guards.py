"""Guards around nutpie's private interfaces: the generated C callbacks fall back to nutpie's
own when anything does not match, the raw-trace conversion refuses a layout it does not know
(or falls back to nutpie's conversion), and an interrupted run is reported as such."""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pymc as pm
import pytest

from hlh_meta import errors
from hlh_meta.errors import SamplingInterrupted, warn_once
from hlh_meta.inference import callbacks, trace

nutpie = pytest.importorskip("nutpie")
pyarrow = pytest.importorskip("pyarrow")

SAMPLE = dict(draws=40, tune=40, chains=2, seed=5, progress_bar=False)


def _model() -> pm.Model:
    with pm.Model(coords={"row": range(3)}) as model:
        y = pm.Data("y", np.array([1.0, -0.5, 2.0]), dims="row")
        s = pm.Data("s", 1.5)
        mu = pm.Normal("mu", 0.0, s)
        tau = pm.HalfNormal("tau", 1.0)
        theta = pm.Normal("theta", mu, tau, dims="row")
        pm.Normal("obs", theta, 1.0, observed=y, dims="row")
    return model


@pytest.fixture(scope="module")
def fast():
    with warnings.catch_warnings():
        warnings.simplefilter("error", callbacks.CallbackFallbackWarning)
        compiled = callbacks.compile_pymc_model(_model())
    assert compiled.compiled_logp_func._pyfunc.__module__ == callbacks.__name__
    return compiled


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(errors, "_WARNED_ONCE", set())


def _draws(compiled) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = nutpie.sample(compiled, **SAMPLE)
    return {name: idata.posterior[name].values for name in ("mu", "tau", "theta")}


# --- the generated callbacks ------------------------------------------------------------

def test_tested_nutpie_matches(fast):
    assert callbacks._mismatch() is None


def test_failing_fast_path_falls_back_with_the_same_draws(fast, monkeypatch, fresh_warnings):
    def broken(*args, **kwargs):
        raise TypeError("record layout not understood")

    monkeypatch.setattr(callbacks, "_reads", broken)
    with pytest.warns(callbacks.CallbackFallbackWarning, match="record layout not understood"):
        stock = callbacks.compile_pymc_model(_model())
    assert stock.compiled_logp_func._pyfunc.__module__ == "nutpie.compile_pymc"
    assert stock.compiled_expand_func._pyfunc.__module__ == "nutpie.compile_pymc"
    ours, theirs = _draws(fast), _draws(stock)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])


def test_fallback_warns_once_per_process(monkeypatch, fresh_warnings):
    monkeypatch.setattr(callbacks, "_mismatch", lambda: "something else")
    monkeypatch.setattr(callbacks, "_stock", lambda model: "nutpie's own")
    with pytest.warns(callbacks.CallbackFallbackWarning) as record:
        assert callbacks.compile_pymc_model(None) == callbacks.compile_pymc_model(None) == "nutpie's own"
    assert len([w for w in record if issubclass(w.category, callbacks.CallbackFallbackWarning)]) == 1


def test_changed_builder_signature_is_not_patched(monkeypatch, fresh_warnings):
    from nutpie import compile_pymc

    original = compile_pymc._make_c_logp_func

    def changed(n_dim, logp_fn, user_data, shared_logp, shared_data, backend="numba"):
        return original(n_dim, logp_fn, user_data, shared_logp, shared_data)

    monkeypatch.setattr(compile_pymc, "_make_c_logp_func", changed)
    monkeypatch.setattr(callbacks, "_fast", lambda model: pytest.fail("the fast path must not run"))
    monkeypatch.setattr(callbacks, "_stock", lambda model: "nutpie's own")
    with pytest.warns(callbacks.CallbackFallbackWarning, match="_make_c_logp_func takes"):
        assert callbacks.compile_pymc_model(_model()) == "nutpie's own"


def test_an_error_compiling_a_generated_callback_falls_back(monkeypatch, fresh_warnings):
    monkeypatch.setattr(callbacks, "_LOGP", callbacks._LOGP.replace("return 0", "return undefined_name"))
    monkeypatch.setattr(callbacks, "_cache_key", lambda *args: None)     # compile, do not load
    monkeypatch.setattr(callbacks, "_stock", lambda model: "nutpie's own")
    with pytest.warns(callbacks.CallbackFallbackWarning, match="logp_numba"):
        assert callbacks.compile_pymc_model(_model()) == "nutpie's own"


@pytest.mark.parametrize("breakage, fragment", [
    (("nutpie", "__version__", "0.17.0"), "nutpie 0.17.0 is not a tested release"),
    (("compile_pymc", "_make_c_expand_func", None), "_make_c_expand_func is missing"),
    (("compile_pymc", "make_user_data", None), "make_user_data is missing"),
    (("cache", "compile_numba_function_src", None), "compile_numba_function_src is missing"),
])
def test_mismatches_are_named(monkeypatch, breakage, fragment):
    from nutpie import compile_pymc
    from pytensor.link.numba import cache

    where, name, value = breakage
    obj = {"nutpie": nutpie, "compile_pymc": compile_pymc, "cache": cache}[where]
    if value is None:
        monkeypatch.delattr(obj, name)
    else:
        monkeypatch.setattr(obj, name, value)
    assert fragment in callbacks._mismatch()


@pytest.mark.parametrize("version, tested", [("0.16.8", True), ("0.16.5", True), ("0.16.11", True),
                                             ("0.16.9rc1", True), ("0.16.4", False), ("0.17.0", False),
                                             ("0.16", False), ("unknown", False)])
def test_tested_releases(monkeypatch, version, tested):
    monkeypatch.setattr(nutpie, "__version__", version)
    assert (callbacks.nutpie_untested() is None) == tested


def test_unexpected_record_layout_is_refused():
    record = np.dtype([("shared", [("data", [("a", np.float64)]), ("size", [("a", np.uintp)]),
                                   ("shape", [("a", np.uintp, (1,))])])])
    with pytest.raises(TypeError, match="64-bit layout"):
        callbacks._reads(record, ["a"], {"a": np.zeros(3)})
    with pytest.raises(TypeError, match="no field shared.data.b"):
        callbacks._reads(record, ["b"], {"b": np.zeros(3)})


def test_other_cfunc_calls_pass_through_during_a_compile(fast, monkeypatch):
    """While nutpie's compile runs with the generated callbacks, a numba.cfunc of any other
    function keeps its own options."""
    import numba

    seen = []
    real = callbacks._build

    def build(*args, **kwargs):
        sig = numba.types.float64(numba.types.float64)
        seen.append(numba.cfunc(sig, nopython=True)(lambda x: 2.0 * x).ctypes(1.5))
        return real(*args, **kwargs)

    monkeypatch.setattr(callbacks, "_build", build)
    callbacks.compile_pymc_model(_model())
    assert seen == [3.0, 3.0]


# --- the raw trace --------------------------------------------------------------------------

def _raw(compiled, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nutpie.sample(compiled, **{**SAMPLE, **kwargs}, return_raw_trace=True)


class _Raw:
    """A raw trace with replaced Arrow tables."""

    def __init__(self, draws, stats):
        self.tables = (draws, stats)

    def get_arrow_trace(self):
        return self.tables


def _tables(compiled):
    draws, stats = _raw(compiled).get_arrow_trace()
    return [pyarrow.record_batch(b) for b in draws], [pyarrow.record_batch(b) for b in stats]


def test_not_a_raw_trace(fast):
    with pytest.raises(trace.TraceFormatError, match=re.escape(f"nutpie {callbacks.TESTED_NUTPIE}")):
        trace.trace_to_inference_data(object(), fast)


def test_statistics_without_tuning_column(fast):
    draws, stats = _tables(fast)
    stats = [s.drop_columns(["tuning"]) for s in stats]
    with pytest.raises(trace.TraceFormatError, match="'tuning'"):
        trace.trace_to_inference_data(_Raw(draws, stats), fast)


def test_shape_metadata_not_understood(fast):
    draws, stats = _tables(fast)
    schema = draws[0].schema
    i = schema.get_field_index("theta")
    field = schema.field(i).with_metadata({b"shape": b"three", b"dims": b"row"})
    draws = [pyarrow.RecordBatch.from_arrays(b.columns, schema=schema.set(i, field)) for b in draws]
    with pytest.raises(trace.TraceFormatError, match="shape metadata"):
        trace.trace_to_inference_data(_Raw(draws, stats), fast)


def test_chain_cut_short_is_an_interruption(fast):
    draws, stats = _tables(fast)
    cut = draws[0].num_rows - 10
    draws[0], stats[0] = draws[0].slice(0, cut), stats[0].slice(0, cut)
    with pytest.raises(SamplingInterrupted, match="interrupted") as info:
        trace.trace_to_inference_data(_Raw(draws, stats), fast)
    assert info.value.completed == [SAMPLE["draws"] - 10, SAMPLE["draws"]]


def test_interrupted_before_any_posterior_draw(fast):
    draws, stats = _tables(fast)
    draws, stats = [b.slice(0, 5) for b in draws], [b.slice(0, 5) for b in stats]
    with pytest.raises(SamplingInterrupted):
        trace.trace_to_inference_data(_Raw(draws, stats), fast)


def test_aborted_sampler_is_an_interruption(fast):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = nutpie.sample(fast, draws=200_000, tune=50, chains=2, seed=1, progress_bar=False,
                                return_raw_trace=True, blocking=False)
        raw = sampler.abort()
    with pytest.raises(SamplingInterrupted, match="of 200000"):
        trace.trace_to_inference_data(raw, fast, draws=200_000, chains=2)


def test_sample_to_inference_data_converts_directly(fast, fresh_warnings):
    with warnings.catch_warnings():
        warnings.simplefilter("error", trace.TraceFallbackWarning)
        idata = trace.sample_to_inference_data(fast, **SAMPLE)
    assert set(idata.groups()) == {"posterior", "sample_stats"}
    np.testing.assert_array_equal(idata.posterior["mu"].values, _draws(fast)["mu"])


@pytest.mark.parametrize("how", ["layout", "version"])
def test_sample_to_inference_data_falls_back_to_nutpies_conversion(fast, monkeypatch, fresh_warnings, how):
    direct = trace.sample_to_inference_data(fast, **SAMPLE)
    if how == "layout":
        def mismatch(raw):
            raise trace.TraceFormatError("a layout from the future")
        monkeypatch.setattr(trace, "_batches", mismatch)
        fragment = "a layout from the future"
    else:
        monkeypatch.setattr(nutpie, "__version__", "0.99.0")
        fragment = "nutpie 0.99.0 is not a tested release"
    with pytest.warns(trace.TraceFallbackWarning, match=fragment):
        idata = trace.sample_to_inference_data(fast, **SAMPLE)
    assert set(idata.groups()) == {"posterior", "sample_stats"}
    for name in ("mu", "tau", "theta"):
        np.testing.assert_array_equal(idata.posterior[name].values, direct.posterior[name].values)
    np.testing.assert_array_equal(idata.sample_stats["diverging"].values, direct.sample_stats["diverging"].values)


def test_public_conversion_cut_short_is_an_interruption(fast):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = nutpie.sample(fast, draws=200_000, tune=50, chains=2, seed=1, progress_bar=False, blocking=False)
        idata = sampler.abort()
    with pytest.raises(SamplingInterrupted):
        trace._public(idata, 200_000, 2)


# --- an interrupted run, through the sampling layer the fits use ---------------------------

def _settings(**kwargs):
    from hlh_meta.inference.sampling import SamplerSettings

    return SamplerSettings(**{"draws": SAMPLE["draws"], "tune": SAMPLE["tune"], "chains": SAMPLE["chains"],
                              "seed": SAMPLE["seed"], **kwargs})


def test_chains_cut_short_equally_are_an_interruption(fast, monkeypatch):
    """Ctrl-C stops every chain at the same draw: the chains are of equal length, and only
    the draws asked for tell the run from a finished one."""
    from hlh_meta.inference import sampling

    real = nutpie.sample

    def interrupted(compiled, **kwargs):
        draws, stats = (list(t) for t in real(compiled, **kwargs).get_arrow_trace())
        keep = draws[0].num_rows - 10
        return _Raw([pyarrow.record_batch(b).slice(0, keep) for b in draws],
                    [pyarrow.record_batch(b).slice(0, keep) for b in stats])

    monkeypatch.setattr(sampling, "_nutpie_compiled", lambda build, key, data: fast)
    monkeypatch.setattr(nutpie, "sample", interrupted)
    with pytest.raises(SamplingInterrupted, match=f"of {SAMPLE['draws']}") as info:
        sampling._sample_once(_model, ("guards",), {}, _settings())
    assert info.value.completed == [SAMPLE["draws"] - 10] * SAMPLE["chains"]


def test_pymc_run_cut_short_is_an_interruption(monkeypatch):
    """PyMC keeps what an interrupted run has (fewer draws or chains) or, before any draw,
    finds nothing to keep: both are interruptions, not a fit or an internal error."""
    import arviz as az
    import xarray as xr

    from hlh_meta.inference import sampling

    short = az.InferenceData(posterior=xr.Dataset({"mu": (("chain", "draw"), np.zeros((2, 25)))}))
    monkeypatch.setattr(pm, "sample", lambda **kwargs: short)
    with pytest.raises(SamplingInterrupted, match="25, 25 of 40"):
        sampling._sample_once(_model, ("guards",), {}, _settings(sampler="pymc"))

    def nothing(**kwargs):
        raise ValueError("Not enough samples to build a trace.")

    monkeypatch.setattr(pm, "sample", nothing)
    with pytest.raises(SamplingInterrupted):
        sampling._sample_once(_model, ("guards",), {}, _settings(sampler="pymc"))


# --- PyMC's forward-sampling compiler -------------------------------------------------------

@pytest.fixture
def no_prior_cache():
    from hlh_meta.models import posterior

    posterior.clear_prior_cache()
    yield
    posterior.clear_prior_cache()      # no later fit may reuse a sampler compiled by the fallback


def test_prior_draws_fall_back_to_sample_prior_predictive(monkeypatch, no_prior_cache):
    """Draws through nutpie's compiled model fail, then PyMC's forward-sampling compiler:
    the prior comes from pm.sample_prior_predictive, with the same variables and distribution
    as the draws through the compiled model."""
    import pandas as pd
    import pymc.sampling.forward as forward

    import hlh_meta as hm
    from hlh_meta.models import posterior

    frame = pd.DataFrame({"yi": [-1.1, -0.8, -0.5, -0.9], "sei": [0.4, 0.3, 0.5, 0.35], "study": list("abcd"),
                          "x": [0.0, 1.0, 0.0, 1.0]})
    fit = dict(estimate="yi", std_err="sei", study="study", covariates=["x"], draws=200, tune=200, chains=2, seed=3,
               refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = hm.fit_normal(frame, **fit).prior
    posterior.clear_prior_cache()

    real = forward.compile_forward_sampling_function

    def changed(*args, **kwargs):
        # the call hlh_meta makes no longer fits; PyMC's own callers (sample_prior_predictive,
        # released together with the function) still do
        if sys._getframe(1).f_globals.get("__name__") == posterior.__name__:
            raise TypeError("compile_forward_sampling_function() got an unexpected keyword argument 'givens_dict'")
        return real(*args, **kwargs)

    def unavailable(inp, seed):
        raise RuntimeError("no expand callback")

    monkeypatch.setattr(forward, "compile_forward_sampling_function", changed)
    monkeypatch.setattr(posterior, "_expanded_prior", unavailable)    # the draws through nutpie's model fail too
    monkeypatch.setattr(posterior, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="falls? back to pm.sample_prior_predictive") as record:
        warnings.simplefilter("ignore", FutureWarning)
        idata = hm.fit_normal(frame, **fit)
    assert any("compile_forward_sampling_function" in str(w.message) for w in record)
    assert any("through the compiled model failed (RuntimeError: no expand callback)" in str(w.message)
               for w in record)
    prior = idata.prior
    assert set(prior.data_vars) == set(expected.data_vars)
    for name in expected.data_vars:
        assert prior[name].dims == expected[name].dims, name
        assert prior[name].shape == expected[name].shape, name
        assert np.isfinite(prior[name].values).all(), name
    for name in ("mu", "tau"):                 # draws of the same prior: Normal(0, 1) and HalfNormal(0.5)
        assert abs(float(prior[name].std()) - float(expected[name].std())) < 0.15, name
    assert {"posterior", "posterior_predictive", "prior_predictive", "log_likelihood"} <= set(idata.groups())


def test_a_data_swap_of_another_shape_is_refused(fast, monkeypatch):
    """A compiled model's data shapes are compiled in; a swap of another shape under the same
    structure key would read past the arrays, so it is refused before nutpie sees it."""
    from hlh_meta.inference import sampling

    monkeypatch.setattr(sampling, "_CACHE", type(sampling._CACHE)({"key": fast}))
    assert sampling._nutpie_compiled(None, "key", {"y": np.zeros(3)}).shared_data["y"].shape == (3,)
    with pytest.raises(ValueError, match="'y' of shape \\(4,\\).*compiled for shape \\(3,\\)"):
        sampling._nutpie_compiled(None, "key", {"y": np.zeros(4)})


def test_prior_draws_fall_back_to_the_forward_sampler(monkeypatch, no_prior_cache):
    """Where the prior draws through nutpie's compiled model fail, PyMC's forward sampler
    draws them (one warning): the same variables, dims and distribution."""
    import pandas as pd

    import hlh_meta as hm
    from hlh_meta.models import posterior

    frame = pd.DataFrame({"yi": [-1.1, -0.8, -0.5, -0.9], "sei": [0.4, 0.3, 0.5, 0.35], "study": list("abcd")})
    fit = dict(estimate="yi", std_err="sei", study="study", draws=200, tune=200, chains=2, seed=3, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = hm.fit_normal(frame, **fit).prior
    posterior.clear_prior_cache()

    def broken(inp, seed):
        raise RuntimeError("expand status 3")

    monkeypatch.setattr(posterior, "_expanded_prior", broken)
    monkeypatch.setattr(posterior, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match=r"through the compiled model failed \(RuntimeError: expand status 3\)"):
        warnings.simplefilter("ignore", FutureWarning)
        prior = hm.fit_normal(frame, **fit).prior
    assert posterior._PRIOR_CACHE                       # the forward sampler drew them
    assert set(prior.data_vars) == set(expected.data_vars)
    for name in expected.data_vars:
        assert prior[name].dims == expected[name].dims and prior[name].shape == expected[name].shape, name
    for name in ("mu", "tau"):
        assert abs(float(prior[name].std()) - float(expected[name].std())) < 0.15, name


def test_a_fallback_warns_once_per_process_and_key(monkeypatch):
    """warn_once: the first call under a key warns (pointing at the caller's caller, as the
    caller's own warnings.warn with that stacklevel would), later ones under it do not; another key warns."""
    monkeypatch.setattr(errors, "_WARNED_ONCE", set())

    def fallback(key):
        warn_once(key, f"fell back ({key})", RuntimeWarning, stacklevel=2)

    import inspect

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback("a")
        line = inspect.currentframe().f_lineno - 1     # the call above
        fallback("a")
        fallback("b")
    assert [str(w.message) for w in caught] == ["fell back (a)", "fell back (b)"]
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)
