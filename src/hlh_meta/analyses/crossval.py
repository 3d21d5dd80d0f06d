"""Leave-one-study-out predictive density: importance sampling first, exact refits where it fails.

For a fit to every study, the log predictive density of study s given the others is
estimated by Pareto-smoothed importance sampling (Vehtari, Gelman & Gabry 2017): the full
posterior reweighted by 1 / p(y_s | theta). Where the fit keeps its draws in the sampler's
coordinates (:mod:`hlh_meta.models.points`), the study's effect z_s, which returns to its
prior when the study leaves, is integrated out of p(y_s | theta) by quadrature at each draw
(:func:`integrated_study_loglik`), so that the weights carry only how far the shared
parameters move: integrated importance sampling (Vehtari, Mononen, Tolvanen, Sivula &
Winther 2016, JMLR 17(103)). On the bundled data it leaves about half as many studies with a
high Pareto k as weights built from the likelihood given the sampled effect
(:func:`study_loglik`, used where the draws are not kept). Where the Pareto shape k of the
weights is above :data:`PARETO_K_REFIT` the estimate cannot be trusted and the study is
refitted without its rows instead (the approach of ``reloo`` in the loo and brms packages;
the threshold is stricter than the usual 0.7, see :data:`PARETO_K_REFIT`). Each study's value
carries its Monte Carlo standard error: for an exact refit from the spread of its
held-out likelihood over the draws and their effective sample size; for importance sampling
from the spread of the weighted likelihood, divided by the relative efficiency of the draws
(an approximation, as in the loo package).
"""

from __future__ import annotations

import json
import warnings
import weakref

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr
from pytensor.tensor import get_underlying_scalar_constant_value
from pytensor.tensor.exceptions import NotScalarConstantError
from scipy import sparse
from scipy.special import logsumexp

from ..models.engine import ModelInputs

#: above this Pareto k the importance-sampling estimate is replaced by an exact refit. Not the
#: usual 0.7: on the bundled mortality data (2000 draws, studies of 3-44 patients) estimates
#: with k between 0.5 and 0.7 were 0.1-0.6 above the exact refits' log densities, many Monte
#: Carlo SEs away, while those below 0.5 agreed within about two
PARETO_K_REFIT = 0.5


def study_loglik(idata: az.InferenceData, var: str) -> xr.DataArray:
    """Each study's summed log-likelihood at each draw (chain, draw, study), rows with weight 1."""
    ll = idata.log_likelihood[var]
    cd = idata.constant_data
    keep = cd["weight"].values > 0
    study = xr.DataArray(cd["row_study"].values[keep], dims=ll.dims[-1], name="study")
    return ll.groupby(study).sum()


#: Gauss-Hermite nodes for a study's effect z_s (a standard normal) in the integrated likelihood:
#: on the bundled data 8 nodes already give each study's estimate to 0.02 of 32 nodes', 12 to 0.005
NODES = 12


def _same_inputs(a: ModelInputs, b: ModelInputs) -> bool:
    """Whether two model inputs give the same integrated log-likelihood: equal structure,
    studies, rows' studies, weights and data."""
    return a is b or (a.structure == b.structure and list(a.studies) == list(b.studies)
                      and np.array_equal(a.study_index, b.study_index) and np.array_equal(a.weights, b.weights)
                      and a.data.keys() == b.data.keys()
                      and all(np.array_equal(v, b.data[k]) for k, v in a.data.items()))


#: the last integrated log-likelihood computed, with the fit (held weakly), the inputs and the
#: nodes it was computed for: a sensitivity run asks again for the primary fit's, which its
#: comparison of covariate sets computed already
_LAST: list[tuple[weakref.ref, ModelInputs, int, xr.DataArray | None]] = []


def clear_cache() -> None:
    """Forget the last integrated log-likelihood kept (:func:`integrated_study_loglik`)."""
    _LAST.clear()


def integrated_study_loglik(inp: ModelInputs, idata: az.InferenceData, nodes: int = NODES) -> xr.DataArray | None:
    """Each study's log-likelihood at each draw (chain, draw, study) with its effect
    integrated over its prior: log of the integral of p(y_s | phi, z) over z ~ Normal(0, 1),
    by Gauss-Hermite quadrature with ``nodes`` points, at each draw of everything else (the
    unknown shares of the study's strata stay at their draws: importance weights over them
    remain valid, they are only less even). Computed by the fit's compiled model from the
    stored unconstrained draws (:mod:`hlh_meta.models.points`), rows with weight 1. None
    where the fit has no such draws or no study effect ``z`` with a standard normal prior
    (the caller then uses :func:`study_loglik`). The last one computed is kept: asked again
    for the same fit, inputs and nodes, it is not computed twice (a copy comes back)."""
    if _LAST and _LAST[0][0]() is idata and _LAST[0][2] == nodes and _same_inputs(_LAST[0][1], inp):
        kept = _LAST[0][3]
        return None if kept is None else kept.copy()
    total = _integrated(inp, idata, nodes)
    _LAST[:] = [(weakref.ref(idata), inp, nodes, total)]
    return None if total is None else total.copy()


