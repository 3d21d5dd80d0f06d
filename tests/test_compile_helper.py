"""The first compile of a structure on a machine: the helper process compiles the expand
callback while the calling process compiles the log density. Each case runs in a new process
on an empty compile cache; the callbacks must give the values of nutpie's own compile."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("nutpie")

_COLD = """
import sys, warnings
sys.path.insert(0, sys.argv[1])
import numpy as np
import nutpie
import pymc as pm
from test_callbacks import _call_expand, _call_logp, _model
from hlh_meta.inference import compile_helper
from hlh_meta.inference.callbacks import compile_pymc_model


def model(extra):
    with _model() as m:
        if extra:                             # other graphs: a structure new to the cache
            pm.Potential("nudge", -0.01 * m["tau"])
            pm.Deterministic("twice_tau", 2 * m["tau"])
    return m


def compiled(extra, compare):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = compile_pymc_model(model(extra), ("compile helper test", extra))
    warned = any(issubclass(w.category, compile_helper.CompileHelperWarning) for w in caught)
    print(ours.compiled_logp_func.cache_hits, ours.compiled_expand_func.cache_hits, warned)
    if not compare:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = nutpie.compile_pymc_model(model(extra))
    same = True
    for x in np.random.default_rng(5).normal(0, 1.5, (5, ours.n_dim)):
        _, logp_o, grad_o = _call_logp(ours, x)
        _, logp_s, grad_s = _call_logp(stock, x)
        same = same and logp_o == logp_s and np.array_equal(grad_o, grad_s)
        same = same and np.array_equal(_call_expand(ours, x)[1], _call_expand(stock, x)[1])
    print(same)


entry = compile_helper.ENTRY
compile_helper.ENTRY = "import sys; sys.exit(3)"      # a helper that exits at once
compiled(False, compare=False)                        # compiled as without a helper (tests/test_callbacks.py)
compile_helper.ENTRY = entry                          # a working one is started for the next structure
compiled(True, compare=True)
"""


def _cold(**env: str) -> list[str]:
    """For two structures compiled one after the other in a new process on an empty compile
    cache, first with a helper that fails, then with a working one: ``logp cache hits,
    expand cache hits, helper warning`` of each, and of the second whether its values are nutpie's."""
    with tempfile.TemporaryDirectory() as fresh:
        environment = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={fresh}/pytensor",
                       "NUMBA_CACHE_DIR": f"{fresh}/numba", **env}
        environment.pop("HLH_META_FUNCTION_CACHE", None)
        out = subprocess.run([sys.executable, "-c", _COLD, str(Path(__file__).parent)], capture_output=True,
                             text=True, env=environment, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the helper is used with two or more cores only")
def test_the_helper_compiles_the_expand_callback_of_a_new_structure():
    """A failing helper leaves both callbacks to the process, with one warning; a working one
    compiles the expand callback, which the process then loads (a cache hit on an empty
    cache) while it compiles the log density itself, with nutpie's values."""
    assert _cold() == ["0", "0", "True", "0", "1", "False", "True"]


def test_the_helper_is_switched_off_by_the_environment_variable_or_a_single_core(monkeypatch):
    from hlh_meta.inference import compile_helper

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for value, used in (("0", False), ("false", False), ("", True), ("1", True)):
        monkeypatch.setenv(compile_helper.OFF, value)
        assert compile_helper.enabled() is used
    monkeypatch.setenv(compile_helper.OFF, "1")
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert not compile_helper.enabled()
    assert compile_helper.start("any file") is None


_ORPHAN = """
import os, sys, time
from hlh_meta.inference import compile_helper
# a helper whose work outlasts the test: only its watch on the parent can end it
compile_helper.ENTRY = ("import time; from hlh_meta.inference.compile_helper import serve; "
                        "serve(lambda path: time.sleep(300))")
job = compile_helper.start("any file")
print(compile_helper._HELPER[0].process.pid, flush=True)
time.sleep(0.5)
os._exit(0)                                   # no clean-up: as if the process were killed
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the helper is used with two or more cores only")
def test_the_helper_exits_when_the_process_that_started_it_is_gone():
    out = subprocess.run([sys.executable, "-c", _ORPHAN], capture_output=True, text=True, timeout=120)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, 9)
    pytest.fail("the helper process outlived the process that started it")
