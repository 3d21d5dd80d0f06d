"""The disk cache of rewritten PyTensor functions: a structure compiled once is loaded, not
rewritten, and the loaded model gives the same log density, gradient, stored variables and
draws, bit for bit, as a model compiled without the cache, before and after a data swap."""

import functools
import os
import pickle
import warnings

import numpy as np
import pytest
from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS
from test_callbacks import _call_expand, _call_logp, _model, _sample, _swap

from hlh_meta import errors
from hlh_meta.inference import function_cache
from hlh_meta.inference.callbacks import compile_pymc_model
from hlh_meta.inference.function_cache import FunctionCacheWarning

nutpie = pytest.importorskip("nutpie")
compile_pymc = pytest.importorskip("nutpie.compile_pymc")

STRUCTURE = ("function-cache-test", 1)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(function_cache.DIRECTORY, str(tmp_path))
    monkeypatch.setattr(errors, "_WARNED_ONCE", set())       # each fallback warns again in this test
    return tmp_path


@pytest.fixture(scope="module")
def fresh():
    """The model compiled with the generated callbacks and no function cache."""
    return compile_pymc_model(_model())


def _files(folder):
    """The files of rewritten functions (not of initial point functions)."""
    return sorted(p for p in folder.iterdir() if p.suffix == ".pkl" and not p.name.endswith(".initial.pkl"))


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
    _outline(cache_dir).unlink()              # (with an outline the file is not read)
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


def _outline(folder):
    (path,) = sorted(folder.glob("*.outline"))
    return path


def test_a_later_compile_loads_the_callbacks_from_the_outline_without_the_functions(cache_dir, fresh, monkeypatch):
    first = compile_pymc_model(_model(), STRUCTURE)
    assert type(first.logp_func).__name__ == "Function"                 # the first compile has the functions
    outline = _outline(cache_dir)

    def unread(*args, **kwargs):
        raise AssertionError("the functions were loaded")

    monkeypatch.setattr(function_cache, "cached_make_functions", unread)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = compile_pymc_model(_model(), STRUCTURE)
    assert type(loaded.logp_func).__name__ == "_Unlinked"
    assert outline.exists()
    for callback in ("compiled_logp_func", "compiled_expand_func"):    # the same compiled callbacks
        keys = [CACHED_SRC_FUNCTIONS.get(getattr(c, callback)._pyfunc) for c in (first, loaded)]
        assert keys[0] is not None and keys[0] == keys[1], callback
    _same_as(fresh, loaded)
    _same_as(_swap(fresh), _swap(loaded))
    a, b = _sample(_swap(fresh)), _sample(_swap(loaded))
    for name in ("tau", "beta", "eta"):
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values)
    with _model() as other:                          # the model's own data, not those of the first compile
        other["y"].set_value(np.array([1, 4, 0, 2], dtype=other["y"].dtype))
    _same_as(compile_pymc_model(other), compile_pymc_model(other, STRUCTURE))


@pytest.mark.parametrize("spoil", ["keys", "names", "bytes"])
def test_an_outline_whose_callbacks_are_not_in_numbas_cache_loads_the_functions(cache_dir, fresh, spoil):
    compile_pymc_model(_model(), STRUCTURE)
    outline = _outline(cache_dir)
    right = pickle.loads(outline.read_bytes())
    fmt, n_dim, n_expanded, shape_info, shared, inner = right
    if spoil == "keys":             # callbacks numba never compiled: a cache miss
        inner = ["not-a-key-" + k for k in inner]
    elif spoil == "names":          # a data variable the model does not hold
        shared = [[*names, "no-such-data"] for names in shared]
    blob = b"not a pickle" if spoil == "bytes" else pickle.dumps((fmt, n_dim, n_expanded, shape_info, shared, inner))
    outline.write_bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = compile_pymc_model(_model(), STRUCTURE)
    assert type(again.logp_func).__name__ == "Function"
    _same_as(fresh, again)
    _same_as(_swap(fresh), _swap(again))
    assert repr(pickle.loads(_outline(cache_dir).read_bytes())) == repr(right)   # written again
    assert type(compile_pymc_model(_model(), STRUCTURE).logp_func).__name__ == "_Unlinked"


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


