"""How the levels of a categorical covariate enter a model: their prior coding.

A categorical covariate (a text column, or a composition group of shares such as the
triggers) has levels; the design holds one column per level but its reference, whose
coefficient ``beta`` is the contrast (log odds ratio) of that level against the reference.

- ``exchangeable`` (the default): the levels are exchangeable a priori. Each level has an
  effect around the mean of the levels, with a sum-to-zero Normal prior
  (``pm.ZeroSumNormal``'s density, sampled as its k - 1 free values ``level_effect_<covariate>_free``
  and mapped by a constant matrix: :func:`sum_to_zero_basis`) whose scale makes every contrast between two levels
  ``Normal(0, sigma_beta)``, the spec's ``beta`` prior; the intercept's prior (``mu``) is the
  prior of the mean of the levels' log-odds. ``mu`` (the log-odds of the profile at every
  reference level) and ``beta`` (each level against its reference) are derived from these,
  so no level's estimate depends on which level is named reference: the reference only
  chooses which contrasts are printed.
- ``treatment``: the reference level's log-odds is ``mu`` with ``mu``'s prior, and each
  other level's contrast has its own ``beta`` prior. The levels are then not exchangeable
  (the reference level is known more precisely a priori than the others); kept for
  comparison and as a sensitivity variant.

Numeric covariates (used as given) have the ``beta`` prior in both codings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, PriorError
from .design import Design

CODINGS = ("exchangeable", "treatment")


@dataclass(frozen=True)
class Block:
    """The design columns of one categorical covariate: ``columns`` (indices) of its
    non-reference levels, and the labels of all its levels, the reference first."""

    name: str
    columns: tuple[int, ...]
    levels: tuple[str, ...]


def blocks(design: Design) -> list[Block]:
    """The categorical covariates of a design: composition groups of shares (their rest is the
    reference) and text columns (treatment dummies against their reference)."""
    out = [Block(g, tuple(idx), tuple(design.categories(g))) for g, idx in design.groups.items()]
    for col, levels in design.levels.items():
        ref = design.references[col]
        idx = tuple(design.names.index(f"{col}[{lv}]") for lv in levels if lv != ref)
        out.append(Block(col, idx, (f"{col}[{ref}]",) + tuple(design.names[j] for j in idx)))
    return out


def check_coding(coding: str, design: Design, priors: dict) -> str:
    """The coding to use (``exchangeable`` needs a zero-centred Normal ``beta`` prior when the
    design has a categorical covariate)."""
    if coding not in CODINGS:
        raise InputError(f"coding must be one of {', '.join(CODINGS)}, got {coding!r}")
    if coding == "exchangeable" and blocks(design):
        beta = priors["beta"]
        if beta["dist"] != "Normal" or beta["mu"] != 0:
            raise PriorError("beta", "with exchangeable levels the prior of a contrast between two levels must be "
                                     f"Normal with mu = 0 (got {beta['dist']} with {dict(beta)}); use "
                                     "coding = 'treatment' for another prior")
    return coding


def level_effects(design: Design, priors: dict, mask):
    """Inside a model context: ``mu`` and ``beta`` (both ``pm.Deterministic``) under the
    exchangeable coding, from the mean of the levels' log-odds and each categorical
    covariate's sum-to-zero level effects. ``mask`` (0/1 per design column, ``pm.Data``)
    switches a covariate off: its levels then add nothing to ``mu`` either. The returned
    ``beta`` is unmasked; the free variables whose log prior counts are returned too."""
    import pymc as pm
    import pytensor.tensor as pt

    from .priors import hyperparameters, make_rv

    grand = make_rv("mu_levels", priors["mu"], param="mu")
    scale = hyperparameters("beta", {"dist": "Normal", "sigma": priors["beta"]["sigma"]})["sigma"]
    top = [grand]
    bl = blocks(design)
    beta = pt.zeros(len(design.names))
    offset = 0.0
    in_block = {j for b in bl for j in b.columns}
    if bl:
        # sum-to-zero effects of sigma_beta / sqrt(2) (a contrast of two levels is Normal(0, sigma_beta)):
        # ZeroSumNormal's density in its own free coordinates (sum_to_zero_basis), k - 1 values a
        # covariate; every level effect, contrast and reference effect is a constant matrix times them
        free = [pm.Normal(f"level_effect_{b.name}_free", 0.0, scale / np.sqrt(2.0), shape=len(b.levels) - 1)
                for b in bl]
        top.extend(free)
        effects, contrasts, starts = effect_maps(design, bl)
        values = (pt.concatenate(free) if len(free) > 1 else free[0])[None, :]

        def times(matrix):      # matrix @ values as a broadcast product: no BLAS call, whose sums
            return (matrix * values).sum(axis=1)     # can differ in the last bits from process to process

        every = times(effects)
        for b, start in zip(bl, starts):
            pm.Deterministic(f"level_effect_{b.name}", every[start:start + len(b.levels)], dims=f"{b.name}_level")
        beta = times(contrasts)
        # mu holds each covariate's reference-level effect, unless the covariate is masked off (0)
        offset = (mask[[b.columns[0] for b in bl]] * times(effects[starts])).sum()
    numeric = [j for j in range(len(design.names)) if j not in in_block]
    if numeric:
        slope = pm.Normal("beta_numeric", mu=hyperparameters("beta", {"dist": "Normal", "mu": 0.0})["mu"],
                          sigma=scale, shape=len(numeric))
        top.append(slope)
        beta = pt.set_subtensor(beta[numeric], slope)
    else:       # the hyperparameter is model data whatever the coding (a data swap names it)
        beta = beta + 0.0 * hyperparameters("beta", {"dist": "Normal", "mu": 0.0})["mu"]
    mu = pm.Deterministic("mu", grand + offset)
    return mu, pm.Deterministic("beta", beta, dims="covariate"), top


def sum_to_zero_basis(k: int) -> np.ndarray:
    """The (k, k - 1) matrix that takes k - 1 free values to k effects that sum to zero: the map
    of PyMC's ``ZeroSumTransform`` (so its free coordinates), with orthonormal columns, so that
    free values iid ``Normal(0, s)`` give the effects ``pm.ZeroSumNormal(sigma=s)``'s density."""
    return np.vstack([np.eye(k - 1) - 1.0 / (np.sqrt(k) + k), np.full((1, k - 1), -1.0 / np.sqrt(k))])


def effect_maps(design: Design, bl: list[Block]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """For the free values of every categorical covariate's effects (covariate after covariate,
    :func:`sum_to_zero_basis`): the matrix giving all level effects (each covariate's levels,
    reference first, from ``starts``), the matrix giving each design column's contrast with
    its covariate's reference (rows of other columns zero), and where each covariate's
    effects start."""
    sizes = [len(b.levels) for b in bl]
    starts = [int(x) for x in np.cumsum([0] + sizes[:-1])]
    effects = np.zeros((sum(sizes), sum(sizes) - len(sizes)))
    contrast = np.zeros((len(design.names), sum(sizes)))
    free = 0
    for b, k, start in zip(bl, sizes, starts):
        effects[start:start + k, free:free + k - 1] = sum_to_zero_basis(k)
        free += k - 1
        for level, col in enumerate(b.columns, start=1):
            contrast[col, start + level] = 1.0
            contrast[col, start] = -1.0
    return effects, contrast @ effects, starts


def level_coords(design: Design) -> dict[str, list[str]]:
    """The level dimension of each categorical covariate (the reference first)."""
    return {f"{b.name}_level": list(b.levels) for b in blocks(design)}
