"""nutpie's raw (Arrow) trace to an ``InferenceData`` with posterior and sample_stats.

The result holds the same variables, dimensions, coordinates and values as nutpie's own
conversion (``tests/test_trace.py`` compares them). nutpie builds its result through
``arviz.from_dict`` together with warm-up groups that are then dropped; building the two
groups directly costs a fraction of that, which matters when a sensitivity analysis
converts dozens of traces.

The raw trace is not a documented format. Before converting, its shape is checked (per
chain an Arrow table of draws and one of statistics, of equal length, a boolean
``tuning`` column whose true rows come first, integer ``shape`` metadata); a trace laid
out otherwise raises :class:`TraceFormatError`, naming the nutpie releases this works
with. :func:`sample_to_inference_data` samples and converts, and falls back to nutpie's
public conversion (one :class:`TraceFallbackWarning` per process) where the installed
nutpie is not a tested release or its raw trace does not match.

A trace cut short by Ctrl-C (nutpie returns what it has) raises
:class:`~hlh_meta.errors.SamplingInterrupted` instead of being converted.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import SamplingInterrupted, warn_once
from .callbacks import TESTED_NUTPIE, nutpie_untested, public_only


class TraceFormatError(RuntimeError):
    """nutpie's raw trace is not laid out as this module reads it."""

    def __init__(self, what: str):
        self.what = what
        try:
            import nutpie

            installed = nutpie.__version__
        except Exception:  # noqa: BLE001
            installed = "unknown"
        super().__init__(f"nutpie's raw trace does not look as expected ({what}); the direct conversion works "
                         f"with nutpie {TESTED_NUTPIE}, installed is {installed}. Install a tested nutpie "
                         f"release (pip install 'nutpie{TESTED_NUTPIE}') or sample through "
                         "sample_to_inference_data, which uses nutpie's own conversion then")


class TraceFallbackWarning(UserWarning):
    """nutpie's own trace conversion is used: same draws, slower conversion."""

#: sample statistics nutpie keeps unless asked to store more (see ``nutpie.sample``)
_STORED_ONLY_ON_REQUEST = {"chain", "draw", "gradient", "unconstrained_draw", "mass_matrix_inv",
                           "mass_matrix_eigvals", "mass_matrix_stds", "divergence_start",
                           "divergence_end", "divergence_momentum", "divergence_start_gradient"}


def _meta(field, key: bytes) -> list[str]:
    value = (field.metadata or {}).get(key, b"")
    return value.decode("utf-8").split(",") if value else []


