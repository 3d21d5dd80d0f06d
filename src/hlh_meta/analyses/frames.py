"""One analysis frame per dataset and spec within a run.

Building an analysis frame (the rows entering the model, and why the others do not) reads
and resolves every table; one run asks for the same frame several times (the checks
before any sampling, the reference levels, the fit, the memory estimate). Inside
:func:`frames_kept` each analysis type's ``frame`` is computed once per dataset and spec
content and handed out as copies; outside it, every call computes the frame, as a caller
that changes a dataset between calls expects.
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


def kept(frame: Callable) -> Callable:
    """An analysis type's ``frame(self, ds, spec)`` computed once within :func:`frames_kept`."""
    @functools.wraps(frame)
    def cached(self, ds, spec) -> tuple[pd.DataFrame, pd.DataFrame]:
        memo = _KEPT.get()
        if memo is None:
            return frame(self, ds, spec)
        key = (type(self), id(ds), str(spec.path), json.dumps(spec.raw, sort_keys=True, default=repr))
        hit = memo.get(key)
        if hit is None or hit[0] is not ds:       # the dataset is held, so its id is not reused meanwhile
            used, left = frame(self, ds, spec)
            hit = memo[key] = (ds, used, left)
        return hit[1].copy(), hit[2].copy()

    return cached
