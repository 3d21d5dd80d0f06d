"""nutpie's compiled PyMC model with generated, disk-cached C callbacks: the same numbers,
compiled once per machine instead of once per process.

nutpie samples by calling two numba ``cfunc`` callbacks: the log-density with its gradient,
and the "expand" function that maps a point to the stored variables. Each wraps a compiled
PyTensor function and reads the model's data (``pm.Data``) through pointers held in a
``user_data`` record, which ``with_data`` rewrites without compiling again. numba loads the
PyTensor functions from PyTensor's disk cache, but nutpie's wrappers cannot be cached, and
compiling them was most of a first fit:

- nutpie reads the data arrays in a ``literal_unroll`` loop over a generic overload (numba
  types the loop body once per array), and copies results by slice assignment
  (``out[...] = grad``), whose shape-mismatch error message numba compiles for every
  model: together about 4 s of a 7-8 s first fit of a small model on 2 cores;
- compiling a wrapper also re-optimises the PyTensor function linked into it (2-4 s for
  the bundled models).

The wrappers here are generated as straight-line source: each array is a ``carray`` over
the data pointer and shape read from ``user_data`` at word offsets fixed when the model is
compiled (outside the ``try`` block: these reads cannot raise, and inside it numba's
liveness analysis takes seconds), and results are copied element by element after a length
check. The source is registered with PyTensor's numba cache under a key built from the
PyTensor function's own cache key, the record layout (array positions, offsets and dtypes, not
nutpie's names for the arrays), this module's source and the numba
and nutpie versions, so a later process loads the compiled wrapper from disk (by
:mod:`.cached_load`, which reads the wrapper's symbols from its object code instead of parsing
the module's bitcode). Status codes are nutpie's; the record layout,
``with_data`` and the sampler are nutpie's, untouched. ``tests/test_callbacks.py`` holds
values, status codes and draws equal, bit for bit, to nutpie's own compile, before and
after a data swap, and checks that a second process loads the wrappers from the cache.

Written against nutpie 0.16 (tested with 0.16.5-0.16.8: ``TESTED_NUTPIE``): the two wrapper builders of
``nutpie.compile_pymc`` are replaced for the duration of one compile, under a lock. Before
that, the nutpie version, the builders' names and parameters, and the PyTensor cache
functions used are checked; the record layout is checked field by field while the source
is generated. If anything does not match, or generating or compiling a wrapper raises,
the model is compiled by plain ``nutpie.compile_pymc_model`` and one
:class:`CallbackFallbackWarning` per process says why.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import re
import sys
import threading
import warnings
import weakref
from unittest import mock

import numpy as np

_LOCK = threading.Lock()
_WORD = np.dtype(np.uint64)

_LOGP = """
def logp_numba(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
{read}
    try:
        logp_val, grad = fn(carray(x_, ({n_dim},)), {args})
        if grad.shape[0] != {n_dim}:
            return 1
        logp_[0] = logp_val
        finite = True
        for i in range({n_dim}):
            out_[i] = grad[i]
            finite = finite and np.isfinite(grad[i])
        if not finite:
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND = """
def expand_numba(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim} or expanded != {n_expanded}:
        return -1
{read}
    try:
        (values,) = fn(carray(x_, ({n_dim},)), {args})
        if values.shape[0] != {n_expanded}:
            return -2
        for i in range({n_expanded}):
            out_[i] = values[i]
    except Exception:
        return -2
    return 0
"""


@functools.cache
def _void_pointer():
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def void_pointer(typingctx, address):
        """An integer address as a ``void*``."""
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)
        return types.voidptr(address), codegen

    return void_pointer


def _offset(dtype: np.dtype, *path: str) -> tuple[int, np.dtype]:
    """Byte offset and dtype of a nested field of a structured dtype."""
    offset = 0
    for key in path:
        fields = dtype.fields
        if not fields or key not in fields:
            raise TypeError(f"user_data record has no field {'.'.join(path)}")
        dtype, at = fields[key][:2]
        offset += at
    return offset, dtype