def _shape(field) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in _meta(field, b"shape"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TraceFormatError(f"column '{field.name}' has shape metadata that is not whole numbers") from exc
    if any(s < 0 for s in shape):
        raise TraceFormatError(f"column '{field.name}' has a negative size in its shape metadata")
    return shape


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
            raise TraceFormatError(f"missing draws of '{name}'")
        field = first.field(name)
        shape = _shape(field)
        per_chain = []
        for table in tables:
            col = table.column(name)
            if pyarrow.types.is_list(col.type) or pyarrow.types.is_large_list(col.type):
                col = col.flatten()
            values = col.to_numpy(zero_copy_only=False)
            if values.size != table.num_rows * int(np.prod(shape, dtype=np.int64)):
                raise TraceFormatError(f"column '{name}' holds {values.size} values, not {table.num_rows} "
                                       f"draws of shape {shape}")
            per_chain.append(values.reshape((table.num_rows, *shape)))
        out[name] = (_meta(field, b"dims"), np.stack(per_chain))
    return out


def _batches(raw) -> tuple[list, list]:
    """The per-chain Arrow tables of draws and statistics, checked for the layout read here."""
    import pyarrow

    get = getattr(raw, "get_arrow_trace", None)
    if not callable(get):
        raise TraceFormatError(f"a {type(raw).__name__} has no get_arrow_trace()")
    try:
        result = get()
        draw_batches, stat_batches = result
        draws = [pyarrow.record_batch(b) for b in draw_batches]
        stats = [pyarrow.record_batch(b) for b in stat_batches]
    except TraceFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything unexpected here is a format mismatch
        raise TraceFormatError(f"get_arrow_trace() did not give per-chain Arrow tables of draws and statistics "
                               f"({type(exc).__name__}: {exc})") from exc
    if not draws or len(draws) != len(stats):
        raise TraceFormatError(f"{len(draws)} tables of draws and {len(stats)} of statistics")
    for chain, (d, st) in enumerate(zip(draws, stats)):
        if d.num_rows != st.num_rows:
            raise TraceFormatError(f"chain {chain} has {d.num_rows} draws and {st.num_rows} rows of statistics")
        if not d.schema.equals(draws[0].schema, check_metadata=True) or not st.schema.equals(stats[0].schema):
            raise TraceFormatError(f"chain {chain} has other columns than chain 0")
        if "tuning" not in st.schema.names or not pyarrow.types.is_boolean(st.schema.field("tuning").type):
            raise TraceFormatError("the statistics have no boolean 'tuning' column")
    return draws, stats


def _posterior_lengths(stats) -> tuple[list[int], list[int]]:
    """Warm-up and posterior rows of each chain; warm-up rows must come first."""
    tune, post = [], []
    for chain, st in enumerate(stats):
        col = st.column("tuning")
        if col.null_count:
            raise TraceFormatError(f"chain {chain} has missing 'tuning' entries")
        t = col.to_numpy(zero_copy_only=False).astype(bool)
        k = int(t.sum())
        if not t[:k].all():
            raise TraceFormatError(f"chain {chain} has warm-up rows after posterior rows")
        tune.append(k)
        post.append(len(t) - k)
    return tune, post


def draws_dataset(columns: dict[str, tuple[list[str], np.ndarray]], coords, attrs: dict | None = None) -> xr.Dataset:
    """A group of draws from ``{name: (dims, array of shape (chain, draw, *shape))}``; a
    variable without dims gets ``<name>_dim_<i>``, and ``coords`` supply the named ones. A
    dimension without coordinates in ``coords`` gets 0, 1, 2, ... (as ArviZ gives it)."""
    data, used = {}, {}
    for name, (dims, values) in columns.items():
        dims = list(dims) or [f"{name}_dim_{i}" for i in range(values.ndim - 2)]
        data[name] = (["chain", "draw", *dims], values)
        used.update({d: coords[d] if d in coords else np.arange(size) for d, size in zip(dims, values.shape[2:])})
    n_chain, n_draw = next(iter(data.values()))[1].shape[:2]
    used.update({"chain": np.arange(n_chain), "draw": np.arange(n_draw)})
    return xr.Dataset(data, coords=used, attrs=attrs or {})


def trace_to_inference_data(raw, compiled, *, draws: int | None = None,
                            chains: int | None = None) -> az.InferenceData:
    """Posterior and sample_stats (warm-up rows dropped) of a nutpie raw trace.

    ``draws`` and ``chains``, the numbers asked of the sampler, let an interrupted run be
    told from a finished one for sure; without them a run is taken as interrupted when its
    chains differ in length or hold no posterior draw. Raises
    :class:`~hlh_meta.errors.SamplingInterrupted` for an interrupted run and
    :class:`TraceFormatError` for a trace not laid out as the tested nutpie releases write it."""
    draw_batches, stats = _batches(raw)
    tune, post = _posterior_lengths(stats)
    if draws is not None and any(p > draws for p in post):
        raise TraceFormatError(f"posterior draws per chain {post}, more than the {draws} asked for")
    if (draws is not None and any(p < draws for p in post)) or (chains is not None and len(post) < chains) \
            or len(set(post)) != 1 or post[0] == 0:
        raise SamplingInterrupted(post, draws)

    draws_ = _columns([b.slice(k) for b, k in zip(draw_batches, tune)], set(), optional=False)
    sample_stats = _columns([b.slice(k) for b, k in zip(stats, tune)], _STORED_ONLY_ON_REQUEST, optional=True)
    coords = {name: pd.Index(values) for name, values in compiled.coords.items()}
    attrs = {"created_at": datetime.now(timezone.utc).isoformat(), "arviz_version": az.__version__,
             "inference_library": "nutpie"}
    try:
        return az.InferenceData(posterior=draws_dataset(draws_, coords, attrs),
                                sample_stats=draws_dataset(sample_stats, coords, attrs))
    except (ValueError, KeyError) as exc:
        raise TraceFormatError(f"the columns do not fit their dims metadata ({exc})") from exc


def _warn_once(reason: str) -> None:
    warn_once("trace", f"hlh_meta converts nutpie's traces with nutpie's own conversion ({reason}); the draws are "
              "the same, the conversion is slower", TraceFallbackWarning, stacklevel=3)


def _public(idata: az.InferenceData, draws: int, chains: int) -> az.InferenceData:
    """The posterior and sample_stats of nutpie's own conversion, checked for interruption
    (nutpie pads chains cut short with NaN)."""
    post, stats = idata.posterior, idata.sample_stats
    if "logp" in stats:
        done = [int(n) for n in np.isfinite(stats["logp"].values).sum(axis=1)]
    else:
        done = [int(stats.sizes.get("draw", 0))] * int(stats.sizes.get("chain", 0))
    if post.sizes.get("chain", 0) < chains or len(done) < chains or any(n < draws for n in done):
        raise SamplingInterrupted(done, draws)
    return az.InferenceData(posterior=post, sample_stats=stats)


def sample_to_inference_data(compiled, *, draws: int, tune: int, chains: int, seed=None, **kwargs) -> az.InferenceData:
    """``nutpie.sample(compiled, ...)`` (no warm-up kept) as posterior and sample_stats.

    Converts nutpie's raw trace directly where the installed nutpie is a tested release and
    its trace has the expected layout; otherwise samples again with the same seed through
    nutpie's public conversion (the same draws) and warns once per process; with
    ``HLH_META_PUBLIC_ONLY=1`` (:func:`~hlh_meta.inference.callbacks.public_only`) it samples
    through the public conversion directly, without a warning. Raises
    :class:`~hlh_meta.errors.SamplingInterrupted` when Ctrl-C cut sampling short."""
    import nutpie

    kwargs.pop("return_raw_trace", None)
    args = {**kwargs, "draws": draws, "tune": tune, "chains": chains, "seed": seed, "save_warmup": False}
    quiet = public_only()                    # the public conversion was asked for: nothing to warn about
    reason = None if quiet else nutpie_untested()
    if reason is None and not quiet:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            raw = nutpie.sample(compiled, **args, return_raw_trace=True)
        try:
            return trace_to_inference_data(raw, compiled, draws=draws, chains=chains)
        except TraceFormatError as exc:
            reason = f"the raw trace does not look as expected: {exc.what}"
    if reason is not None:
        _warn_once(reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        idata = nutpie.sample(compiled, **args)
    return _public(idata, draws, chains)