def _integrated(inp: ModelInputs, idata: az.InferenceData, nodes: int) -> xr.DataArray | None:
    from ..models.points import GROUP, PointsUnavailable, compiled_with, flat_points, model_of

    sampler = json.loads(idata.posterior.attrs.get("sampler", "{}")).get("sampler")
    if GROUP not in idata.groups() or inp.structure.engine != "binomial" or sampler != "nutpie":
        return None
    model = model_of(inp)
    if "z" not in model.named_vars or not _standard_normal(model, model["z"]):
        return None
    try:
        compiled = compiled_with(inp)
        flat = flat_points(compiled, idata[GROUP])
        part = effect_slice(inp, compiled)
        if part is None:
            return None
        keep = np.flatnonzero(inp.weights > 0)
        studies = list(inp.studies)
        member = sparse.csr_matrix((np.ones(len(keep)), (keep, inp.study_index[keep])),
                                   shape=(len(inp.row_labels), len(studies)))
        z, w = np.polynomial.hermite_e.hermegauss(nodes)
        loglik = _row_loglik(inp, compiled, flat, nodes)
        terms = []
        for node, weight in zip(z, w / w.sum()):
            flat[:, part] = node
            terms.append(np.asarray(member.T @ loglik(flat).T).T + np.log(weight))
    except PointsUnavailable:
        return None
    total = logsumexp(np.stack(terms), axis=0)                  # (draws, studies)
    chains, draws = int(idata.posterior.sizes["chain"]), int(idata.posterior.sizes["draw"])
    return xr.DataArray(total.reshape(chains, draws, len(studies)), dims=("chain", "draw", "study"),
                        coords={"study": studies})


def _row_loglik(inp: ModelInputs, compiled, flat: np.ndarray, calls: int):
    """A function from points (draws, n_dim) to the rows' log-likelihood (draws, rows): through
    the compiled model's expand callback, or, where that would take longer than compiling it
    (many rows, each point also expanding the profiles), a function of the log-likelihood
    alone (:mod:`hlh_meta.models.batched`); the same numbers either way."""
    from ..models.batched import batched_values, worth_compiling
    from ..models.points import PointsUnavailable, expand

    def by_expand(points: np.ndarray) -> np.ndarray:
        return expand(compiled, points, ["loglik"])["loglik"]

    if worth_compiling(by_expand, flat, calls):
        try:
            batched_values(inp, compiled, flat[:1], ["loglik"])
            return lambda points: batched_values(inp, compiled, points, ["loglik"])["loglik"]
        except PointsUnavailable:
            pass
    return by_expand


def effect_slice(inp: ModelInputs, compiled) -> slice | None:
    """Where the study effects ``z`` lie in a point of ``inp``'s compiled model (None: the model
    samples none)."""
    from ..models.points import model_of, slices

    model = model_of(inp)
    return slices(compiled).get(model.rvs_to_values[model["z"]].name) if "z" in model.named_vars else None


def _standard_normal(model: pm.Model, rv) -> bool:
    """Whether ``rv`` is sampled as it is (no transform) with a Normal(0, 1) prior."""
    if getattr(rv.owner.op, "name", "") != "normal" or model.rvs_to_transforms.get(rv) is not None:
        return False
    try:
        loc, scale = (_constant(p) for p in rv.owner.op.dist_params(rv.owner))
    except Exception:  # noqa: BLE001 - a parameter that is not a constant
        return False
    return bool(np.all(loc == 0.0) and np.all(scale == 1.0))


def _constant(p) -> np.ndarray:
    """The value of a constant parameter: read from the graph where it is one number broadcast
    (no function compiled), else by evaluating it."""
    try:
        return np.asarray(get_underlying_scalar_constant_value(p), dtype=float)
    except NotScalarConstantError:
        return np.asarray(p.eval(), dtype=float)


def _relative_efficiency(values: np.ndarray) -> float:
    """ESS / draws of a (chain, draw) array (1 when it cannot be computed)."""
    try:
        ess = float(az.ess(np.asarray(values)[None] if np.ndim(values) == 1 else np.asarray(values)))
    except (ValueError, TypeError):
        return 1.0
    size = np.size(values)
    return float(np.clip(ess / size, 1e-3, 1.0)) if np.isfinite(ess) and size else 1.0


def exact_lpd(ll: np.ndarray) -> tuple[float, float]:
    """log mean exp of a held-out study's log-likelihood over the draws (chain, draw), and its
    Monte Carlo SE (delta method, with the draws' effective sample size)."""
    flat = np.asarray(ll, dtype=float).reshape(-1)
    top = flat.max()
    e = np.exp(flat - top)
    m = e.mean()
    ess = _relative_efficiency(e.reshape(np.shape(ll)) if np.ndim(ll) == 2 else e) * e.size
    return float(np.log(m) + top), float(e.std(ddof=1) / np.sqrt(ess) / m)


def psis_lpd(ll: xr.DataArray) -> dict[str, tuple[float, float, float]]:
    """Per study: the leave-one-out log predictive density by Pareto-smoothed importance
    sampling, its Monte Carlo SE and the Pareto k."""
    out = {}
    for sid in ll["study"].values:
        one = ll.sel(study=sid)
        draws = one.values                                      # (chain, draw)
        reff = _relative_efficiency(np.exp(draws - draws.max()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lw, k = az.psislw(-one.stack(__sample__=("chain", "draw")), reff=reff)
        lw = np.asarray(lw, dtype=float)
        flat = draws.reshape(-1)
        est = float(logsumexp(lw + flat))
        w = np.exp(lw)
        p = np.exp(flat - est)                                  # likelihood relative to the estimate
        se = float(np.sqrt(np.sum(w**2 * (p - 1.0) ** 2) / reff))
        out[str(sid)] = (est, se, float(k))
    return out
