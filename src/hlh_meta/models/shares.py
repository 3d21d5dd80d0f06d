"""Unknown shares of a fraction group: a flat Dirichlet over the categories each unknown
allows, above its known minimum shares.

For an unknown with allowed categories a_1..a_m and minimum shares l (sum L <= 1),

    s = l + (1 - L) t,    t ~ flat Dirichlet over a_1..a_m (0 elsewhere),

i.e. uniform over the part of the simplex that respects what the source says. ``t`` is
built by stick-breaking: with v_j ~ Beta(1, m - 1 - j), j = 0..m-2, the parts
v_0, (1 - v_0) v_1, ..., prod_j (1 - v_j) are exactly Dirichlet(1, ..., 1). The sampler
works on the sticks (``<name>_stick``): a smaller gradient graph than PyMC's simplex
transform and a geometry that needs short trees. An unknown that allows fewer than all
K categories leaves its last sticks unused (they keep their Beta(1, 1) prior and touch
nothing else).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt


def stick_parameters(allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per unknown: Beta(1, b) parameters of its K - 1 sticks, which sticks are used, which
    slot is its last, and the placement of slots onto categories (units, K, K)."""
    n, k = allowed.shape
    m = allowed.sum(axis=1)
    j = np.arange(k - 1)[None, :]
    active = j < (m[:, None] - 1)
    b = np.where(active, m[:, None] - 1 - j, 1.0).astype(float)
    last = np.arange(k)[None, :] == (m[:, None] - 1)
    place = np.zeros((n, k, k))
    for u in range(n):
        for slot, cat in enumerate(np.flatnonzero(allowed[u])):
            place[u, slot, cat] = 1.0
    return b, active.astype(float), last.astype(float), place


def composition_shares(name: str, allowed: np.ndarray, minimum: np.ndarray, dims=None) -> pt.TensorVariable:
    """The shares (units, K) of ``allowed.shape[0]`` unknowns over K categories, stored as ``name``."""
    n, k = allowed.shape
    b, active, last, place = stick_parameters(allowed)
    sticks = pm.Beta(f"{name}_stick", alpha=1.0, beta=b, shape=(n, k - 1))
    left, parts = pt.ones((n,)), []
    for j in range(k):
        v = last[:, j] if j == k - 1 else sticks[:, j] * active[:, j] + last[:, j]
        parts.append(left * v)
        if j < k - 1:
            left = left * (1.0 - v)
    slots = pt.stack(parts, axis=1)                                      # (units, K) in slot order
    spread = (slots[:, :, None] * place).sum(axis=1)
    free = 1.0 - minimum.sum(axis=1, keepdims=True)
    return pm.Deterministic(name, minimum + free * spread, dims=dims)
