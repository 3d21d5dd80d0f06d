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
PyTensor function's own cache key, the record layout, this module's source and the numba
and nutpie versions, so a later process loads the compiled wrapper from disk. Status codes are nutpie's; the record layout,
``with_data`` and the sampler are nutpie's, untouched. ``tests/test_callbacks.py`` holds
values, status codes and draws equal, bit for bit, to nutpie's own compile, before and
after a data swap, and checks that a second process loads the wrappers from the cache.

Written against nutpie 0.16 (``pyproject.toml`` pins ``<0.17``): the two wrapper builders of
``nutpie.compile_pymc`` are replaced for the duration of one compile, under a lock.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import sys
import threading
import warnings
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
        dtype, at = dtype.fields[key][:2]
        offset += at
    return offset, dtype


def _reads(record: np.dtype, names: list[str], shared_data: dict) -> tuple[list[str], list[str], list, dict]:
    """Source lines that view each data array from the ``user_data`` record
    (``nutpie.compile_pymc.make_user_data``: per array its address, size and shape, all
    64-bit words), with the argument names, a description for the cache key and the dtypes."""
    if record.itemsize % _WORD.itemsize:
        raise TypeError(f"user_data record of {record.itemsize} bytes is not made of 64-bit words")
    lines = [f"    words = carray(user_data_, ({record.itemsize // _WORD.itemsize},), word)"]
    args, layout, dtypes = [], [], {}
    for i, name in enumerate(names):
        data_at, data_type = _offset(record, "shared", "data", name)
        shape_at, shape_type = _offset(record, "shared", "shape", name)
        ndim = len(shared_data[name].shape)
        if data_type.itemsize != _WORD.itemsize or shape_type.base.itemsize != _WORD.itemsize \
                or shape_type.shape != (ndim,):
            raise TypeError(f"user_data record field of '{name}' is not the 64-bit layout expected")
        shape = "".join(f"int(words[{shape_at // 8 + d}]), " for d in range(ndim))
        dtypes[f"dtype_{i}"] = np.dtype(shared_data[name].dtype)
        lines.append(f"    a{i} = carray(void_pointer(words[{data_at // 8}]), ({shape}), dtype_{i})")
        args.append(f"a{i}")
        layout.append([name, data_at, shape_at, ndim, dtypes[f"dtype_{i}"].str])
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

    inner = CACHED_SRC_FUNCTIONS.get(getattr(fn, "py_func", None))
    if inner is None:
        return None
    text = json.dumps([kind, inner, layout, [int(s) for s in sizes], numba.__version__, nutpie.__version__,
                       _own_source()])
    return "hlh_meta_" + hashlib.sha256(text.encode()).hexdigest()


def _build(kind: str, template: str, fn, c_sig, user_data, names, shared_data, **sizes):
    import numba
    from pytensor.link.numba.cache import compile_numba_function_src

    read, args, layout, dtypes = _reads(user_data.dtype, list(names), shared_data)
    source = template.format(read="\n".join(read), args=", ".join(args), **sizes)
    key = _cache_key(kind, fn, layout, list(sizes.values()))
    scope = {"__name__": __name__, "np": np, "carray": numba.carray, "void_pointer": _void_pointer(),
             "word": _WORD, "fn": fn, **dtypes}
    return compile_numba_function_src(source, kind, global_env=scope, cache_key=key), c_sig


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


def compile_pymc_model(model):
    """``nutpie.compile_pymc_model(model)`` (numba backend, default options) with the wrappers above."""
    import numba
    import nutpie
    from nutpie import compile_pymc
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    numba_cfunc = numba.cfunc

    def cfunc(c_sig, **kwargs):            # as nutpie's compile calls it: cached where the wrapper has a key
        def compile_one(py_func):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=numba.NumbaWarning)
                return numba_cfunc(c_sig, cache=py_func in CACHED_SRC_FUNCTIONS)(py_func)
        return compile_one

    with _LOCK, warnings.catch_warnings(), \
            mock.patch.object(compile_pymc, "_make_c_logp_func", _c_logp_func), \
            mock.patch.object(compile_pymc, "_make_c_expand_func", _c_expand_func), \
            mock.patch.object(numba, "cfunc", cfunc):
        warnings.simplefilter("ignore", FutureWarning)
        return nutpie.compile_pymc_model(model)
