"""Calling a compiled model's own callbacks at many points: its log density and its stored
variables at each row of a (points, n_dim) array of unconstrained values.

nutpie compiles a model to two C callbacks (the log density with its gradient, and the
expansion of a point to every stored variable), which its sampler calls from several threads
at once. The functions here call them through ctypes, which releases the GIL during each call,
in contiguous blocks of rows, one thread per available core. They live apart from
:mod:`.callbacks`, whose own source is part of the callbacks' cache keys.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: rows of points per thread below which the callbacks are called from one thread
_ROWS_PER_THREAD = 250


def _in_threads(run, n: int) -> None:
    """``run(start, stop)`` over the rows ``0..n`` in contiguous blocks, one thread per
    available core (ctypes releases the GIL while a compiled callback runs, and the callbacks
    are the ones nutpie calls from several threads at once); the first error is raised."""
    threads = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                         n // _ROWS_PER_THREAD))
    if threads == 1:
        run(0, n)
        return
    edges = np.linspace(0, n, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(run, a, b) for a, b in zip(edges[:-1], edges[1:])]:
            done.result()


def _checked(points: np.ndarray, n_dim: int) -> np.ndarray:
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != n_dim:
        raise ValueError(f"points of shape {points.shape} for a model of {n_dim} unconstrained values")
    return points


def _rows(array: np.ndarray, pointer):
    """A function from a row number of the C-contiguous 2-d ``array`` to a ``pointer`` to
    that row's first value: the row's address cast, not a new array view per row (which
    costs several times as much as the cast, at every one of many thousand calls)."""
    base, stride = array.ctypes.data, array.strides[0]
    return lambda i: ctypes.cast(base + i * stride, pointer)


def expand_points(compiled, points: np.ndarray) -> np.ndarray:
    """Every stored variable at each unconstrained point: the rows of ``points`` (n, n_dim)
    through the compiled model's expand callback (with its swapped data), as (n,
    n_expanded) in the order of ``compiled.shape_info``. A non-zero status raises."""
    n_dim, n_expanded = int(compiled.n_dim), int(compiled.n_expanded)
    points = _checked(points, n_dim)
    out = np.empty((points.shape[0], n_expanded))
    call = compiled.compiled_expand_func.ctypes
    double = ctypes.POINTER(ctypes.c_double)
    data = ctypes.c_void_p(compiled.user_data.ctypes.data)

    row_in, row_out = _rows(points, double), _rows(out, double)

    def run(start: int, stop: int) -> None:
        for i in range(start, stop):
            status = call(n_dim, n_expanded, row_in(i), row_out(i), data)
            if status != 0:
                raise RuntimeError(f"the expand callback returned status {status} at point {i}")

    _in_threads(run, points.shape[0])
    return out


def logp_points(compiled, points: np.ndarray) -> np.ndarray:
    """The model's log density (in the sampler's unconstrained space) at each row of
    ``points`` (n, n_dim), through the compiled model's log-density callback with its swapped
    data; -inf where the callback reports a non-finite density."""
    n_dim = int(compiled.n_dim)
    points = _checked(points, n_dim)
    out = np.empty(points.shape[0])
    call = compiled.compiled_logp_func.ctypes
    double = ctypes.POINTER(ctypes.c_double)
    data = ctypes.c_void_p(compiled.user_data.ctypes.data)
    row_in = _rows(points, double)

    def run(start: int, stop: int) -> None:
        grad, value = np.empty(n_dim), np.empty(1)             # each thread its own
        g, v = grad.ctypes.data_as(double), value.ctypes.data_as(double)
        for i in range(start, stop):
            status = call(n_dim, row_in(i), g, v, data)
            if status in (3, 4):                 # non-finite gradient or density
                out[i] = -np.inf if status == 4 or not np.isfinite(value[0]) else value[0]
            elif status != 0:
                raise RuntimeError(f"the log-density callback returned status {status} at point {i}")
            else:
                out[i] = value[0]

    _in_threads(run, points.shape[0])
    return out
