"""The leaner load of cached callbacks: the symbols read from an object file are those its
module defines, and a later process that loads the callbacks this way (or, where numba is
not the tested release, numba's own way, with a warning) computes what nutpie's own compile does."""

import json
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import llvmlite.binding as llvm
import numpy as np
import pytest

from hlh_meta.inference import cached_load
from hlh_meta.inference.cached_load import defined_symbols

nutpie = pytest.importorskip("nutpie")

_IR = """
@counter = global i64 7
@hidden = internal global i64 3
declare double @external_fn(double)
define double @exported(double %x) {
  %y = call double @external_fn(double %x)
  %c = load i64, i64* @hidden
  %d = sitofp i64 %c to double
  %z = fadd double %y, %d
  ret double %z
}
define internal double @helper(double %x) {
  ret double %x
}
define double @uses_helper(double %x) {
  %y = call double @helper(double %x)
  ret double %y
}
"""


def _object_of(ir: str) -> tuple[bytes, set[str]]:
    """An object file compiled from ``ir`` by LLVM, and the names its module defines."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(ir)
    defined = {f.name for f in module.functions if not f.is_declaration} | \
        {g.name for g in module.global_variables if not g.is_declaration}
    machine = llvm.Target.from_default_triple().create_target_machine(opt=0)
    return machine.emit_object(module), defined


def test_the_symbols_an_object_defines():
    obj, defined = _object_of(_IR)
    if obj[:4] != b"\x7fELF":
        pytest.skip("this platform's objects are not ELF: numba's own load is used")
    names = defined_symbols(obj)
    assert names is not None
    assert {"exported", "uses_helper", "counter"} <= names
    assert "external_fn" not in names                        # declared, not defined
    assert {n for n in defined if n not in ("helper", "hidden")} <= names   # internal ones may be inlined away


@pytest.mark.parametrize("data", [b"", b"not an object file", b"\x7fELF\x02\x01" + b"\0" * 10, b"\x7fELF\x01\x01" + b"\0" * 60])
def test_what_is_not_an_elf64_object_gives_none(data):
    assert defined_symbols(data) is None


def test_a_truncated_object_gives_none():
    obj, _ = _object_of(_IR)
    if obj[:4] != b"\x7fELF":
        pytest.skip("this platform's objects are not ELF")
    assert defined_symbols(obj[: len(obj) // 2]) is None


_LOAD = """
import json, sys, warnings
import numpy as np
sys.path.insert(0, sys.argv[1])
from hlh_meta.inference import cached_load
if sys.argv[2] == "untested":
    cached_load.TESTED_NUMBA = ()
read = []
real = cached_load.defined_symbols
cached_load.defined_symbols = lambda obj: (lambda names: read.append(bool(names)) or names)(real(obj))
from test_callbacks import _model, _call_logp, _call_expand
from hlh_meta.inference.callbacks import compile_pymc_model
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    c = compile_pymc_model(_model())
points = np.random.default_rng(5).normal(0, 1.5, (4, c.n_dim))
print(json.dumps({"hits": [c.compiled_logp_func.cache_hits, c.compiled_expand_func.cache_hits], "lean": sum(read),
                  "warned": [str(w.message) for w in caught if w.category is cached_load.LeanLoadWarning],
                  "logp": [[_call_logp(c, x)[1], *_call_logp(c, x)[2]] for x in points],
                  "expand": [_call_expand(c, x)[1].tolist() for x in points]}))
"""


def _load_in_new_process(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _LOAD, str(Path(__file__).parent), mode], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def stock():
    sys.path.insert(0, str(Path(__file__).parent))
    from test_callbacks import _model

    from hlh_meta.inference.callbacks import compile_pymc_model

    compile_pymc_model(_model())           # the callbacks are in numba's cache for the processes below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nutpie.compile_pymc_model(_model())


def _expected(stock) -> tuple[list, list]:
    from test_callbacks import _call_expand, _call_logp

    points = np.random.default_rng(5).normal(0, 1.5, (4, stock.n_dim))
    return ([[_call_logp(stock, x)[1], *_call_logp(stock, x)[2]] for x in points],
            [_call_expand(stock, x)[1].tolist() for x in points])


@pytest.mark.parametrize("mode", ["tested", "untested"])
def test_a_later_process_loads_the_same_callbacks(stock, mode):
    """Both callbacks come from the cache; with the tested numba through the leaner load, with
    another through numba's own (one warning); either way the values are nutpie's, bit for bit."""
    got = _load_in_new_process(mode)
    assert got["hits"] == [1, 1]
    if mode == "tested":
        assert got["lean"] == 2 and got["warned"] == []
    else:
        assert got["lean"] == 0 and len(got["warned"]) == 1 and "tested with numba" in got["warned"][0]
    logp, expand = _expected(stock)
    assert got["logp"] == logp and got["expand"] == expand


def test_libraries_of_other_names_keep_numbas_load(monkeypatch):
    """Only the generated callbacks' libraries are loaded the leaner way."""
    from numba.core import codegen

    seen = []
    original = codegen.CPUCodeLibrary.__dict__["_unserialize"]
    monkeypatch.setattr(codegen.CPUCodeLibrary, "_unserialize",
                        classmethod(lambda cls, cg, state: seen.append(state[0]) or "numba's"))
    lean = cached_load._lean(codegen.CPUCodeLibrary.__dict__["_unserialize"], ("logp_numba",))
    fake = SimpleNamespace(_engine=SimpleNamespace(_defined_symbols=set()))
    assert lean.__func__(codegen.CPUCodeLibrary, fake, ("other_fn", "object", (b"", b""))) == "numba's"
    assert lean.__func__(codegen.CPUCodeLibrary, fake, ("logp_numba", "bitcode", b"")) == "numba's"
    assert lean.__func__(codegen.CPUCodeLibrary, fake, ("logp_numba", "object", (b"not elf", b""))) == "numba's"
    assert seen == ["other_fn", "logp_numba", "logp_numba"]
    assert fake._engine._defined_symbols == set()
    monkeypatch.setattr(codegen.CPUCodeLibrary, "_unserialize", original)
