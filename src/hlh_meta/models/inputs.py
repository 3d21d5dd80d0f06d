"""Checks of a user's data frame before any model is compiled."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, InputError, Problem
from .design import _check_columns

WHERE = "<data frame>"


def require_frame(df: pd.DataFrame, columns: Sequence[str], roles: Sequence[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise DataError(Problem(WHERE, None, None, "the data frame is empty"))
    for col, role in zip(columns, roles):
        _check_columns(df, [col], role)


def numeric_column(df: pd.DataFrame, col: str, *, integer: bool = False, minimum: float | None = None,
                   strictly: bool = False) -> np.ndarray:
    """The column as floats; every missing, non-numeric, non-integer or out-of-range cell is a problem."""
    raw = df[col]
    if pd.api.types.is_bool_dtype(raw.dtype) or (raw.dtype == object and raw.map(lambda v: isinstance(v, (bool, np.bool_))).any()):
        what = "counts" if integer else "numbers"
        raise DataError(Problem(WHERE, None, col, f"holds true/false values, not {what}: convert it on purpose "
                                                  f"(e.g. df[{col!r}].astype(int)) if true/false are meant as 1/0"))
    values = pd.to_numeric(raw, errors="coerce").astype(float).to_numpy()
    problems = []
    for label, v, r in zip(df.index, values, raw):
        if not np.isfinite(v):
            problems.append(Problem(WHERE, label, col, f"must be a finite number, got {r!r}"))
        elif integer and v != np.round(v):
            problems.append(Problem(WHERE, label, col, f"must be a whole number, got {r!r}"))
        elif minimum is not None and (v <= minimum if strictly else v < minimum):
            problems.append(Problem(WHERE, label, col, f"must be {'>' if strictly else '>='} {minimum:g}, got {r!r}"))
    if problems:
        raise DataError(problems)
    return values


def labels(df: pd.DataFrame, label: str | None) -> list[str]:
    if label is None:
        out = [str(i) for i in df.index]
    else:
        _check_columns(df, [label], "label")
        out = df[label].astype(str).tolist()
    if len(set(out)) != len(out):
        raise DataError(Problem(WHERE, None, label or "index", "row labels must be unique"))
    return out


def weights_array(df: pd.DataFrame, weights: str | Sequence[float] | None) -> np.ndarray:
    """0/1 weights on each row's log-likelihood (1 = included)."""
    if weights is None:
        return np.ones(len(df))
    w = numeric_column(df, weights) if isinstance(weights, str) else np.asarray(weights, dtype=float)
    if w.shape != (len(df),) or not np.isin(w, (0.0, 1.0)).all():
        raise InputError("weights must be 0 or 1 for each row")
    if w.sum() == 0:
        raise InputError("weights exclude every row; nothing left to fit")
    return w


def prepare_rows(df: pd.DataFrame, study: str, label: str | None, weights) -> tuple:
    """Study names (in order of first appearance), each row's study index, row labels and weights."""
    if df[study].isna().any():
        raise DataError(Problem(WHERE, df.index[df[study].isna().to_numpy()][0], study, "study is missing"))
    row_labels = labels(df, label)
    w = weights_array(df, weights)
    ids = df[study].astype(str).to_numpy()
    studies = list(pd.unique(ids))
    study_idx = np.array([studies.index(s) for s in ids], dtype=int)
    return studies, study_idx, row_labels, w
