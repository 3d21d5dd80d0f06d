"""nutpie's compiled PyMC model with leaner C callbacks: the same numbers, less to compile.

nutpie samples by calling two numba ``cfunc`` callbacks, the log-density with its gradient
and the "expand" function that maps a point to the stored variables; each wraps a compiled
PyTensor function and reads the model's data (``pm.Data``) through pointers held in a
``user_data`` record, which ``with_data`` rewrites without compiling again. Most of a first
fit is numba compiling these two wrappers (not the PyTensor function, which numba loads
from its disk cache). Two constructs in nutpie's wrappers dominate that time:

- the data arrays are read in a ``literal_unroll`` loop over a generic overload (numba
  types the loop body once per array, about 1.5 s);
- results are copied by slice assignment (``out[...] = grad``), whose shape-mismatch
  error message numba compiles for every model (string formatting, about 2 s).

The wrappers here are generated as straight-line code instead: each array is a ``carray``
over the data pointer and shape read from ``user_data`` at offsets fixed when the model is
compiled, and results are copied element by element after a length check. Status codes
are nutpie's. The record layout, ``with_data`` and the sampler are nutpie's, untouched;
``tests/test_callbacks.py`` holds the draws equal, bit for bit, to nutpie's own compile,
before and after a data swap. Written against nutpie 0.16 (``pyproject.toml`` pins
``<0.17``): the two wrapper builders of ``nutpie.compile_pymc`` are replaced for the
duration of one compile, under a lock.
"""

from __future__ import annotations

import threading
import warnings
from unittest import mock

import numpy as np

_LOCK = threading.Lock()
_WORD = np.dtype(np.uint64)


def _void_pointer():
    """A numba intrinsic turning an integer address into a ``void*``."""
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def as_void_pointer(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)
        return types.voidptr(address), codegen

    return as_void_pointer


def _offset(dtype: np.dtype, *path: str) -> tuple[int, np.dtype]:
    """Byte offset and dtype of a nested field of a structured dtype."""
    offset = 0
    for key in path:
        dtype, at = dtype.fields[key][:2]
        offset += at
    return offset, dtype


def _extraction(fn, record: np.dtype, names: list[str], shared_data: dict):
    """``extract(x, user_data_) = fn(x, *arrays)`` with each array read from the record.

    The record (``nutpie.compile_pymc.make_user_data``) holds, per array, its data address,
    size and shape, all 64-bit words; the generated code reads them as words of one array.
    """
    import numba

    if record.itemsize % _WORD.itemsize:
        raise TypeError(f"user_data record of {record.itemsize} bytes is not made of 64-bit words")
    lines, args = [f"    words = carray(user_data_, ({record.itemsize // _WORD.itemsize},), word)"], []
    scope = {"carray": numba.carray, "void_pointer": _void_pointer(), "word": _WORD, "fn": fn}
    for i, name in enumerate(names):
        data_at, data_type = _offset(record, "shared", "data", name)
        shape_at, shape_type = _offset(record, "shared", "shape", name)
        ndim = len(shared_data[name].shape)
        if data_type.itemsize != _WORD.itemsize or shape_type.base.itemsize != _WORD.itemsize \
                or shape_type.shape != (ndim,):
            raise TypeError(f"user_data record field of '{name}' is not the 64-bit layout expected")
        shape = "".join(f"int(words[{shape_at // 8 + d}]), " for d in range(ndim))
        scope[f"dtype_{i}"] = np.dtype(shared_data[name].dtype)
        lines.append(f"    a{i} = carray(void_pointer(words[{data_at // 8}]), ({shape}), dtype_{i})")
        args.append(f"a{i}")
    source = "def extract(x, user_data_):\n" + "\n".join(lines) + f"\n    return fn(x, {', '.join(args)})\n"
    exec(compile(source, "<hlh_meta callbacks>", "exec"), scope)
    return numba.njit(inline="always")(scope["extract"])


def _c_logp_func(n_dim, logp_fn, user_data, shared_logp, shared_data):
    """Drop-in for nutpie's ``_make_c_logp_func``. Status: 0 ok, -1 wrong dimension,
    1 error in the log-density, 3 non-finite gradient, 4 non-finite log-density."""
    import numba

    extract = _extraction(logp_fn, user_data.dtype, list(shared_logp), shared_data)
    double_ptr = numba.types.CPointer(numba.types.double)
    c_sig = numba.types.int64(numba.types.uint64, double_ptr, double_ptr, double_ptr, numba.types.voidptr)

    def logp_numba(dim, x_, out_, logp_, user_data_):
        if dim != n_dim:
            return -1
        try:
            logp_val, grad = extract(numba.carray(x_, (n_dim,)), user_data_)
            if grad.shape[0] != n_dim:
                return 1
            logp_[0] = logp_val
            finite = True
            for i in range(n_dim):
                out_[i] = grad[i]
                finite = finite and np.isfinite(grad[i])
            if not finite:
                return 3
            if not np.isfinite(logp_val):
                return 4
        except Exception:  # noqa: BLE001 - a status code is all a C callback can report
            return 1
        return 0

    return logp_numba, c_sig


def _c_expand_func(n_dim, n_expanded, expand_fn, user_data, shared_vars, shared_data):
    """Drop-in for nutpie's ``_make_c_expand_func`` (status 0 ok, -1 wrong size, -2 error)."""
    import numba

    extract = _extraction(expand_fn, user_data.dtype, list(shared_vars), shared_data)
    double_ptr = numba.types.CPointer(numba.types.double)
    c_sig = numba.types.int64(numba.types.uint64, numba.types.uint64, double_ptr, double_ptr, numba.types.voidptr)

    def expand_numba(dim, expanded, x_, out_, user_data_):
        if dim != n_dim or expanded != n_expanded:
            return -1
        try:
            (values,) = extract(numba.carray(x_, (n_dim,)), user_data_)
            if values.shape[0] != n_expanded:
                return -2
            for i in range(n_expanded):
                out_[i] = values[i]
        except Exception:  # noqa: BLE001
            return -2
        return 0

    return expand_numba, c_sig


def compile_pymc_model(model):
    """``nutpie.compile_pymc_model(model)`` (numba backend, default options) with the wrappers above."""
    import nutpie
    from nutpie import compile_pymc

    with _LOCK, warnings.catch_warnings(), \
            mock.patch.object(compile_pymc, "_make_c_logp_func", _c_logp_func), \
            mock.patch.object(compile_pymc, "_make_c_expand_func", _c_expand_func):
        warnings.simplefilter("ignore", FutureWarning)
        return nutpie.compile_pymc_model(model)
