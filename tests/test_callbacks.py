"""The generated C callbacks against nutpie's own: same log-density, gradient, status codes
and, with one seed, the same draws bit for bit, before and after a data swap."""

import ctypes
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from hlh_meta.inference.callbacks import compile_pymc_model

nutpie = pytest.importorskip("nutpie")


def _model(prefix: str = "") -> pm.Model:
    """Data of every rank the analyses use (0-d prior hyperparameters, 1-d counts of two
    dtypes, a 2-d design matrix), a transformed and a vector parameter, a deterministic.
    ``prefix`` renames the data variables (the model is otherwise the same)."""
    with pm.Model(coords={"row": range(4), "k": range(2)}) as model:
        scale = pm.Data(prefix + "scale", 1.5)
        y = pm.Data(prefix + "y", np.array([2, 0, 5, 7], dtype="int64"), dims="row")
        n = pm.Data(prefix + "n", np.array([10.0, 4.0, 12.0, 9.0]), dims="row")
        X = pm.Data(prefix + "X", np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0]]), dims=("row", "k"))
        tau = pm.HalfNormal("tau", sigma=scale)
        beta = pm.Normal("beta", 0.0, tau, dims="k")
        eta = pm.Deterministic("eta", pt.dot(X, beta), dims="row")
        pm.Binomial("obs", n=n, logit_p=eta, observed=y, dims="row")
    return model


@pytest.fixture(scope="module")
def pair():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        stock = nutpie.compile_pymc_model(_model())
    return stock, compile_pymc_model(_model())


def _sample(compiled):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nutpie.sample(compiled, draws=60, tune=60, chains=2, seed=11, progress_bar=False)


def _call_logp(compiled, x, dim=None):
    fn = compiled.compiled_logp_func.ctypes
    grad, logp = np.zeros(len(x)), np.zeros(1)
    ptr = ctypes.POINTER(ctypes.c_double)
    code = fn(len(x) if dim is None else dim, x.ctypes.data_as(ptr), grad.ctypes.data_as(ptr), logp.ctypes.data_as(ptr),
              ctypes.c_void_p(compiled.user_data.ctypes.data))
    return code, logp[0], grad


def _call_expand(compiled, x):
    fn = compiled.compiled_expand_func.ctypes
    out = np.zeros(compiled.n_expanded)
    ptr = ctypes.POINTER(ctypes.c_double)
    code = fn(len(x), compiled.n_expanded, x.ctypes.data_as(ptr), out.ctypes.data_as(ptr),
              ctypes.c_void_p(compiled.user_data.ctypes.data))
    return code, out


def _swap(compiled):
    return compiled.with_data(scale=0.4, y=np.array([9, 1, 0, 3]), n=np.array([12.0, 3.0, 2.0, 5.0]),
                              X=np.array([[0.2, 1.0], [1.0, 0.0], [0.3, 0.3], [0.0, 2.0]]))


@pytest.mark.parametrize("swapped", [False, True])
def test_same_values_as_nutpie(pair, swapped):
    stock, ours = (_swap(c) for c in pair) if swapped else pair
    rng = np.random.default_rng(3)
    for x in rng.normal(0, 1.5, (5, ours.n_dim)):
        code_s, logp_s, grad_s = _call_logp(stock, x)
        code_o, logp_o, grad_o = _call_logp(ours, x)
        assert code_o == code_s == 0
        assert logp_o == logp_s and np.array_equal(grad_o, grad_s)
        assert np.array_equal(_call_expand(ours, x)[1], _call_expand(stock, x)[1])


def test_swapped_data_reaches_the_callback(pair):
    _, ours = pair
    x = np.full(ours.n_dim, 0.3)
    assert _call_logp(ours, x)[1] != _call_logp(_swap(ours), x)[1]


def test_status_codes(pair):
    stock, ours = pair
    x = np.zeros(ours.n_dim)
    assert _call_logp(ours, x, dim=ours.n_dim + 1)[0] == _call_logp(stock, x, dim=stock.n_dim + 1)[0] == -1
    big = np.full(ours.n_dim, 800.0)      # exp(800) overflows: non-finite log-density or gradient
    assert _call_logp(ours, big)[0] == _call_logp(stock, big)[0] != 0


@pytest.mark.parametrize("swapped", [False, True])
def test_same_draws_as_nutpie(pair, swapped):
    stock, ours = (_swap(c) for c in pair) if swapped else pair
    a, b = _sample(stock), _sample(ours)
    for name in ("tau", "beta", "eta"):
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values)
    np.testing.assert_array_equal(a.sample_stats["diverging"].values, b.sample_stats["diverging"].values)


def _cache_hits_in_new_process(prefix: str) -> list[str]:
    script = ("import sys, warnings; warnings.simplefilter('ignore'); sys.path.insert(0, sys.argv[1])\n"
              "from test_callbacks import _model\n"
              "from hlh_meta.inference.callbacks import compile_pymc_model\n"
              "c = compile_pymc_model(_model(sys.argv[2]))\n"
              "print(c.compiled_logp_func.cache_hits, c.compiled_expand_func.cache_hits)")
    out = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), prefix], capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def test_a_later_process_loads_the_callbacks_from_the_cache(pair):
    """The fixture compiled (and so cached) the callbacks; a new process must load both."""
    assert _cache_hits_in_new_process("") == ["1", "1"]


def test_the_cache_does_not_depend_on_data_variable_names(pair):
    """nutpie may name the model's data differently from one release to the next (0.16.9
    uses random ids): the cache key holds positions and types, so renamed data still hit."""
    assert _cache_hits_in_new_process("renamed_") == ["1", "1"]


_KEYS_OF_BUNDLED = """
import sys, warnings
warnings.simplefilter("ignore")
import hlh_meta as hm
from hlh_meta.inference import callbacks

class Stop(BaseException):          # not an Exception: the fallback path does not catch it
    pass

real = callbacks._cache_key

def record(kind, fn, layout, sizes):
    key = real(kind, fn, layout, sizes)
    print(current, kind, key)
    if kind == "expand_numba":
        raise Stop
    return key

callbacks._cache_key = record
for current in sys.argv[1:]:
    try:
        hm.run_analysis(current)
    except Stop:
        pass
"""


def test_the_bundled_models_compile_to_the_same_cache_keys_in_every_process(tmp_path):
    """The callbacks' cache keys (which hold PyTensor's key of the compiled graph) of the
    bundled analyses' models are equal in two processes, so a later process loads what an
    earlier one compiled. With data of unknown shapes, PyTensor's shape rewrites chose among
    equal shapes in a different order in each process and every process compiled again.
    Both build the functions (an empty function cache: no outline, whose callbacks, missing
    from numba's cache after a change of this module, would be generated twice)."""
    import os

    from hlh_meta.inference import function_cache

    root = Path(__file__).parents[1]
    specs = [str(root / "models" / f"{name}.toml") for name in ("mortality", "biomarkers")]
    env = {**os.environ, function_cache.DIRECTORY: str(tmp_path)}
    runs = [subprocess.Popen([sys.executable, "-c", _KEYS_OF_BUNDLED, *specs], stdout=subprocess.PIPE, text=True,
                             env=env) for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    first = outputs[0].splitlines()
    assert len(first) == 4 and all(line.split()[2].startswith("hlh_meta_") for line in first), outputs[0]
    assert outputs[0] == outputs[1]
