"""Covariate design matrices shared by the binomial and normal engines.

Numeric columns enter as given (no centring). Text/categorical columns become
treatment-coded dummies named ``column[level]``; the reference level is the first in
sorted order unless ``reference={column: level}`` says otherwise.

Fractions: a group of numeric columns holding the shares of one categorical split (e.g.
``trigger[rheumatological]``, ``trigger[malignancy]`` with infection as the rest) may be
missing (NaN) in a row; such a row's shares become unknowns over the group's categories
(the group's columns plus the rest) instead of the row being dropped. Their prior is a
flat Dirichlet over the categories a row allows, with any known parts of the row held
within their categories (``composition``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError


@dataclass(frozen=True)
class Latent:
    """The unknown shares of one fraction group.

    ``rows``: rows with unknown shares; ``units``: the unknown each of them uses (rows of
    one study may share one); ``keys``: each unknown's name (row label or shared value).
    An unknown is a sum of *parts*: part p holds ``weight[p]`` of the unknown's patients,
    spread by a flat Dirichlet over the categories ``allowed[p]`` (K columns, the rest
    first). Without constraints an unknown is one part of weight 1 over every category.
    """

    rows: np.ndarray
    units: np.ndarray
    allowed: np.ndarray                # (parts, K) bool
    part_unit: np.ndarray              # (parts,) the unknown a part belongs to
    weight: np.ndarray                 # (parts,) its share of the unknown
    keys: list[str] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)   # unknown -> its prior in words

    @property
    def n_units(self) -> int:
        return len(self.keys)

    def describe(self, categories: list[str]) -> list[str]:
        """Each unknown's prior in words."""
        out = []
        for u in range(self.n_units):
            parts = [p for p in range(len(self.weight)) if self.part_unit[p] == u]
            words = []
            for p in parts:
                cats = [c for c, ok in zip(categories, self.allowed[p]) if ok]
                what = cats[0] if len(cats) == 1 else "flat Dirichlet over " + ", ".join(cats)
                words.append(what if len(parts) == 1 else f"{self.weight[p]:.3g} {what}")
            out.append("; ".join(words))
        return out


@dataclass(frozen=True)
class Design:
    """Covariate matrix with labels; ``latent`` maps a fraction group to its unknown shares."""

    X: np.ndarray                      # (rows, covariates); NaN where a share is unknown
    names: list[str]
    references: dict[str, str] = field(default_factory=dict)
    levels: dict[str, list[str]] = field(default_factory=dict)     # categorical column -> levels
    groups: dict[str, list[int]] = field(default_factory=dict)     # fraction group -> column indices
    latent: dict[str, Latent] = field(default_factory=dict)
    numeric: list[str] = field(default_factory=list)               # columns used as given

    def categories(self, group: str) -> list[str]:
        """The categories of a fraction group: the rest (``<group>[rest]``), then its columns."""
        return [f"{group}[rest]"] + [self.names[j] for j in self.groups[group]]

    def encode(self, frame: pd.DataFrame, role: str = "profiles", allow_missing: bool = False) -> np.ndarray:
        """Rows of new covariate values (e.g. prediction profiles) as this design's columns.

        Categorical columns must use the data's levels; share columns lie in [0, 1] with
        each group summing to at most 1. With ``allow_missing`` a column the frame leaves
        out or empty (NaN) gives NaN in its design columns (the caller decides what that
        means: prediction profiles take such covariates as in the data).
        """
        out = np.zeros((len(frame), len(self.names)))
        shares = [self.names[j] for idx in self.groups.values() for j in idx]
        for col in self.numeric + shares:
            if allow_missing and col not in frame.columns:
                out[:, self.names.index(col)] = np.nan
                continue
            _check_columns(frame, [col], role)
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            if not (np.isfinite(x) | (allow_missing & np.isnan(x))).all():
                raise InputError(f"{role}: column '{col}' must hold finite numbers")
            out[:, self.names.index(col)] = x
        for col, levels in self.levels.items():
            dummies = [self.names.index(f"{col}[{lv}]") for lv in levels if lv != self.references[col]]
            if allow_missing and col not in frame.columns:
                out[:, dummies] = np.nan
                continue
            _check_columns(frame, [col], role)
            missing = frame[col].isna().to_numpy()
            if missing.any() and not allow_missing:
                raise InputError(f"{role}: column '{col}' has missing values")
            values = frame[col].astype(str)
            bad = sorted(set(values[~missing]) - set(levels))
            if bad:
                raise InputError(f"{role}: column '{col}' has level '{bad[0]}', not a level of the data "
                                 f"({', '.join(levels)})")
            for level in levels:
                if level != self.references[col]:
                    out[:, self.names.index(f"{col}[{level}]")] = (values == level).to_numpy(dtype=float)
            out[np.ix_(missing, dummies)] = np.nan
        for g, idx in self.groups.items():
            sub = out[:, idx]
            known = ~np.isnan(sub).any(axis=1)
            if ((sub[known] < 0) | (sub[known] > 1)).any() or (sub[known].sum(axis=1) > 1 + 1e-9).any():
                raise InputError(f"{role}: shares of '{g}' must lie in [0, 1] and sum to at most 1")
        return out


