"""Unknown shares of a fraction group: flat Dirichlet parts over the categories each part
allows, summed into the unknown's composition.

An unknown with parts p (weights w_p summing to 1, allowed categories A_p) has shares

    s = sum_p w_p t_p,    t_p ~ flat Dirichlet over A_p (0 elsewhere),

i.e. what a source says (excluded categories, a known number of patients within some
categories) and a flat prior for the rest. Each t_p is built by stick-breaking: with
v_j ~ Beta(1, m - 1 - j), j = 0..m-2 (m = |A_p|), the parts v_0, (1 - v_0) v_1, ...,
prod_j (1 - v_j) are exactly Dirichlet(1, ..., 1). The sampler works on the sticks
(``<name>_stick``): a smaller gradient graph than PyMC's simplex transform and a geometry
that needs short trees. A part allowing fewer than K categories leaves its last sticks
unused (they keep their Beta(1, 1) prior and touch nothing else); a part of one category
is a point mass.

The sticks' parameters and index arrays are constants of the graph (part of the model's
structure): folded in at compile time, they keep the compiled kernels few and small. Slots
are placed onto categories, and parts summed into their unknown, by index (a scatter-add),
so the work grows with the number of parts, not with parts x unknowns.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt


def stick_data(name: str, allowed: np.ndarray, part_unit: np.ndarray, weight: np.ndarray,
               n_units: int) -> dict[str, np.ndarray]:
    """The arrays of the unknowns ``name``: per part its sticks' Beta(1, b) parameters,
    which sticks are used, which slot is its last, the placement of slots onto categories,
    and each unknown's weight on each part."""
    n, k = allowed.shape
    m = allowed.sum(axis=1)
    j = np.arange(k - 1)[None, :]
    active = j < (m[:, None] - 1)
    place = np.zeros((n, k, k))
    for p in range(n):
        for slot, cat in enumerate(np.flatnonzero(allowed[p])):
            place[p, slot, cat] = 1.0
    # each slot's position in the flattened (parts, K) array of shares by category; an unused
    # slot adds its 0 to its part's first position
    flat = (np.arange(n)[:, None] * k + place.argmax(axis=2)).astype("int64")
    return {f"{name}_b": np.where(active, m[:, None] - 1 - j, 1.0).astype(float),
            f"{name}_active": active.astype(float),
            f"{name}_last": (np.arange(k)[None, :] == (m[:, None] - 1)).astype(float),
            f"{name}_place": place, f"{name}_flat": flat, f"{name}_unit": np.asarray(part_unit, dtype="int64"),
            f"{name}_weight": np.asarray(weight, dtype=float), f"{name}_units": np.array(n_units)}


def composition_shares(name: str, data: dict[str, np.ndarray], dims=None) -> pt.TensorVariable:
    """The shares (units, K) of the unknowns ``name`` (arrays from :func:`stick_data`), stored as ``name``."""
    d = {key: data[f"{name}_{key}"] for key in ("b", "active", "last", "place", "flat", "unit", "weight", "units")}
    n, k = data[f"{name}_last"].shape
    sticks = pm.Beta(f"{name}_stick", alpha=1.0, beta=d["b"], shape=(n, k - 1))
    # columns as contiguous arrays: numba does not cache a function embedding a strided view
    last, active = ([np.ascontiguousarray(d[key][:, j]) for j in range(d[key].shape[1])] for key in ("last", "active"))
    left, parts = pt.ones((n,)), []
    for j in range(k):
        v = last[j] if j == k - 1 else sticks[:, j] * active[j] + last[j]
        parts.append(left * v)
        if j < k - 1:
            left = left * (1.0 - v)
    slots = pt.stack(parts, axis=1)                                        # (parts, K) in slot order
    # contiguous copies: numba does not cache a function embedding a strided view
    used = np.ascontiguousarray(d["place"].sum(axis=2))                    # 1 for a slot placed on a category
    flat = np.ascontiguousarray(d["flat"].reshape(-1))
    weight = np.ascontiguousarray(d["weight"].reshape(-1, 1))
    spread = pt.zeros(n * k)[flat].inc((slots * used).ravel()).reshape((n, k))      # (parts, K) by category
    shares = pt.zeros((int(d["units"]), k))[np.ascontiguousarray(d["unit"])].inc(weight * spread)   # (unknowns, K)
    return pm.Deterministic(name, shares, dims=dims)
