"""A few of a model's stored variables at many points at once, without the rest.

nutpie's expand callback (:func:`.points.expand`) computes every stored variable at a point.
With prediction profiles standardised over every included row that is most of its work on
many studies: at 1,000 synthetic studies one point costs about 8 ms, of which the rows'
log-likelihood is about 0.4 ms. :func:`batched_values` evaluates only the variables asked
for, from the graph of the same PyMC model (:func:`.points.model_of`), vectorised over a
leading axis of points (PyTensor's ``vectorize_graph``) and compiled with PyTensor's default
backend, with the model's data as inputs. The compile costs seconds (about 4 s for the
bundled mortality model with a warm compile cache, 11-30 s otherwise), so a caller uses it
only where the expand path would take longer (:func:`worth_compiling`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .points import PointsUnavailable, _layout, model_of

if TYPE_CHECKING:
    from .engine import ModelInputs

#: seconds of expand calls, projected, above which a batched function is compiled instead
#: (its compile takes 4-30 s; its evaluation is many times faster where profiles are stored)
WORTH_COMPILING_S = 30.0
#: points of the first batch timed through the expand callback to project its cost
PROBE = 100

_FUNCTIONS: dict = {}    # (structure, names) -> (compiled function, data names)
_WARNED: set[str] = set()


def _build(inp: "ModelInputs", compiled, names: tuple[str, ...]):
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import graph_replace, vectorize_graph

    model = model_of(inp)
    layout = _layout(compiled)
    outs = model.replace_rvs_by_values([model[n] for n in names])
    points = pt.matrix("points", dtype="float64")
    batched, sliced = {}, {}
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        if value.name not in layout:
            raise PointsUnavailable(f"the compiled model does not hold {value.name}")
        part, shape = layout[value.name]
        one = pt.tensor(name=f"{value.name}_points", dtype=value.dtype, shape=(None, *value.type.shape))
        batched[value] = one
        sliced[one] = points[:, part].reshape((points.shape[0], *shape)).astype(value.dtype)
    data_names = [n for n in inp.data if n in model.named_vars]
    data = {model[n]: pt.tensor(name=n, dtype=model[n].dtype, shape=model[n].type.shape) for n in data_names}
    outs = graph_replace(vectorize_graph(outs, replace=batched), {**sliced, **data}, strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = pytensor.function([points, *data.values()], outs, on_unused_input="ignore")
    return fn, data_names


def batched_values(inp: "ModelInputs", compiled, points: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The stored variables ``names`` of ``inp``'s model at each row of ``points`` (points,
    n_dim, in ``compiled``'s order) with ``inp``'s data in the model: (points,
    *shape) each, the numbers :func:`.points.expand` gives. The function is compiled once
    per structure and set of names in a process; PointsUnavailable where the graph cannot
    be vectorised (one warning per process)."""
    key = (inp.structure, tuple(names))
    if key not in _FUNCTIONS:
        try:
            _FUNCTIONS[key] = _build(inp, compiled, key[1])
        except PointsUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - an op PyTensor cannot vectorise: the expand path
            if "batched" not in _WARNED:
                _WARNED.add("batched")
                warnings.warn(f"the model's {', '.join(names)} cannot be evaluated in batches "
                              f"({type(exc).__name__}: {exc}); they come from the compiled model point by point",
                              RuntimeWarning, stacklevel=2)
            raise PointsUnavailable(str(exc)) from None
        while len(_FUNCTIONS) > 16:
            _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
    fn, data_names = _FUNCTIONS[key]
    model = model_of(inp)
    args = [np.asarray(inp.data[n], dtype=model[n].dtype) for n in data_names]
    out = fn(np.ascontiguousarray(points, dtype=np.float64), *args)
    return {n: np.asarray(v) for n, v in zip(names, out)}


def worth_compiling(expand_some: Callable[[np.ndarray], object], points: np.ndarray, calls: int) -> bool:
    """Whether ``calls`` evaluations of ``points`` (points, n_dim) through the expand callback
    (``expand_some``) would take longer than :data:`WORTH_COMPILING_S`, projected from the time
    of the first :data:`PROBE` points."""
    probe = points[:PROBE]
    start = time.perf_counter()
    expand_some(probe)
    per_point = (time.perf_counter() - start) / max(len(probe), 1)
    return per_point * len(points) * calls > WORTH_COMPILING_S


def clear_cache() -> None:
    _FUNCTIONS.clear()
