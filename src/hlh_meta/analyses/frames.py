"""One analysis frame (and one list of sensitivity variants) per dataset and spec within a run.

Building an analysis frame (the rows entering the model, and why the others do not) reads
and resolves every table; one run asks for the same frame several times (the checks
before any sampling, the reference levels, the fit, the memory estimate). Inside
:func:`frames_kept` each analysis type's ``frame`` is computed once per dataset and spec
content and handed out as copies; outside it, every call computes the frame, as a caller
that changes a dataset between calls expects. The list of sensitivity variants, which
builds a frame for each alternative reading of the judgements, is kept the same way.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import pandas as pd

_KEPT: ContextVar[dict | None] = ContextVar("hlh_meta_frames", default=None)


@contextmanager
def frames_kept() -> Iterator[None]:
    """Within this block (and blocks nested in it) frames are computed once per analysis
    type, dataset and spec content."""
    if _KEPT.get() is not None:
        yield
        return
    token = _KEPT.set({})
    try:
        yield
    finally:
        _KEPT.reset(token)


def _once(key, ds, compute: Callable):
    """``compute()``, once per ``key`` and dataset ``ds`` within :func:`frames_kept` (every
    call outside it)."""
    memo = _KEPT.get()
    if memo is None:
        return compute()
    key = (key, id(ds))
    hit = memo.get(key)
    if hit is None or hit[0] is not ds:           # the dataset is held, so its id is not reused meanwhile
        hit = memo[key] = (ds, compute())
    return hit[1]


def _kept_call(what: str, owner, ds, spec, compute: Callable):
    """``compute()``, once per ``what``, analysis type, dataset and spec content within
    :func:`frames_kept` (every call outside it)."""
    if _KEPT.get() is None:
        return compute()
    return _once((what, type(owner), str(spec.path), json.dumps(spec.raw, sort_keys=True, default=repr)), ds, compute)


def kept_for_dataset(what, ds, compute: Callable):
    """``compute()``, once per ``what`` (a hashable naming it and its options) and dataset
    within :func:`frames_kept` (every call outside it): for a step that reads the dataset
    alone, such as resolving the mortality strata, which every variant's frame repeats."""
    return _once(("dataset", what), ds, compute)


def kept(frame: Callable) -> Callable:
    """An analysis type's ``frame(self, ds, spec)`` computed once within :func:`frames_kept`."""
    @functools.wraps(frame)
    def cached(self, ds, spec) -> tuple[pd.DataFrame, pd.DataFrame]:
        used, left = _kept_call("frame", self, ds, spec, lambda: frame(self, ds, spec))
        return used.copy(), left.copy()

    return cached


def kept_list(method: Callable) -> Callable:
    """An analysis type's ``method(self, ds, spec)`` returning a list (of immutable items, e.g.
    the sensitivity variants) computed once within :func:`frames_kept`; each call gets its own list."""
    @functools.wraps(method)
    def cached(self, ds, spec) -> list:
        return list(_kept_call(method.__name__, self, ds, spec, lambda: method(self, ds, spec)))

    return cached
