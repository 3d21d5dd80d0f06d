"""Hierarchical binomial-logit meta-regression (mortality).

    events_r ~ Binomial(total_r, p_r),   u_s = tau * z_s,  z_s ~ Normal(0, 1)

A stratum of one kind: logit p_r = mu + x_r . beta + u_s[r]. A stratum that mixes the
categories of composition groups (``fractions``: e.g. triggers, age groups, routes) has
the mixture likelihood (``likelihood="mixture"``, the default)

    p_r = sum_c w_rc expit(mu + x_r . beta + a_c . beta + u_s[r]),

over the combinations c of one category per group, with w_rc the product of the row's
shares of c's categories (known, or unknowns with a Dirichlet prior). ``likelihood="linear"``
puts the shares inside the linear predictor instead (logit p_r = mu + s_r . beta + ...), an
approximation kept for comparison.

Everything derived from the model is defined once, in the PyMC graph below: each row's
probability ``p``, its log-likelihood ``loglik`` (whose weighted sum is the sampled density;
the log binomial coefficient is data), and the probabilities ``p_typical`` (u = 0) and
``p_new`` (u = tau z_new, a new study) of prediction profiles. Rows carry a 0/1 weight
(``pm.Data``) so that excluding rows keeps the compiled model.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.special import gammaln

from ..errors import DataError, InputError, Problem
from ..inference import SamplerSettings
from .coding import blocks, check_coding, level_coords, level_effects
from .design import Design, build_design
from .engine import ModelInputs, fixed_data, fit_model, log_prior, onehot, profile_values
from .inputs import WHERE, numeric_column, prepare_rows, require_frame
from .priors import BINOMIAL_DEFAULTS, families, make_rv, prior_data, resolve_priors
from .shares import composition_shares, stick_data
from .structure import Structure

LIKELIHOODS = ("mixture", "linear")


def observation(p, constant):
    """The distribution of a row's events given its probability (and the constant data
    ``total``): replicated data are drawn from it."""
    return pm.Binomial.dist(n=constant["total"], p=p)


def _combinations(design: Design) -> dict[str, np.ndarray]:
    """Every combination of one category per fraction group: for each group, the category
    (0 = the rest) each combination takes."""
    groups = list(design.groups)
    combos = np.array(list(itertools.product(*[range(len(design.groups[g]) + 1) for g in groups])), dtype=int)
    return {g: combos[:, i] for i, g in enumerate(groups)}


def known_shares(design: Design, X: np.ndarray) -> dict[str, np.ndarray]:
    """Each group's shares (rows, K) with the rest first; rows of unknown shares are 0."""
    out = {}
    for g, idx in design.groups.items():
        sub = np.nan_to_num(X[:, idx])
        rest = np.clip(1.0 - sub.sum(axis=1, keepdims=True), 0.0, 1.0)
        known = ~np.isnan(X[:, idx]).any(axis=1, keepdims=True)
        out[g] = np.where(known, np.hstack([rest, sub]), 0.0)
    return out