def _initial_files(folder):
    return sorted(p for p in folder.iterdir() if p.name.endswith(".initial.pkl"))


def test_the_initial_point_function_is_kept_and_a_loaded_copy_reads_the_models_data(cache_dir, fresh, monkeypatch):
    import pymc.initial_point

    with warnings.catch_warnings():
        warnings.simplefilter("error", FunctionCacheWarning)
        compile_pymc_model(_model(), STRUCTURE)
        (path,) = _initial_files(cache_dir)
        real = pymc.initial_point.make_initial_point_fn
        built = []
        monkeypatch.setattr(pymc.initial_point, "make_initial_point_fn",
                            functools.wraps(real)(lambda **kw: built.append(kw["jitter_rvs"]) or real(**kw)))
        model = _model()
        loaded = compile_pymc_model(model, STRUCTURE)
        monkeypatch.undo()
    assert not any(built) and _initial_files(cache_dir) == [path]     # the chains' function loaded, not built
    for seed in (0, 1, 12345):
        np.testing.assert_array_equal(loaded.initial_point_func(seed), fresh.initial_point_func(seed))
    # a model whose data change after the compile starts where a freshly built function starts:
    # tau's support point is its prior scale, data of the model
    other = _model()
    built_here = compile_pymc_model(other)                              # not kept: PyMC's own function
    for m in (model, other):
        m["scale"].set_value(np.array(0.2))
    for seed in (0, 3):
        a, b = loaded.initial_point_func(seed), built_here.initial_point_func(seed)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, fresh.initial_point_func(seed))
    model["scale"].set_value(np.array(1.5))
    np.testing.assert_array_equal(loaded.initial_point_func(0), fresh.initial_point_func(0))


def _other_form(real):
    def wrapped(*, model, overrides=None, jitter_rvs=None, default_strategy="support_point", return_transformed=True):
        fn = real(model=model, overrides=overrides, jitter_rvs=jitter_rvs, default_strategy=default_strategy,
                  return_transformed=return_transformed)
        return lambda seed: fn(seed)                                   # not PyMC's closure
    return wrapped


def _other_parameters(real):
    def renamed(*, model, overrides=None, jitter_rvs=None, default_strategy="support_point", return_transformed=True,
                extra=None):
        return real(model=model, overrides=overrides, jitter_rvs=jitter_rvs, default_strategy=default_strategy,
                    return_transformed=return_transformed)
    return renamed


@pytest.mark.parametrize("changed, warned", [(_other_form, r"make_initial_point_fn \(the function it returns\)"),
                                             (_other_parameters, r"make_initial_point_fn \(its parameters\)")],
                         ids=["function of another form", "maker with other parameters"])
def test_an_initial_point_function_not_as_written_for_is_used_as_it_is_with_a_warning(cache_dir, fresh, monkeypatch,
                                                                                     changed, warned):
    import pymc.initial_point

    monkeypatch.setattr(pymc.initial_point, "make_initial_point_fn", changed(pymc.initial_point.make_initial_point_fn))
    with pytest.warns(FunctionCacheWarning, match=warned):
        compiled = compile_pymc_model(_model(), STRUCTURE)
    assert _initial_files(cache_dir) == []
    np.testing.assert_array_equal(compiled.initial_point_func(4), fresh.initial_point_func(4))


def test_an_initial_point_file_that_cannot_be_read_is_built_again_and_replaced(cache_dir, fresh):
    compile_pymc_model(_model(), STRUCTURE)
    (path,) = _initial_files(cache_dir)
    path.write_bytes(b"not a pickle")
    with pytest.warns(FunctionCacheWarning, match="could not be used"):
        again = compile_pymc_model(_model(), STRUCTURE)
    np.testing.assert_array_equal(again.initial_point_func(2), fresh.initial_point_func(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FunctionCacheWarning)
        np.testing.assert_array_equal(compile_pymc_model(_model(), STRUCTURE).initial_point_func(2),
                                      fresh.initial_point_func(2))     # the replaced file loads