def _reads(record: np.dtype, names: list[str], shared_data: dict) -> tuple[list[str], list[str], list, dict]:
    """Source lines that view each data array from the ``user_data`` record
    (``nutpie.compile_pymc.make_user_data``: per array its address, size and shape, all
    64-bit words), with the argument names, a description for the cache key and the dtypes.

    The description names each array by its position, never by its name: nutpie's names
    for the model's data are not stable across versions, and the compiled wrapper does not
    depend on them. Raises TypeError for a record laid out otherwise."""
    if record.itemsize % _WORD.itemsize:
        raise TypeError(f"user_data record of {record.itemsize} bytes is not made of 64-bit words")
    lines = [f"    words = carray(user_data_, ({record.itemsize // _WORD.itemsize},), word)"]
    args, layout, dtypes = [], [], {}
    for i, name in enumerate(names):
        data_at, data_type = _offset(record, "shared", "data", name)
        _, size_type = _offset(record, "shared", "size", name)
        shape_at, shape_type = _offset(record, "shared", "shape", name)
        ndim = len(shared_data[name].shape)
        words = (data_type, size_type, shape_type.base)
        if any(t.kind != "u" or t.itemsize != _WORD.itemsize for t in words) or shape_type.shape != (ndim,) \
                or data_at % _WORD.itemsize or shape_at % _WORD.itemsize:
            raise TypeError(f"user_data record field of data array {i} is not the 64-bit layout expected")
        shape = "".join(f"int(words[{shape_at // 8 + d}]), " for d in range(ndim))
        dtypes[f"dtype_{i}"] = np.dtype(shared_data[name].dtype)
        lines.append(f"    a{i} = carray(void_pointer(words[{data_at // 8}]), ({shape}), dtype_{i})")
        args.append(f"a{i}")
        layout.append([i, data_at, shape_at, ndim, dtypes[f"dtype_{i}"].str])
    return lines, args, layout, dtypes


@functools.cache
def _own_source() -> str:
    return inspect.getsource(sys.modules[__name__])


def _cache_key(kind: str, fn, layout: list, sizes: list[int]) -> str | None:
    """A key naming everything the compiled wrapper depends on, or None when the PyTensor
    function itself is not cached (then neither is the wrapper)."""
    import numba
    import nutpie
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    inner = CACHED_SRC_FUNCTIONS.get(getattr(fn, "py_func", None))  # type: ignore[arg-type]
    if inner is None:
        return None
    text = json.dumps([kind, inner, layout, [int(s) for s in sizes], numba.__version__, nutpie.__version__,
                       _own_source()])
    return "hlh_meta_" + hashlib.sha256(text.encode()).hexdigest()


_GENERATED: "weakref.WeakSet" = weakref.WeakSet()   # the Python functions _build generated


def _build(kind: str, template: str, fn, c_sig, user_data, names, shared_data, **sizes):
    import numba
    from pytensor.link.numba.cache import compile_numba_function_src

    read, args, layout, dtypes = _reads(user_data.dtype, list(names), shared_data)
    source = template.format(read="\n".join(read), args=", ".join(args), **sizes)
    key = _cache_key(kind, fn, layout, list(sizes.values()))
    scope = {"__name__": __name__, "np": np, "carray": numba.carray, "void_pointer": _void_pointer(),
             "word": _WORD, "fn": fn, **dtypes}
    py_func = compile_numba_function_src(source, kind, global_env=scope, cache_key=key)
    _GENERATED.add(py_func)
    return py_func, c_sig


def _c_logp_func(n_dim, logp_fn, user_data, shared_logp, shared_data):
    """Drop-in for nutpie's ``_make_c_logp_func``. Status: 0 ok, -1 wrong dimension,
    1 error in the log-density, 3 non-finite gradient, 4 non-finite log-density."""
    import numba

    double_ptr = numba.types.CPointer(numba.types.double)
    c_sig = numba.types.int64(numba.types.uint64, double_ptr, double_ptr, double_ptr, numba.types.voidptr)
    return _build("logp_numba", _LOGP, logp_fn, c_sig, user_data, shared_logp, shared_data, n_dim=n_dim)


def _c_expand_func(n_dim, n_expanded, expand_fn, user_data, shared_vars, shared_data):
    """Drop-in for nutpie's ``_make_c_expand_func`` (status 0 ok, -1 wrong size, -2 error)."""
    import numba

    double_ptr = numba.types.CPointer(numba.types.double)
    c_sig = numba.types.int64(numba.types.uint64, numba.types.uint64, double_ptr, double_ptr, numba.types.voidptr)
    return _build("expand_numba", _EXPAND, expand_fn, c_sig, user_data, shared_vars, shared_data,
                  n_dim=n_dim, n_expanded=n_expanded)


#: set to 1 (or true, yes) to switch off every use of nutpie's and PyMC's undocumented internals:
#: the generated callbacks, the direct trace conversion, prior draws and derived variables
#: through the compiled model's expand callback (each then takes its public path)
PUBLIC_ONLY = "HLH_META_PUBLIC_ONLY"