def mixture_slots(design: Design, known: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each row's combinations of one category per group that can have a share above 0
    (its ``slots``, padded to the largest count with masked copies): for a group of known
    shares the categories whose share is above 0, for unknown shares the categories the
    unknown's parts allow. The mixture sums over these only; every other combination's
    weight is 0, so the sum is the same. Returns ``mixture_slot`` (rows, S), the
    combination of each slot, and ``mixture_valid`` (rows, S), 1 for a slot in use."""
    combos = _combinations(design)
    rows = len(design.X)
    possible = np.ones((rows, len(next(iter(combos.values())))), dtype=bool)
    for g in design.groups:
        cats = known[g] > 0
        lat = design.latent.get(g)
        if lat is not None and lat.n_units:
            allowed = np.zeros((lat.n_units, cats.shape[1]), dtype=bool)
            for part, unit in enumerate(lat.part_unit):
                allowed[unit] |= lat.allowed[part]
            cats[np.asarray(lat.rows, dtype=int)] = allowed[np.asarray(lat.units, dtype=int)]
        possible &= cats[:, combos[g]]
    width = max(1, int(possible.sum(axis=1).max()))
    slot = np.zeros((rows, width), dtype="int64")
    valid = np.zeros((rows, width))
    for r in range(rows):
        used = np.flatnonzero(possible[r])
        slot[r, :len(used)] = used
        slot[r, len(used):] = used[0] if len(used) else 0
        valid[r, :len(used)] = 1.0
    return {"mixture_slot": slot, "mixture_valid": valid}


def _numeric_columns(design: Design) -> list[int]:
    grouped = {j for idx in design.groups.values() for j in idx}
    return [j for j in range(len(design.names)) if j not in grouped]


def _take(x, columns: list[int]):
    """x[..., columns] by basic slicing where the columns are contiguous (no gather op)."""
    if columns == list(range(columns[0], columns[-1] + 1)):
        return x[..., columns[0]:columns[-1] + 1]
    return x[..., columns]


class _Predictor:
    """log p, log(1 - p) and p of rows with given shares: the one definition of a row's
    probability, used for the data's strata and for prediction profiles alike.

    Gathers and small matrix products are written as broadcast products with constant
    indicator arrays: compiled, they fuse into a few loops (no gather or BLAS call each)."""

    def __init__(self, design: Design, beta, mu, likelihood: str):
        self.design, self.beta, self.mu, self.likelihood = design, beta, mu, likelihood
        self.numeric = _numeric_columns(design)
        self.category = _combinations(design)
        self.pick = {g: onehot(cat, len(design.groups[g]) + 1) for g, cat in self.category.items()}
        self.mixture = likelihood == "mixture" and beta is not None and bool(design.groups)

    def combination(self, g: str, shares):
        """Each row's share of each combination's category of group ``g``: (rows, C)."""
        return (shares[:, :, None] * self.pick[g][None, :, :]).sum(axis=1)

    def weights(self, shares: dict) -> pt.TensorVariable:
        """Each row's share of each combination of one category per group: (rows, C)."""
        out = None
        for g in self.design.groups:
            w = self.combination(g, shares[g])
            out = w if out is None else out * w
        return out

    def base(self, X_num, u):
        base = self.mu + u
        if self.beta is not None and self.numeric:
            base = base + (X_num * _take(self.beta, self.numeric)[None, :]).sum(axis=1)
        return base

    def probability(self, base, shares: dict | None = None, weights=None, slots=None):
        """(log p, log(1 - p), p) given the rows' base linear predictor and either their
        shares (per group) or, for the mixture, their combination weights. ``slots``:
        ``(mixture_slot, mixture_valid)`` of :func:`mixture_slots`, the combinations each
        row can hold (the mixture then sums over those only)."""
        if self.mixture:
            effect = 0.0
            for g, idx in self.design.groups.items():
                effect = effect + (_take(self.beta, idx)[:, None] * self.pick[g][1:, :]).sum(axis=0)
            if slots is not None:
                slot, valid = slots
                weights = valid
                for g in self.design.groups:
                    # a contiguous copy: numba does not cache a function embedding a strided view
                    category = pt.as_tensor_variable(np.ascontiguousarray(self.category[g]))[slot]   # (rows, S)
                    weights = weights * pt.take_along_axis(shares[g], category, axis=1)
                eta = base[:, None] + effect[slot]
            else:
                weights = self.weights(shares) if weights is None else weights
                eta = base[:, None] + effect[None, :]
            p = (weights * pt.sigmoid(eta)).sum(axis=1)
            q = (weights * pt.sigmoid(-eta)).sum(axis=1)
            return pt.log(p), pt.log(q), p
        eta = base
        if self.beta is not None and self.design.groups:
            eta = base + sum((shares[g][:, 1:] * _take(self.beta, idx)[None, :]).sum(axis=1)
                             for g, idx in self.design.groups.items())
        soft = pt.softplus(eta)
        return eta - soft, -soft, pt.sigmoid(eta)

    def profiles(self, k: int, X_num, X_rows, shares: dict, standard: dict, row_shares: dict, v, u_new):
        """p_typical and p_new of ``k`` prediction profiles, standardised over the included rows.

        A profile gives a group's shares, or leaves it to the included rows (``standard[g]``
        = 1). Each profile is evaluated once per included row, on a copy of that row with
        the profile's fixed groups put in (the other groups, numeric covariates included,
        as in the row), at u = 0 and at a new study's u, and the copies are averaged with
        weights ``v`` (each row's n over their total). A profile fixing every group is its
        own probability; one fixing none is the population-averaged probability of the
        included strata. The copies go through :meth:`probability`, the rows' own graph."""
        r = v.shape[0]
        copies = {}
        for g in self.design.groups:
            s = standard[g][:, None, None]
            copy = s * row_shares[g][None, :, :] + (1 - s) * shares[g][:, None, :]          # (profiles, rows, K)
            flat = copy.reshape((k * r, copy.shape[2]))
            copies[g] = pt.concatenate([flat, flat], axis=0)
        x = None
        if X_num is not None:
            x = pt.switch(pt.isnan(X_num)[:, None, :], X_rows[None, :, :], X_num[:, None, :]).reshape((k * r, -1))
            x = pt.concatenate([x, x], axis=0)
        u = pt.concatenate([pt.zeros(k * r), pt.ones(k * r) * u_new])
        p = self.probability(self.base(x, u), copies)[2].reshape((2, k, r))
        return (p * v[None, None, :]).sum(axis=2)


def build_binomial_model(inp: ModelInputs) -> pm.Model:
    design, d = inp.design, inp.data
    coords = {"row": inp.row_labels, "study": inp.studies, "covariate": design.names, **level_coords(design)}
    if inp.profiles:
        coords["profile"] = inp.profiles
    for g, lat in design.latent.items():
        if lat.n_units:
            coords[f"{g}_unit"] = lat.keys
            coords[f"{g}_category"] = design.categories(g)
    with pm.Model(coords=coords) as model:
        y = fixed_data("events", d["events"], dims="row")
        n = fixed_data("total", d["total"], dims="row")
        w = fixed_data("weight", d["weight"], dims="row")
        log_coef = fixed_data("log_binomial_coefficient", d["log_binomial_coefficient"], dims="row")
        exchangeable = inp.structure.coding == "exchangeable" and bool(blocks(design))
        mask = fixed_data("beta_mask", d["beta_mask"], dims="covariate") if design.names else None
        if exchangeable:
            mu, beta_rv, top = level_effects(design, inp.priors, mask)
        else:
            mu = make_rv("mu", inp.priors["mu"])
            top = [mu]
        tau = make_rv("tau", inp.priors["tau"])
        top.append(tau)
        z = pm.Normal("z", 0.0, 1.0, dims="study")
        beta = None
        if design.names:
            if not exchangeable:
                beta_rv = make_rv("beta", inp.priors["beta"], dims="covariate")
                top.append(beta_rv)
            beta = beta_rv * mask
        log_prior(top)
        numeric = _numeric_columns(design)
        X_num = fixed_data("X_numeric", d["X_numeric"]) if numeric else None
        shares = {}
        for g, lat in design.latent.items():
            known = fixed_data(f"shares_{g}", d[f"shares_{g}"])
            if lat.n_units:
                unknown = composition_shares(f"{g}_share", stick_data(f"{g}_share", lat.allowed, lat.part_unit,
                                                                      lat.weight, lat.n_units),
                                             dims=(f"{g}_unit", f"{g}_category"))
                slot = np.zeros(len(inp.row_labels), dtype=int)           # each row's unknown + 1 (0: none)
                slot[lat.rows] = np.asarray(lat.units) + 1
                known = known + pt.concatenate([pt.zeros_like(unknown[:1]), unknown], axis=0)[slot]
            shares[g] = known
        predictor = _Predictor(design, beta, mu, inp.structure.likelihood)
        u = (tau * z)[np.asarray(inp.study_index, dtype=int)]                               # each row's study effect
        slots = None
        if predictor.mixture:
            slots = (fixed_data("mixture_slot", d["mixture_slot"]), fixed_data("mixture_valid", d["mixture_valid"]))
        log_p, log_q, p = predictor.probability(predictor.base(X_num, u), shares, slots=slots)
        pm.Deterministic("p", p, dims="row")
        loglik = pm.Deterministic("loglik", y * log_p + (n - y) * log_q + log_coef, dims="row")
        pm.Potential("weighted_loglik", pt.sum(w * loglik))
        if inp.profiles:
            z_new = pm.Normal("z_new", 0.0, 1.0)
            Xp = fixed_data("profile_X_numeric", d["profile_X_numeric"]) if numeric else None
            sp = {g: fixed_data(f"profile_shares_{g}", d[f"profile_shares_{g}"]) for g in design.groups}
            std = {g: fixed_data(f"profile_standard_{g}", d[f"profile_standard_{g}"]) for g in design.groups}
            v = w * n / pt.sum(w * n)
            both = predictor.profiles(len(inp.profiles), Xp, X_num, sp, std, shares, v, tau * z_new)
            pm.Deterministic("p_typical", both[0], dims="profile")
            pm.Deterministic("p_new", both[1], dims="profile")
    return model


def prepare_binomial(df: pd.DataFrame, events: str = "events", total: str = "total", study: str = "study", *,
                     covariates: Sequence[str] = (), priors: Mapping | None = None,
                     reference: Mapping[str, str] | None = None,
                     fractions: Mapping[str, Sequence[str]] | None = None, shared: Mapping[str, str] | None = None,
                     composition: Mapping | None = None, likelihood: str = "mixture",
                     profiles: pd.DataFrame | None = None, label: str | None = None,
                     weights: str | Sequence[float] | None = None,
                     covariate_mask: Sequence[float] | None = None, coding: str = "exchangeable") -> ModelInputs:
    """Check the data and build the inputs of the binomial model (nothing is compiled)."""
    require_frame(df, [events, total, study], ["events", "total", "study"])
    if likelihood not in LIKELIHOODS:
        raise InputError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
    y = numeric_column(df, events, integer=True, minimum=0)
    n = numeric_column(df, total, integer=True, minimum=0, strictly=True)
    over = np.flatnonzero(y > n)
    if over.size:
        raise DataError([Problem(WHERE, df.index[i], events, f"events ({y[i]:g}) exceed total ({n[i]:g})") for i in over])
    resolved = resolve_priors(priors, BINOMIAL_DEFAULTS)
    studies, study_idx, row_labels, w = prepare_rows(df, study, label, weights)
    design = build_design(df, covariates, reference=reference, fractions=fractions, shared=shared,
                          composition=composition, labels=row_labels)
    coding = check_coding(coding, design, resolved)
    mask = np.ones(len(design.names)) if covariate_mask is None else np.asarray(covariate_mask, dtype=float)
    if mask.shape != (len(design.names),) or not np.isin(mask, (0.0, 1.0)).all():
        raise InputError(f"covariate_mask must hold a 0 or 1 for each of the {len(design.names)} design columns")
    y_i, n_i = y.astype("int64"), n.astype("int64")
    numeric = _numeric_columns(design)
    data = {"events": y_i, "total": n_i, "weight": w,
            "log_binomial_coefficient": gammaln(n_i + 1.0) - gammaln(y_i + 1.0) - gammaln(n_i - y_i + 1.0),
            **prior_data({k: v for k, v in resolved.items() if k != "beta" or design.names})}
    if design.names:
        data["beta_mask"] = mask
    if numeric:
        data["X_numeric"] = design.X[:, numeric]
    data.update({f"shares_{g}": s for g, s in known_shares(design, design.X).items()})
    mixture = likelihood == "mixture" and bool(design.groups)
    if mixture:
        data.update(mixture_slots(design, known_shares(design, design.X)))
    profile_labels = _profiles(design, profiles, data, numeric)
    structure = Structure(
        engine="binomial", study_index=tuple(int(i) for i in study_idx), covariates=tuple(design.names),
        groups=tuple((g, tuple(idx)) for g, idx in design.groups.items()),
        latent=tuple((g, tuple(int(r) for r in lat.rows), tuple(int(u) for u in lat.units),
                      lat.allowed.tobytes(), tuple(int(p) for p in lat.part_unit), tuple(float(w) for w in lat.weight))
                     for g, lat in design.latent.items()),
        priors=families(resolved), profiles=len(profile_labels), likelihood=likelihood,
        coding=coding if blocks(design) else "treatment",
        mixture_slots=data["mixture_slot"].shape[1] if mixture else 0)
    gate = ["mu"] + (["tau", "z"] if resolved["tau"]["dist"] != "Fixed" else []) + (["beta"] if design.names else [])
    row_info = {f"known_shares_{g}": (("row", f"{g}_category"),
                                      np.where(np.isnan(design.X[:, design.groups[g]]).any(axis=1, keepdims=True), np.nan, s))
                for g, s in known_shares(design, design.X).items()}
    for g, lat in design.latent.items():      # the prior each row's unknown shares got, in words
        text = np.full(len(df), "", dtype=object)
        words = lat.describe(design.categories(g))
        text[lat.rows] = [words[u] for u in lat.units]
        row_info[f"composition_prior_{g}"] = text.astype(str)
    return ModelInputs(structure=structure, build=build_binomial_model, row_info=row_info, study_index=study_idx, data=data, gate=gate, design=design,
                       priors=resolved, row_labels=row_labels, studies=studies, weights=w, profiles=profile_labels,
                       observed={"events": y_i}, constant={"total": n_i, "weight": w}, row_param="p",
                       observation=observation, profile_values=profile_values(profiles, profile_labels))


def _profiles(design: Design, profiles: pd.DataFrame | None, data: dict, numeric: list[int]) -> list[str]:
    """Prediction profiles (one row each, index = label) as model data; none by default,
    except the pooled estimate of a model without covariates. A group whose shares a
    profile leaves empty (NaN) is standardised to the included rows' composition."""
    if profiles is None:
        if design.names:
            return []
        profiles = pd.DataFrame(index=["pooled"])
    if not isinstance(profiles, pd.DataFrame) or len(profiles) == 0:
        raise InputError("profiles must be a non-empty DataFrame: one row per profile, its index the label")
    Xp = design.encode(profiles, allow_missing=True)
    if numeric:
        data["profile_X_numeric"] = Xp[:, numeric]
    for g, s in known_shares(design, np.nan_to_num(Xp, nan=0.0)).items():
        missing = np.isnan(Xp[:, design.groups[g]])
        if (missing.any(axis=1) & ~missing.all(axis=1)).any():
            raise InputError(f"profiles: give every share of '{g}' or none (none: as in the included rows)")
        standard = missing.all(axis=1).astype(float)
        data[f"profile_shares_{g}"] = np.where(standard[:, None] > 0, 0.0, s)
        data[f"profile_standard_{g}"] = standard
    return [str(i) for i in profiles.index]


def fit_binomial(df: pd.DataFrame, events: str = "events", total: str = "total", study: str = "study", *,
                 covariates: Sequence[str] = (), priors: Mapping | None = None, reference: Mapping[str, str] | None = None,
                 fractions: Mapping[str, Sequence[str]] | None = None, shared: Mapping[str, str] | None = None,
                 composition: Mapping | None = None, likelihood: str = "mixture",
                 profiles: pd.DataFrame | None = None, label: str | None = None,
                 weights: str | Sequence[float] | None = None, covariate_mask: Sequence[float] | None = None,
                 coding: str = "exchangeable",
                 sampling: SamplerSettings | Mapping | None = None, **sampler_options) -> az.InferenceData:
    """Fit the hierarchical binomial model to a data frame with one row per stratum.

    Parameters
    ----------
    df : rows of (events, total, study[, covariates])
    events, total, study : column names
    covariates : columns; numeric ones used as given, text ones treatment-coded
        (reference level: first in sorted order, or ``reference={column: level}``)
    priors : e.g. ``{"tau": {"dist": "HalfNormal", "sigma": 0.5}}``; defaults in
        :data:`hlh_meta.models.priors.BINOMIAL_DEFAULTS`. ``{"dist": "Fixed", "value": 0}``
        for tau gives the common-effect model.
    fractions : ``{group: [share columns]}``: a composition group (e.g. the shares of
        three triggers, the fourth being the rest); missing shares are unknowns
    shared : ``{group: column}``: unknown shares of rows with equal ``column`` values are
        one unknown (e.g. ``{"route": "study"}`` for a study-level IV share)
    composition : ``{group: {row label (or shared value): {"exclude": [category], "parts":
        [{"share": w, "categories": [...]}], "minimum": {category: share}}}}``: what a source
        says about an unknown composition (categories it excludes; a known share of its
        patients within some categories); categories are ``<group>[rest]`` and the group's
        columns
    likelihood : ``"mixture"`` (a stratum's probability is the share-weighted mean of its
        categories' probabilities) or ``"linear"`` (shares inside the linear predictor)
    profiles : prediction profiles, one row each (index = label) with the covariate
        columns; the posterior gets ``p_typical`` and ``p_new`` on a ``profile`` dimension
        (without covariates, by default one profile ``pooled``). A profile that leaves a
        covariate or a group's shares empty takes them as in the included rows (the
        n-weighted average; every covariate empty: the population-averaged probability)
    weights : 0/1 per row (or a column name); 0 drops the row from the likelihood
    covariate_mask : 0/1 per design column; 0 switches a covariate off (its beta then
        keeps its prior) so nested covariate sets reuse one compiled model
    coding : ``"exchangeable"`` (default): the levels of a categorical covariate (a text
        column or a group of shares) are exchangeable a priori, so no level's estimate
        depends on the reference; ``mu`` then has the prior of the mean of the levels'
        log-odds and each contrast ``beta`` the ``beta`` prior (which must be Normal with
        mu = 0). ``"treatment"``: ``mu`` is the reference level's log-odds with ``mu``'s
        prior and each contrast has its own ``beta`` prior (see :mod:`hlh_meta.models.coding`)
    sampling, sampler_options : :class:`~hlh_meta.inference.SamplerSettings` (or a mapping)
        and/or its fields as keywords: ``draws``, ``tune``, ``chains``, ``seed``,
        ``sampler``, ``target_accept``, ``progress``
    Returns an ``arviz.InferenceData`` with posterior (``mu``, ``tau``, ``beta`` on
    ``covariate``, row probabilities ``p`` labelled ``study: stratum`` in input order,
    unknown shares; the sampler's own parameterisation is left out), prior,
    posterior_predictive, log_likelihood and observed_data; ``hlh_meta.diagnostics(idata)``
    gives the diagnostics gate result (stored as JSON in ``idata.posterior.attrs["diagnostics"]``).
    """
    inputs = prepare_binomial(df, events, total, study, covariates=covariates, priors=priors, reference=reference,
                              fractions=fractions, shared=shared, composition=composition, likelihood=likelihood,
                              profiles=profiles, label=label, weights=weights, covariate_mask=covariate_mask,
                              coding=coding)
    return fit_model(inputs, SamplerSettings.of(sampling, **sampler_options))
