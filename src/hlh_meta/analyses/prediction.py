"""Mortality of new covariate profiles from a fit's stored draws, with no refit.

A profile names a level of some of the model's covariates (for the route, ``intravenous``,
``subcutaneous`` or a share of IV patients between 0 and 1); a covariate it leaves out or
empty is taken as in the included strata, as in the analysis's own standardised profiles.
The profiles go through the model's own definition of a profile's probability
(``p_typical`` and ``p_new`` of :func:`hlh_meta.models.binomial.build_binomial_model`),
evaluated by the compiled model at the fit's draws in the sampler's coordinates
(:mod:`hlh_meta.models.points`) with the new profiles swapped into its data: the numbers
the fit would have stored for them. The compiled model holds a fixed number of profiles, so
new ones go through in batches of that size. Each row is worded as the analysis's own
profiles are (:meth:`Mortality.quantities <hlh_meta.analyses.mortality.Mortality.quantities>`):
the studies and patients of known composition that hold its levels, and whether it is an
extrapolation (no stratum of known composition holds the combination).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence

import arviz as az
import numpy as np
import pandas as pd

from ..data import Dataset
from ..errors import InputError
from ..models.engine import profile_values
from ..models.points import GROUP, PointsUnavailable, compiled_with, deterministics_public, expand, flat_points
from ..spec import Spec
from .base import AnalysisType, quantity_table

WHERE = "profiles"
ROUTE_LEVELS = {"subcutaneous": 0.0, "intravenous": 1.0}


def _label(row: dict[str, str | None]) -> str:
    given = [f"{c} = {v}" for c, v in row.items() if v is not None]
    return ", ".join(given) or "all included strata"


def design_profiles(profiles: pd.DataFrame, covariates: list[str], levels: Mapping[str, Sequence[str]],
                    columns: list[str], column: Callable[[str, str], str], route: str) -> pd.DataFrame:
    """The profiles by design column (``columns``, as the analysis's own; NaN: as in the
    included strata), indexed by label; a bad column or value is an
    :class:`~hlh_meta.errors.InputError` naming the row and column. ``levels``: each
    covariate's levels; ``column(covariate, level)``: a level's design column; ``route``:
    the covariate given as a share of IV patients."""
    if not isinstance(profiles, pd.DataFrame) or profiles.empty:
        raise InputError(f"{WHERE}: give a non-empty pandas DataFrame with a column per covariate "
                         f"({', '.join(covariates)})")
    unknown = [c for c in profiles.columns if c not in covariates]
    if unknown:
        raise InputError(f"{WHERE}: column(s) {', '.join(map(repr, unknown))} are not covariates of this model "
                         f"(its covariates: {', '.join(covariates) or 'none'})")
    rows, labels = [], []
    for index, record in profiles.iterrows():
        design = dict.fromkeys(columns, np.nan)
        given: dict[str, str | None] = {}
        for cov, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                given[cov] = None
                continue
            if cov == route and not isinstance(value, str):
                share = float(value) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) \
                    else float("nan")
                if not 0.0 <= share <= 1.0:
                    raise InputError(f"{WHERE}, row {index!r}, column '{cov}': {value!r} is not a share of IV "
                                     "patients between 0 and 1 (or 'intravenous' / 'subcutaneous')")
                design[route] = share
                given[cov] = f"{100 * share:g}% IV"
                continue
            if value not in levels[cov]:
                raise InputError(f"{WHERE}, row {index!r}, column '{cov}': {value!r} is not a level of {cov}; "
                                 f"choose from {', '.join(levels[cov])}")
            if cov == route:
                design[route] = ROUTE_LEVELS[value]
            else:
                for level in levels[cov]:
                    design[column(cov, level)] = float(level == value)
            given[cov] = value
        rows.append(design)
        labels.append(_label(given) if isinstance(profiles.index, pd.RangeIndex) else str(index))
    if len(set(labels)) != len(labels):
        raise InputError(f"{WHERE}: two rows have the same label ({', '.join(sorted({x for x in labels if labels.count(x) > 1}))}); "
                         "give each profile its own index label")
    return pd.DataFrame(rows, index=labels, columns=columns)


def predict_profiles(analysis: AnalysisType, ds: Dataset, spec: Spec, idata: az.InferenceData,
                     design: pd.DataFrame) -> pd.DataFrame:
    """Typical-study and new-study mortality (%) of each profile of ``design`` (from
    :func:`design_profiles`): a row per profile and quantity with the columns of
    ``derived.csv`` (median, 95% interval, P(<10%), ..., studies and patients informing,
    extrapolation, caveats). ``analysis``: the mortality analysis type, whose ``inputs``
    take ``profiles=``."""
    if GROUP not in idata.groups():
        raise InputError("this result keeps no draws in the sampler's coordinates (it was written by an older "
                         "version); fit it again to predict new profiles")
    used, _ = analysis.frame(ds, spec)
    base = analysis.inputs(ds, spec, used)
    size = len(base.profiles)
    batches = [design.iloc[i:i + size] for i in range(0, len(design), size)]
    typical, new = [], []
    try:
        for batch in batches:
            padded = pd.concat([batch] + [batch.iloc[[-1]]] * (size - len(batch)))
            padded.index = [f"#{i}" for i in range(size)]
            inputs = analysis.inputs(ds, spec, used, profiles=padded)  # type: ignore[call-arg]
            if inputs.structure != base.structure:
                raise InputError("the profiles change the model's structure; this should not happen: report it")
            compiled = compiled_with(inputs)
            flat = flat_points(compiled, idata[GROUP])
            try:
                values = expand(compiled, flat, ["p_typical", "p_new"])
            except PointsUnavailable:          # the private paths are off or missing: PyMC's public path
                values = deterministics_public(inputs, idata[GROUP], ["p_typical", "p_new"])
            typical.append(values["p_typical"][:, :len(batch)])
            new.append(values["p_new"][:, :len(batch)])
    except PointsUnavailable as exc:
        raise InputError(f"this result's draws do not fit its model ({exc}); fit it again to predict") from None
    post = idata.posterior
    shape = (post.sizes["chain"], post.sizes["draw"], len(design))
    labels = list(design.index)
    columns = [c for c in design.columns if c in list(map(str, post["covariate"].values))] \
        if "covariate" in post.dims else []
    kept = post.drop_vars([v for v in post.data_vars if "profile" in post[v].dims]).drop_dims("profile", errors="ignore")
    predicted = kept.assign(
        p_typical=(("chain", "draw", "profile"), np.concatenate(typical, axis=1).reshape(shape)),
        p_new=(("chain", "draw", "profile"), np.concatenate(new, axis=1).reshape(shape)),
    ).assign_coords(profile=labels)
    predicted.attrs = {**post.attrs, "profiles": json.dumps(profile_values(design[columns], labels), default=str)}
    groups = {"posterior": predicted, "constant_data": idata.constant_data}
    if "observed_data" in idata.groups():
        groups["observed_data"] = idata.observed_data
    quantities = [q for q in analysis.quantities(az.InferenceData(**groups))
                  if q.key in ("mortality_typical", "mortality_new")]
    return quantity_table(quantities).assign(
        studies_informing=pd.array([q.studies_informing for q in quantities], dtype="Int64"),
        patients_informing=pd.array([q.patients_informing for q in quantities], dtype="Int64"),
        extrapolation=[bool(q.extrapolation) for q in quantities])