def public_only() -> bool:
    """Whether the environment variable :data:`PUBLIC_ONLY` switches the private fast paths off."""
    import os

    return os.environ.get(PUBLIC_ONLY, "").strip().lower() in ("1", "true", "yes")


# --- the guard: the generated callbacks only where nutpie is what they were written for ---

#: nutpie releases the generated callbacks and the trace conversion are tested with
#: (earlier 0.16 releases cannot sample models with text coordinates under pandas 3)
TESTED_NUTPIE = ">=0.16.5,<0.17"
_TESTED = ((0, 16, 5), (0, 17, 0))


def nutpie_untested() -> str | None:
    """None when the installed nutpie is a tested release, else a sentence saying which it is."""
    try:
        import nutpie
    except Exception as exc:  # noqa: BLE001
        return f"nutpie cannot be imported ({type(exc).__name__}: {exc})"
    version = str(getattr(nutpie, "__version__", "unknown"))
    release = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if release and _TESTED[0] <= tuple(int(p) for p in release.groups()) < _TESTED[1]:
        return None
    return f"nutpie {version} is not a tested release ({TESTED_NUTPIE})"

#: the private nutpie builders replaced during a compile, with the parameters they must take
_BUILDERS = {
    "_make_c_logp_func": ("n_dim", "logp_fn", "user_data", "shared_logp", "shared_data"),
    "_make_c_expand_func": ("n_dim", "n_expanded", "expand_fn", "user_data", "shared_vars", "shared_data"),
}


class CallbackFallbackWarning(UserWarning):
    """nutpie's own callbacks are used: same draws, slower first fit of each model."""


class _FastPathError(Exception):
    """Something in the generated-callback path failed or did not match."""


def _mismatch() -> str | None:
    """What in nutpie, numba or PyTensor does not match what the generated callbacks use
    (None when everything does)."""
    try:
        import numba
        from nutpie import compile_pymc
        from pytensor.link.numba import cache
    except Exception as exc:  # noqa: BLE001 - any import problem means: use nutpie as it is
        return f"import failed: {type(exc).__name__}: {exc}"
    untested = nutpie_untested()
    if untested:
        return untested
    for name, expected in _BUILDERS.items():
        builder = getattr(compile_pymc, name, None)
        if not callable(builder):
            return f"nutpie.compile_pymc.{name} is missing"
        params = _parameters(builder)
        if params != expected:
            return f"nutpie.compile_pymc.{name} takes ({', '.join(params)}), expected ({', '.join(expected)})"
    if not callable(getattr(compile_pymc, "make_user_data", None)):
        return "nutpie.compile_pymc.make_user_data is missing"
    if not callable(getattr(numba, "cfunc", None)) or not callable(getattr(numba, "carray", None)):
        return "numba.cfunc or numba.carray is missing"
    for name in ("CACHED_SRC_FUNCTIONS", "compile_numba_function_src"):
        if not hasattr(cache, name):
            return f"pytensor.link.numba.cache.{name} is missing"
    return None


def _parameters(fn) -> tuple[str, ...]:
    """The names of ``fn``'s parameters; () where it is not callable or its signature cannot be read."""
    try:
        return tuple(inspect.signature(fn).parameters) if callable(fn) else ()
    except (TypeError, ValueError):
        return ()


def _guarded(fn):
    """``fn`` with every exception it raises turned into a :class:`_FastPathError`."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure here means: use nutpie's own
            raise _FastPathError(f"{fn.__name__} failed: {type(exc).__name__}: {exc}") from exc
    return run


def _kept_functions(compile_pymc):
    """nutpie's ``_make_functions`` and ``_rv_dict_to_flat_array_wrapper`` where they are what
    :mod:`.function_cache` was written for, else None."""
    from .function_cache import PARAMETERS

    make = getattr(compile_pymc, "_make_functions", None)
    wrapper = getattr(compile_pymc, "_rv_dict_to_flat_array_wrapper", None)
    return (make, wrapper) if _parameters(make) == PARAMETERS and callable(wrapper) else None


def _functions(compile_pymc, key, on_written=None):
    """nutpie's ``_make_functions`` with its functions kept on disk under ``key``
    (:mod:`.function_cache`; ``on_written`` is called with the file's path when this compile
    wrote it), or as it is (with one FunctionCacheWarning per process) where it is not what
    the cache was written for."""
    from ..errors import warn_once
    from .function_cache import FunctionCacheWarning, cached_make_functions

    kept = _kept_functions(compile_pymc)
    if kept is not None:
        return cached_make_functions(kept[0], key, kept[1], on_written)
    warn_once("callbacks.functions", "nutpie.compile_pymc._make_functions or _rv_dict_to_flat_array_wrapper is not "
              "what hlh_meta's cache of compiled functions was written for; each process rewrites the model's "
              "functions again (same draws, slower)", FunctionCacheWarning, stacklevel=4)
    return getattr(compile_pymc, "_make_functions", None)


def _outlined(compile_pymc, key):
    """nutpie's ``_make_functions`` from the structure's outline (:func:`.function_cache.outlined_make_functions`),
    or None where there is none or nutpie's function is not what the cache was written for."""
    from .function_cache import outlined_make_functions

    kept = _kept_functions(compile_pymc)
    return None if kept is None else outlined_make_functions(kept[0], key, kept[1])


