"""nutpie's raw (Arrow) trace to an ``InferenceData`` with posterior and sample_stats.

The result holds the same variables, dimensions, coordinates and values as nutpie's own
conversion (``tests/test_trace.py`` compares them). nutpie builds its result through
``arviz.from_dict`` together with warm-up groups that are then dropped; building the two
groups directly costs a fraction of that, which matters when a sensitivity analysis
converts dozens of traces.
"""

from __future__ import annotations

from datetime import datetime, timezone

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

#: sample statistics nutpie keeps unless asked to store more (see ``nutpie.sample``)
_STORED_ONLY_ON_REQUEST = {"chain", "draw", "gradient", "unconstrained_draw", "mass_matrix_inv",
                           "mass_matrix_eigvals", "mass_matrix_stds", "divergence_start",
                           "divergence_end", "divergence_momentum", "divergence_start_gradient"}


def _meta(field, key: bytes) -> list[str]:
    value = (field.metadata or {}).get(key, b"")
    return value.decode("utf-8").split(",") if value else []


def _columns(tables, skip: set[str], optional: bool) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each column as (dims, array of shape (chain, draw, *shape)).

    A column with missing entries is left out when ``optional`` (a statistic nutpie was not
    asked to store) and is an error otherwise (a draw must never be missing)."""
    import pyarrow

    first = tables[0].schema
    out = {}
    for name in first.names:
        if name in skip:
            continue
        if any(table.column(name).null_count for table in tables):
            if optional:
                continue
            raise RuntimeError(f"nutpie returned a trace with missing draws of '{name}'")
        field = first.field(name)
        shape = tuple(int(s) for s in _meta(field, b"shape"))
        per_chain = []
        for table in tables:
            col = table.column(name)
            if pyarrow.types.is_list(col.type) or pyarrow.types.is_large_list(col.type):
                col = col.flatten()
            per_chain.append(col.to_numpy(zero_copy_only=False).reshape((table.num_rows, *shape)))
        out[name] = (_meta(field, b"dims"), np.stack(per_chain))
    return out


def draws_dataset(columns: dict[str, tuple[list[str], np.ndarray]], coords, attrs: dict | None = None) -> xr.Dataset:
    """A group of draws from ``{name: (dims, array of shape (chain, draw, *shape))}``; a
    variable without dims gets ``<name>_dim_<i>``, and ``coords`` supply the named ones."""
    data, used = {}, {}
    for name, (dims, values) in columns.items():
        dims = list(dims) or [f"{name}_dim_{i}" for i in range(values.ndim - 2)]
        data[name] = (["chain", "draw", *dims], values)
        used.update({d: coords[d] for d in dims if d in coords})
    n_chain, n_draw = next(iter(data.values()))[1].shape[:2]
    used.update({"chain": np.arange(n_chain), "draw": np.arange(n_draw)})
    return xr.Dataset(data, coords=used, attrs=attrs or {})


def trace_to_inference_data(raw, compiled) -> az.InferenceData:
    """Posterior and sample_stats (warm-up rows dropped) of a nutpie raw trace."""
    import pyarrow

    draw_batches, stat_batches = raw.get_arrow_trace()
    stats = [pyarrow.record_batch(b) for b in stat_batches]
    tuning = [s.column("tuning").to_numpy(zero_copy_only=False) for s in stats]
    if len({int((~t).sum()) for t in tuning}) != 1 or not all(t[: int(t.sum())].all() for t in tuning):
        raise RuntimeError("nutpie returned chains of unequal length (an interrupted run?)")

    def posterior_rows(batches):
        return [pyarrow.record_batch(b).slice(int(t.sum())) for b, t in zip(batches, tuning)]

    draws = _columns(posterior_rows(draw_batches), set(), optional=False)
    sample_stats = _columns(posterior_rows(stats), _STORED_ONLY_ON_REQUEST, optional=True)
    coords = {name: pd.Index(values) for name, values in compiled.coords.items()}
    attrs = {"created_at": datetime.now(timezone.utc).isoformat(), "arviz_version": az.__version__,
             "inference_library": "nutpie"}
    return az.InferenceData(posterior=draws_dataset(draws, coords, attrs),
                            sample_stats=draws_dataset(sample_stats, coords, attrs))
