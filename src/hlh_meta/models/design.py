"""Covariate design matrices shared by the binomial and normal engines.

Numeric columns enter as given (no centring). Text/categorical columns become
treatment-coded dummies named ``column[level]``; the reference level is the first in
sorted order unless ``reference={column: level}`` says otherwise.

Fractions: a group of numeric columns holding the shares of one categorical split (e.g.
``trigger_rheumatological``, ``trigger_malignancy`` with infection as the rest) may be
missing (NaN) in a row; such a row's shares become unknowns with a flat Dirichlet prior
over the group plus its reference share, instead of the row being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Design:
    """Covariate matrix with labels; ``latent`` maps a fraction group to the rows whose shares are unknown."""

    X: np.ndarray                      # (rows, covariates); NaN where a share is unknown
    names: list[str]
    references: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[int]] = field(default_factory=dict)   # group -> column indices
    latent: dict[str, np.ndarray] = field(default_factory=dict)  # group -> row indices
    units: dict[str, np.ndarray] = field(default_factory=dict)   # group -> unknown share of each latent row

    def n_units(self, group: str) -> int:
        return int(self.units[group].max()) + 1 if self.units[group].size else 0


def _check_columns(df: pd.DataFrame, columns: Sequence[str], role: str) -> None:
    import difflib

    for col in columns:
        if col not in df.columns:
            close = difflib.get_close_matches(col, [str(c) for c in df.columns], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"{role}: column '{col}' not found in the data frame{hint}")


def build_design(df: pd.DataFrame, covariates: Sequence[str] = (), *,
                 reference: Mapping[str, str] | None = None,
                 fractions: Mapping[str, Sequence[str]] | None = None,
                 shared: Mapping[str, str] | None = None) -> Design:
    """Design matrix for ``covariates`` (without intercept).

    ``shared={group: column}``: rows of a fraction group whose shares are unknown and that
    have the same value in ``column`` (e.g. strata of one study for a study-level IV share)
    share one unknown instead of one each.
    """
    covariates = list(covariates)
    if len(set(covariates)) != len(covariates):
        raise ValueError("covariates: a column is named twice")
    _check_columns(df, covariates, "covariates")
    reference = dict(reference or {})
    fractions = {g: list(cols) for g, cols in (fractions or {}).items()}
    in_group = {c: g for g, cols in fractions.items() for c in cols}
    for g, cols in fractions.items():
        missing = [c for c in cols if c not in covariates]
        if missing:
            raise ValueError(f"fractions['{g}']: {', '.join(missing)} must also be listed in covariates")
    blocks, names, refs = [], [], {}
    for col in covariates:
        values = df[col]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            x = values.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            bad = np.flatnonzero(~np.isfinite(x))
            if bad.size and col not in in_group:
                raise ValueError(f"covariates: column '{col}' has missing or non-finite values in rows "
                                 f"{', '.join(map(str, df.index[bad][:10]))}")
            blocks.append(x[:, None])
            names.append(col)
            continue
        if col in in_group:
            raise ValueError(f"fractions: column '{col}' must be numeric (a share between 0 and 1)")
        if values.isna().any():
            rows = ", ".join(map(str, df.index[values.isna().to_numpy()][:10]))
            raise ValueError(f"covariates: column '{col}' has missing values in rows {rows}")
        levels = sorted(values.astype(str).unique())
        ref = reference.get(col, levels[0])
        if ref not in levels:
            raise ValueError(f"reference: level '{ref}' is not a value of column '{col}' (levels: {', '.join(levels)})")
        refs[col] = ref
        for level in levels:
            if level != ref:
                blocks.append((values.astype(str) == level).to_numpy(dtype=float)[:, None])
                names.append(f"{col}[{level}]")
    X = np.hstack(blocks) if blocks else np.zeros((len(df), 0))
    groups, latent, units = {}, {}, {}
    shared = dict(shared or {})
    for g, col in shared.items():
        if g not in fractions:
            raise ValueError(f"shared: '{g}' is not a fraction group")
        _check_columns(df, [col], f"shared['{g}']")
    for g, cols in fractions.items():
        idx = [names.index(c) for c in cols]
        sub = X[:, idx]
        partial = np.isnan(sub).any(axis=1) & ~np.isnan(sub).all(axis=1)
        if partial.any():
            raise ValueError(f"fractions['{g}']: rows {', '.join(map(str, df.index[partial][:10]))} give some shares "
                             "but not all; give all or none")
        known = ~np.isnan(sub).any(axis=1)
        if ((sub[known] < 0) | (sub[known] > 1)).any() or (sub[known].sum(axis=1) > 1 + 1e-9).any():
            raise ValueError(f"fractions['{g}']: shares must lie in [0, 1] and sum to at most 1")
        groups[g] = idx
        latent[g] = np.flatnonzero(~known)
        if g in shared:
            keys = df[shared[g]].astype(str).to_numpy()[latent[g]]
            units[g] = np.unique(keys, return_inverse=True)[1].astype(int) if keys.size else np.zeros(0, int)
        else:
            units[g] = np.arange(latent[g].size)
    return Design(X, names, refs, groups, latent, units)