def _initial_point_maker(key):
    """PyMC's ``make_initial_point_fn`` with the function it builds kept on disk
    (:func:`.function_cache.cached_initial_point_fn`, which checks that PyMC's function is
    what it was written for)."""
    import pymc.initial_point

    from .function_cache import cached_initial_point_fn

    return cached_initial_point_fn(pymc.initial_point.make_initial_point_fn, key)


@contextlib.contextmanager
def _generating(compile_one, **replaced):
    """Within the block (one compile at a time, under a lock): nutpie's two wrapper builders
    replaced by the generated callbacks, ``numba.cfunc(c_sig, ...)(py_func)`` by
    ``compile_one(py_func, c_sig, kwargs)``, and each of ``replaced`` (a name in
    ``nutpie.compile_pymc``) by its value."""
    import numba
    from nutpie import compile_pymc

    def cfunc(c_sig, **kwargs):
        return lambda py_func: compile_one(py_func, c_sig, kwargs)

    with _LOCK, warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore", FutureWarning)
        stack.enter_context(mock.patch.object(compile_pymc, "_make_c_logp_func", _guarded(_c_logp_func)))
        stack.enter_context(mock.patch.object(compile_pymc, "_make_c_expand_func", _guarded(_c_expand_func)))
        stack.enter_context(mock.patch.object(numba, "cfunc", cfunc))
        for name, value in replaced.items():
            stack.enter_context(mock.patch.object(compile_pymc, name, value))
        yield


#: the names of the generated callbacks (and of the numba libraries that hold them)
_CALLBACK_NAMES = ("logp_numba", "expand_numba")


def _compile_cached(numba_cfunc, py_func, c_sig):
    """numba's compile of a generated callback, cached where it has a cache key (numba's
    warning that a callback without one is not cached silenced)."""
    import numba
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    from .cached_load import lean_loads

    with warnings.catch_warnings(), lean_loads(*_CALLBACK_NAMES):
        warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=numba.NumbaWarning)
        return numba_cfunc(c_sig, cache=py_func in CACHED_SRC_FUNCTIONS)(py_func)


