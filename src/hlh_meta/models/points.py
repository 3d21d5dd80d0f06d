"""Draws in the sampler's unconstrained coordinates, and the model's stored variables at any point.

A fit keeps its draws of every sampled parameter in the sampler's own coordinates (ArviZ's
``unconstrained_posterior`` group: ``tau_log__``, ``z``, the stick-breaking fractions on
the log-odds scale, ...): the sampler's own values where it stores them (nutpie does), else
computed with the transforms of the PyMC model itself. Put back
through the compiled model (nutpie's expand function, :func:`expand`), with the fit's data
or other data of the same structure swapped in, they give every derived variable at those
draws: the log-likelihood of other data, a prediction for a new profile, or the draws of a
study-level parameter replaced by draws from its prior (leave-one-study-out importance
sampling, :mod:`hlh_meta.analyses.crossval`). Nothing is sampled or refitted.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .shared import shared_model

if TYPE_CHECKING:
    from .engine import ModelInputs

GROUP = "unconstrained_posterior"
_CACHE: dict = {}       # structure -> (value names, compiled transform function, free RVs' names, model)
_BACKWARD: dict = {}    # structure -> (value names, compiled backward transform function, free RVs' names)
_WARNED: set[str] = set()


class PointsUnavailable(RuntimeError):
    """The unconstrained draws cannot be computed or used for this model (callers fall back to sampling)."""


def _transforms(inp: "ModelInputs"):
    """The value variables' names, a function from constrained draws (leading draw axis)
    to unconstrained ones (None where a transform needs another parameter's value), the free
    variables' names and the model, built and compiled once per structure."""
    if inp.structure in _CACHE:
        return _CACHE[inp.structure]
    import pytensor
    import pytensor.tensor as pt

    model = shared_model(inp)
    ins, outs, names, rvs = [], [], [], []
    entry: tuple[list[str] | None, Any, list[str] | None, Any]
    try:
        for rv in model.free_RVs:
            x = pt.tensor(dtype=rv.dtype, shape=(None, *rv.type.shape), name=rv.name)
            tr = model.rvs_to_transforms.get(rv)
            ins.append(x)
            outs.append(x if tr is None else tr.forward(x, *rv.owner.inputs))
            names.append(model.rvs_to_values[rv].name)
            rvs.append(rv.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = pytensor.function(ins, outs, mode="FAST_COMPILE", on_unused_input="ignore")
        entry = (names, fn, rvs, model)
    except Exception:  # noqa: BLE001 - a transform that reads other parameters: no unconstrained draws
        entry = (None, None, None, model)
    _CACHE[inp.structure] = entry
    while len(_CACHE) > 32:
        _CACHE.pop(next(iter(_CACHE)))
    return entry


def model_of(inp: "ModelInputs"):
    """The PyMC model of ``inp``'s structure (built once per structure in this process; its data
    are those of the first inputs it was built from)."""
    return _transforms(inp)[3]


def _as_sampled(inp: "ModelInputs", post: xr.Dataset) -> xr.Dataset | None:
    """The draws in the sampler's coordinates where ``post`` holds them as the sampler kept
    them (nutpie stores every value variable beside the model's variables), named and laid
    out as :func:`unconstrained` gives them; None where the structure has no compiled model
    in this process or ``post`` lacks one of its value variables."""
    from ..inference.sampling import compiled_model

    compiled = compiled_model(inp.structure)
    if compiled is None:
        return None
    layout = _layout(compiled)
    names = [name for name, (part, _) in layout.items() if part.stop <= compiled.n_dim]
    if not names or any(n not in post or post[n].shape[2:] != layout[n][1] for n in names):
        return None
    model = shared_model(inp)
    value_of = {model.rvs_to_values[rv].name: rv.name for rv in model.free_RVs}
    out = {}
    for name in names:
        rv = value_of.get(name)
        v = post[name].values
        dims = list(post[rv].dims[2:]) if rv in post and post[rv].shape[2:] == v.shape[2:] else \
            [f"{name}_dim_{i}" for i in range(v.ndim - 2)]
        out[name] = xr.DataArray(v, dims=["chain", "draw", *dims])
    return xr.Dataset(out, coords={c: post.coords[c] for c in ("chain", "draw")})


def unconstrained(inp: "ModelInputs", post: xr.Dataset) -> xr.Dataset | None:
    """The draws of ``post`` (every sampled variable, before the readable posterior drops the
    sampler's parameterisation) in the sampler's coordinates, one variable per value
    variable; None where the model's transforms cannot be applied to draws alone."""
    kept = _as_sampled(inp, post)
    if kept is not None:
        return kept
    entry = _transforms(inp)
    if entry[1] is None or any(r not in post for r in entry[2]):
        return None
    names, fn, rvs, _ = entry
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    values = fn(*[post[r].values.reshape(chains * draws, *post[r].shape[2:]) for r in rvs])
    out = {}
    for name, rv, v in zip(names, rvs, values):
        v = np.asarray(v, dtype=float).reshape(chains, draws, *np.shape(v)[1:])
        dims = list(post[rv].dims[2:]) if v.shape[2:] == post[rv].shape[2:] else \
            [f"{name}_dim_{i}" for i in range(v.ndim - 2)]
        out[name] = xr.DataArray(v, dims=["chain", "draw", *dims])
    return xr.Dataset(out, coords={c: post.coords[c] for c in ("chain", "draw")})


def _layout(compiled) -> dict[str, tuple[slice, tuple[int, ...]]]:
    return {name: (part, tuple(int(s) for s in shape)) for name, part, shape in zip(*compiled.shape_info)}


def compiled_with(inp: "ModelInputs", data: Mapping[str, np.ndarray] | None = None):
    """nutpie's compiled model of ``inp``'s structure with ``data`` (default: ``inp``'s) swapped in."""
    from ..inference.sampling import compiled_for

    return compiled_for(partial(shared_model, inp), inp.structure, dict(inp.data if data is None else data))


def flat_points(compiled, points: xr.Dataset) -> np.ndarray:
    """The draws of ``points`` (an ``unconstrained_posterior`` group) as (draws, n_dim) rows
    in the compiled model's order."""
    layout = _layout(compiled)
    free = [(name, part) for name, (part, _) in layout.items() if part.stop <= compiled.n_dim]
    missing = [name for name, _ in free if name not in points]
    if missing:
        raise PointsUnavailable(f"the stored draws lack {', '.join(missing)}")
    first = points[free[0][0]]
    n = int(np.prod(first.shape[:2]))
    out = np.empty((n, int(compiled.n_dim)))
    for name, part in free:
        v = points[name].values.reshape(n, -1)
        if v.shape[1] != part.stop - part.start:
            raise PointsUnavailable(f"stored draws of {name} have {v.shape[1]} values, the model {part.stop - part.start}")
        out[:, part] = v
    return out


def _callback(fn, compiled, flat: np.ndarray):
    """``fn(compiled, flat)`` through the compiled model's own callbacks (undocumented nutpie
    attributes): PointsUnavailable where the private paths are switched off
    (``HLH_META_PUBLIC_ONLY``) or the compiled model does not have them (one warning per process)."""
    from ..inference.callbacks import PUBLIC_ONLY, public_only

    if public_only():
        raise PointsUnavailable(f"the compiled model's callbacks are not used ({PUBLIC_ONLY} is set)")
    try:
        return fn(compiled, flat)
    except (AttributeError, TypeError) as exc:
        if "callbacks" not in _WARNED:
            _WARNED.add("callbacks")
            warnings.warn(f"the compiled model's callbacks cannot be called ({type(exc).__name__}: {exc}); "
                          "cross-validation, reweighted variants and prediction take their public paths "
                          "(refits, PyMC's compute_deterministics)", RuntimeWarning, stacklevel=3)
        raise PointsUnavailable(str(exc)) from None


def expand(compiled, flat: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The stored variables ``names`` at each row of ``flat`` (draws, n_dim): (draws, *shape) each.
    Each distinct row goes through the callback once (resampled draws repeat rows)."""
    from ..inference.point_calls import expand_points

    layout = _layout(compiled)
    missing = [n for n in names if n not in layout]
    if missing:
        raise PointsUnavailable(f"the compiled model does not store {', '.join(missing)}")
    flat = np.asarray(flat, dtype=np.float64)
    rows, again = np.unique(flat, axis=0, return_inverse=True) if len(flat) > 1 else (flat, None)
    if again is None or len(rows) == len(flat):            # no row repeats: in their own order
        values = _callback(expand_points, compiled, flat)
    else:                                                   # the distinct rows (sorted), then back in order
        values = _callback(expand_points, compiled, rows)[np.asarray(again).reshape(-1)]
    return {n: values[:, layout[n][0]].reshape((len(flat), *layout[n][1])) for n in names}


def log_density(compiled, flat: np.ndarray) -> np.ndarray:
    """The model's log density (unconstrained space, its swapped data) at each row of ``flat``."""
    from ..inference.point_calls import logp_points

    return _callback(logp_points, compiled, flat)


def _backward(inp: "ModelInputs"):
    """A function from unconstrained draws (leading draw axis) to the free variables' values,
    with the model's own transforms, compiled once per structure."""
    if inp.structure in _BACKWARD:
        return _BACKWARD[inp.structure]
    import pytensor
    import pytensor.tensor as pt

    model = model_of(inp)
    ins, outs, values, rvs = [], [], [], []
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        x = pt.tensor(dtype=value.dtype, shape=(None, *value.type.shape), name=value.name)
        tr = model.rvs_to_transforms.get(rv)
        ins.append(x)
        outs.append(x if tr is None else tr.backward(x, *rv.owner.inputs))
        values.append(value.name)
        rvs.append(rv.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = pytensor.function(ins, outs, mode="FAST_COMPILE", on_unused_input="ignore")
    _BACKWARD[inp.structure] = entry = (values, fn, rvs)
    return entry


def deterministics_public(inp: "ModelInputs", points: xr.Dataset, names: list[str]) -> dict[str, np.ndarray]:
    """The derived variables ``names`` at each draw of ``points`` (an ``unconstrained_posterior``
    group) with ``inp``'s data, by PyMC's public ``pm.compute_deterministics`` (it compiles a
    function and evaluates it draw by draw: slower than :func:`expand`, the same numbers)."""
    import pymc as pm

    from ..inference.sampling import model_data

    values, fn, rvs = _backward(inp)
    model = model_of(inp)
    chains, draws = int(points.sizes["chain"]), int(points.sizes["draw"])
    with model_data(model, inp.data):         # this fit's data, the model's own put back after
        constrained = fn(*[points[v].values.reshape(chains * draws, *points[v].shape[2:]) for v in values])
        data = {rv: (("chain", "draw", *[f"{rv}_dim_{i}" for i in range(np.ndim(c) - 1)]),
                     np.asarray(c).reshape(chains, draws, *np.shape(c)[1:])) for rv, c in zip(rvs, constrained)}
        out = pm.compute_deterministics(xr.Dataset(data), var_names=names, model=model, merge_dataset=False,
                                        progressbar=False)
    return {n: out[n].values.reshape(chains * draws, *out[n].shape[2:]) for n in names}


def slices(compiled) -> dict[str, slice]:
    """Each sampled value variable's columns in a row of unconstrained values."""
    return {name: part for name, (part, _) in _layout(compiled).items() if part.stop <= compiled.n_dim}


def clear_cache() -> None:
    _CACHE.clear()
    _BACKWARD.clear()
