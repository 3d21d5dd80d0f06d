"""The disk cache of rewritten PyTensor functions: a structure compiled once is loaded, not
rewritten, and the loaded model gives the same log density, gradient, stored variables and
draws, bit for bit, as a model compiled without the cache, before and after a data swap."""

import os
import warnings

import numpy as np
import pytest
from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS
from test_callbacks import _call_expand, _call_logp, _model, _sample, _swap

from hlh_meta.inference import callbacks, function_cache
from hlh_meta.inference.callbacks import compile_pymc_model
from hlh_meta.inference.function_cache import FunctionCacheWarning

nutpie = pytest.importorskip("nutpie")
compile_pymc = pytest.importorskip("nutpie.compile_pymc")

STRUCTURE = ("function-cache-test", 1)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(function_cache.DIRECTORY, str(tmp_path))
    monkeypatch.setattr(function_cache, "_warned", False)
    monkeypatch.setattr(callbacks, "_functions_warned", False)
    return tmp_path


@pytest.fixture(scope="module")
def fresh():
    """The model compiled with the generated callbacks and no function cache."""
    return compile_pymc_model(_model())


def _files(folder):
    return sorted(p for p in folder.iterdir() if p.suffix == ".pkl")


def _same_as(fresh, other):
    rng = np.random.default_rng(3)
    for x in rng.normal(size=(5, fresh.n_dim)):
        a, b = _call_logp(fresh, x), _call_logp(other, x)
        assert a[0] == b[0] == 0
        assert a[1] == b[1]
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_array_equal(_call_expand(fresh, x)[1], _call_expand(other, x)[1])


def test_the_first_compile_writes_the_functions_and_a_later_one_loads_them(cache_dir, fresh):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FunctionCacheWarning)
        first = compile_pymc_model(_model(), STRUCTURE)
        (path,) = _files(cache_dir)
        written = os.stat(path)
        calls = []
        real = compile_pymc._make_functions

        def counted(model, *, mode, compute_grad, join_expanded, pymc_initial_point_fn, var_names=None):
            calls.append(1)
            return real(model, mode=mode, compute_grad=compute_grad, join_expanded=join_expanded,
                        pymc_initial_point_fn=pymc_initial_point_fn, var_names=var_names)

        compile_pymc._make_functions = counted
        try:
            loaded = compile_pymc_model(_model(), STRUCTURE)
        finally:
            compile_pymc._make_functions = real
    assert calls == []                                   # nothing built, differentiated or rewritten
    assert os.stat(path).st_ino == written.st_ino        # read, not written again
    # the process that wrote the functions compiled the code a later process loads (the same numba keys)
    for callback in ("compiled_logp_func", "compiled_expand_func"):
        keys = [CACHED_SRC_FUNCTIONS.get(getattr(c, callback)._pyfunc) for c in (first, loaded)]
        assert keys[0] is not None and keys[0] == keys[1], callback
    for other in (first, loaded):
        _same_as(fresh, other)
        _same_as(_swap(fresh), _swap(other))
    a, b = _sample(_swap(fresh)), _sample(_swap(loaded))
    for name in ("tau", "beta", "eta"):
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values)


def test_a_file_that_cannot_be_read_is_compiled_again_and_replaced(cache_dir, fresh):
    compile_pymc_model(_model(), STRUCTURE)
    (path,) = _files(cache_dir)
    path.write_bytes(b"not a pickle")
    with pytest.warns(FunctionCacheWarning, match="could not be used"):
        again = compile_pymc_model(_model(), STRUCTURE)
    _same_as(fresh, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FunctionCacheWarning)
        _same_as(fresh, compile_pymc_model(_model(), STRUCTURE))     # the replaced file loads


def test_a_changed_nutpie_function_is_used_as_it_is_with_a_warning(cache_dir, fresh, monkeypatch):
    real = compile_pymc._make_functions

    def renamed(model, *, mode, compute_grad, join_expanded, pymc_initial_point_fn, var_names=None, extra=None):
        return real(model, mode=mode, compute_grad=compute_grad, join_expanded=join_expanded,
                    pymc_initial_point_fn=pymc_initial_point_fn, var_names=var_names)

    monkeypatch.setattr(compile_pymc, "_make_functions", renamed)
    with pytest.warns(FunctionCacheWarning, match="not what hlh_meta's cache"):
        compiled = compile_pymc_model(_model(), STRUCTURE)
    _same_as(fresh, compiled)
    assert _files(cache_dir) == []


def test_the_key_names_the_structure_and_the_data_shapes():
    model = _model()
    key = function_cache.key_of(STRUCTURE, model)
    assert key == function_cache.key_of(STRUCTURE, _model())
    assert key != function_cache.key_of(("function-cache-test", 2), model)
    assert function_cache.key_of(object(), model) is None         # a repr with an address names no file
    with _model() as other:
        other["y"].set_value(np.array([1, 2, 3], dtype=other["y"].dtype))
    assert key != function_cache.key_of(STRUCTURE, other)


def test_without_a_structure_nothing_is_kept(cache_dir):
    compile_pymc_model(_model())
    assert _files(cache_dir) == []