def _fast(model, structure=None):
    """nutpie's compile with the generated callbacks; raises _FastPathError when they fail.
    ``structure``: the model's structure, naming its functions in the disk cache (None: not kept)."""
    import numba
    import nutpie
    from nutpie import compile_pymc

    from .compile_helper import start as start_helper
    from .function_cache import drop_outline, key_of, write_outline

    numba_cfunc = numba.cfunc
    used = []
    helper: list = []                      # the helper's job compiling this structure's expand callback

    def compile_one(py_func, c_sig, kwargs):   # as nutpie's compile calls it: cached where the wrapper has a key
        if py_func not in _GENERATED:
            return numba_cfunc(c_sig, **kwargs)(py_func)
        used.append(py_func.__name__)
        if py_func.__name__ == "expand_numba" and helper:
            helper.pop().wait()            # then numba loads what the helper compiled (or compiles it here)
        try:
            return _compile_cached(numba_cfunc, py_func, c_sig)
        except Exception as exc:  # noqa: BLE001
            raise _FastPathError(f"compiling the generated {py_func.__name__} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc

    key = None if structure is None else key_of(structure, model)

    def compiled(**replaced):
        used.clear()
        with _generating(compile_one, **replaced), contextlib.ExitStack() as stack:
            if structure is not None:
                import pymc.initial_point

                stack.enter_context(mock.patch.object(pymc.initial_point, "make_initial_point_fn",
                                                      _initial_point_maker(key)))
            result = nutpie.compile_pymc_model(model)
        if sorted(used) != ["expand_numba", "logp_numba"]:
            raise _FastPathError("nutpie's compile did not build both generated callbacks")
        return result

    if structure is None:
        return compiled()
    outlined = _outlined(compile_pymc, key)
    if outlined is not None:               # the callbacks straight from numba's cache, the functions not loaded
        try:
            return compiled(_make_functions=_guarded(outlined))
        except _FastPathError:
            drop_outline(key)              # not in numba's cache after all: the functions are loaded

    def written(path):                     # a structure new to this machine: the helper compiles its expand callback
        job = start_helper(path)
        if job is not None:
            helper.append(job)

    result = compiled(_make_functions=_functions(compile_pymc, key, written))
    write_outline(key, result.n_dim, result.n_expanded, result.shape_info, result.logp_func, result.expand_func)
    return result


#: the parameters of nutpie's ``_compile_pymc_model_numba`` that :func:`compile_expand_from` calls it with
_NUMBA_COMPILE = ("model", "pymc_initial_point_fn", "var_names", "kwargs")


class _Compiled(Exception):
    """The expand callback is compiled (and cached): the rest of nutpie's compile is not needed."""


def compile_expand_from(path: str) -> None:
    """Compile the expand callback of the rewritten functions in the function file ``path``
    (:mod:`.function_cache`) into numba's disk cache, as :func:`_fast` builds it: nutpie's own
    ``_compile_pymc_model_numba`` runs with ``_make_functions`` giving the file's functions,
    the log-density callback generated but not compiled, and stops once the expand callback
    is. The work of :mod:`.compile_helper`'s process; raises where it cannot be done."""
    import numba
    from nutpie import compile_pymc
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    from .function_cache import read_functions

    compile_numba = getattr(compile_pymc, "_compile_pymc_model_numba", None)
    reason = _mismatch()
    if reason is None and (compile_numba is None or _parameters(compile_numba) != _NUMBA_COMPILE):
        reason = "nutpie.compile_pymc._compile_pymc_model_numba is not what the helper was written for"
    if reason is not None or compile_numba is None:
        raise _FastPathError(str(reason))
    n_dim, n_expanded, logp_fn, expand_fn, shape_info = read_functions(path)
    numba_cfunc = numba.cfunc

    def make(*args, **kwargs):
        return n_dim, n_expanded, logp_fn, expand_fn, None, shape_info

    def compile_one(py_func, c_sig, kwargs):
        if py_func not in _GENERATED:
            raise _FastPathError(f"nutpie compiles a callback {py_func.__name__} not generated here")
        if py_func.__name__ != "expand_numba":
            return None                                   # the calling process compiles the log density
        if py_func not in CACHED_SRC_FUNCTIONS:
            raise _FastPathError("the expand callback has no cache key")
        _compile_cached(numba_cfunc, py_func, c_sig)
        raise _Compiled

    with _generating(compile_one, _make_functions=make):
        try:
            compile_numba(None, None)
        except _Compiled:
            return
    raise _FastPathError("nutpie's compile did not build the expand callback")


def serve_expand_compiles() -> None:
    """The program of :mod:`.compile_helper`'s process."""
    from .compile_helper import serve

    serve(compile_expand_from)


def _stock(model):
    import nutpie

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nutpie.compile_pymc_model(model)


def compile_pymc_model(model, structure=None):
    """``nutpie.compile_pymc_model(model)`` (numba backend, default options) with the
    generated callbacks and, given the model's ``structure``, its rewritten functions kept
    on disk (:mod:`.function_cache`); with nutpie's own callbacks (and one :class:`CallbackFallbackWarning`
    per process) where nutpie, numba or PyTensor are not what they were written for, or
    anything in generating or compiling them fails. The draws are the same either way."""
    from ..errors import warn_once

    if public_only():
        return _stock(model)
    reason = _mismatch()
    if reason is None:
        try:
            return _fast(model, structure)
        except _FastPathError as exc:
            reason = str(exc)
    warn_once("callbacks", f"hlh_meta uses nutpie's own compiled callbacks instead of its generated, disk-cached "
              f"ones ({reason}); the draws are the same, the first fit of each model in a process is "
              f"slower. The generated callbacks are tested with nutpie {TESTED_NUTPIE}.",
              CallbackFallbackWarning, stacklevel=2)
    return _stock(model)