def _check_columns(df: pd.DataFrame, columns: Sequence[str], role: str) -> None:
    import difflib

    for col in columns:
        if col not in df.columns:
            close = difflib.get_close_matches(col, [str(c) for c in df.columns], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise InputError(f"{role}: column '{col}' not found in the data frame{hint}")


def column_list(value, role: str) -> list[str]:
    """A list of column names; a single string is an error (it is not a list of letters)."""
    if isinstance(value, str):
        raise InputError(f"{role} must be a list of column names, e.g. ['{value}'], not a string")
    out = list(value)
    for c in out:
        if not isinstance(c, str):
            raise InputError(f"{role}: column names must be strings, got {c!r}")
    return out


def _composition(group: str, cats: list[str], keys: list[str],
                 composition: Mapping[str, Mapping] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parts of each unknown of a group (``keys``: the unknowns' names), from
    ``composition = {key: rule}`` with rule keys

    - ``exclude``: categories the unknown cannot hold;
    - ``parts``: ``[{"share": w, "categories": [...]}, ...]``: a known share w of the
      unknown's patients lies within those categories (e.g. 4 of 8 children previously
      healthy: ``{"share": 0.5, "categories": ["trigger[rest]", "trigger[other]"]}``);
    - ``minimum``: ``{category: share}``, a part of a single category.

    The rest of the unknown (1 minus the parts' shares) is flat over the categories not
    excluded. Returns per part: allowed categories (bool), its unknown, its weight.
    """
    allowed, part_unit, weight = [], [], []
    rules = dict(composition or {})
    for key in rules:
        if key not in keys:
            raise InputError(f"composition['{group}']['{key}']: no row of this group with unknown shares has this key "
                             f"({', '.join(sorted(keys)) or 'none'})")
    for u, key in enumerate(keys):
        rule = rules.get(key, {})
        where = f"composition['{group}']['{key}']"
        if not isinstance(rule, Mapping) or set(rule) - {"exclude", "minimum", "parts"}:
            raise InputError(f"{where} must be a mapping with 'exclude', 'parts' and/or 'minimum'")

        def mask(names, role) -> np.ndarray:
            out = np.zeros(len(cats), dtype=bool)
            for cat in column_list(names, f"{where}['{role}']"):
                if cat not in cats:
                    raise InputError(f"{where}: unknown category '{cat}'; categories are {', '.join(cats)}")
                out[cats.index(cat)] = True
            return out

        excluded = mask(rule.get("exclude", []), "exclude")
        if excluded.all():
            raise InputError(f"{where}: every category is excluded")
        parts = [({"share": v, "categories": [c]}, "minimum") for c, v in dict(rule.get("minimum", {})).items()]
        parts += [(p, "parts") for p in rule.get("parts", [])]
        total = 0.0
        for part, role in parts:
            if not isinstance(part, Mapping) or set(part) != {"share", "categories"}:
                raise InputError(f"{where}['{role}']: each part needs 'share' and 'categories'")
            share = part["share"]
            if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
                raise InputError(f"{where}: a {'minimum' if role == 'minimum' else 'part'} share must be a number in "
                                 f"[0, 1], got {share!r}")
            ok = mask(part["categories"], role)
            if (ok & excluded).any():
                raise InputError(f"{where}: a category with a minimum share or a part cannot be excluded")
            if share > 0:
                allowed.append(ok)
                part_unit.append(u)
                weight.append(float(share))
            total += share
        if total > 1 + 1e-9:
            raise InputError(f"{where}: minimum and part shares add up to more than 1")
        if total < 1 - 1e-12:
            allowed.append(~excluded)
            part_unit.append(u)
            weight.append(1.0 - total)
    k = len(cats)
    return (np.array(allowed, dtype=bool).reshape(-1, k), np.array(part_unit, dtype=int),
            np.array(weight, dtype=float))


def build_design(df: pd.DataFrame, covariates: Sequence[str] = (), *,
                 reference: Mapping[str, str] | None = None,
                 fractions: Mapping[str, Sequence[str]] | None = None,
                 shared: Mapping[str, str] | None = None,
                 composition: Mapping[str, Mapping[str, Mapping]] | None = None,
                 labels: Sequence[str] | None = None) -> Design:
    """Design matrix for ``covariates`` (without intercept).

    ``shared={group: column}``: rows of a fraction group whose shares are unknown and that
    have the same value in ``column`` (e.g. strata of one study for a study-level IV share)
    share one unknown instead of one each. ``composition={group: {key: rule}}`` constrains
    an unknown (key: the row label, or the ``shared`` column's value): categories it
    excludes, known parts and minimum shares (see :func:`_composition`).
    """
    covariates = column_list(covariates, "covariates")
    if len(set(covariates)) != len(covariates):
        raise InputError("covariates: a column is named twice")
    _check_columns(df, covariates, "covariates")
    reference = dict(reference or {})
    fractions = {g: column_list(cols, f"fractions['{g}']") for g, cols in (fractions or {}).items()}
    in_group = {c: g for g, cols in fractions.items() for c in cols}
    for g, cols in fractions.items():
        missing = [c for c in cols if c not in covariates]
        if missing:
            raise InputError(f"fractions['{g}']: {', '.join(missing)} must also be listed in covariates")
    for col in reference:
        if col not in covariates:
            raise InputError(f"reference: '{col}' is not one of the covariates ({', '.join(covariates) or 'none'})")
    blocks, names, refs, levels_of, numeric = [], [], {}, {}, []
    for col in covariates:
        values = df[col]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            if col in reference:
                raise InputError(f"reference: column '{col}' is numeric; a reference level applies to text columns")
            x = values.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            bad = np.flatnonzero(~np.isfinite(x))
            if bad.size and col not in in_group:
                raise InputError(f"covariates: column '{col}' has missing or non-finite values in rows "
                                 f"{', '.join(map(str, df.index[bad][:10]))}")
            blocks.append(x[:, None])
            names.append(col)
            numeric.append(col)
            continue
        if col in in_group:
            raise InputError(f"fractions: column '{col}' must be numeric (a share between 0 and 1)")
        if values.isna().any():
            rows = ", ".join(map(str, df.index[values.isna().to_numpy()][:10]))
            raise InputError(f"covariates: column '{col}' has missing values in rows {rows}")
        levels = sorted(values.astype(str).unique())
        ref = reference.get(col, levels[0])
        if ref not in levels:
            raise InputError(f"reference: level '{ref}' is not a value of column '{col}' (levels: {', '.join(levels)})")
        refs[col], levels_of[col] = ref, levels
        for level in levels:
            if level != ref:
                blocks.append((values.astype(str) == level).to_numpy(dtype=float)[:, None])
                names.append(f"{col}[{level}]")
    X = np.hstack(blocks) if blocks else np.zeros((len(df), 0))
    numeric = [c for c in numeric if c not in in_group]
    shared = dict(shared or {})
    for g, col in shared.items():
        if g not in fractions:
            raise InputError(f"shared: '{g}' is not a fraction group")
        _check_columns(df, [col], f"shared['{g}']")
    for g in composition or {}:
        if g not in fractions:
            raise InputError(f"composition: '{g}' is not a fraction group")
    row_keys = [str(i) for i in df.index] if labels is None else list(labels)
    groups, latent = {}, {}
    for g, cols in fractions.items():
        idx = [names.index(c) for c in cols]
        sub = X[:, idx]
        partial = np.isnan(sub).any(axis=1) & ~np.isnan(sub).all(axis=1)
        if partial.any():
            raise InputError(f"fractions['{g}']: rows {', '.join(map(str, df.index[partial][:10]))} give some shares "
                             "but not all; give all or none")
        known = ~np.isnan(sub).any(axis=1)
        if ((sub[known] < 0) | (sub[known] > 1)).any() or (sub[known].sum(axis=1) > 1 + 1e-9).any():
            raise InputError(f"fractions['{g}']: shares must lie in [0, 1] and sum to at most 1")
        groups[g] = idx
        rows = np.flatnonzero(~known)
        if g in shared:
            keys = df[shared[g]].astype(str).to_numpy()[rows]
            uniq, units = np.unique(keys, return_inverse=True) if keys.size else (np.array([]), np.zeros(0, int))
            names_of_units = [str(k) for k in uniq]
        else:
            units = np.arange(rows.size)
            names_of_units = [row_keys[r] for r in rows]
        cats = [f"{g}[rest]"] + cols
        allowed, part_unit, weight = _composition(g, cats, names_of_units, (composition or {}).get(g))
        latent[g] = Latent(rows, units.astype(int), allowed, part_unit, weight, names_of_units)
    return Design(X, names, refs, levels_of, groups, latent, numeric)
