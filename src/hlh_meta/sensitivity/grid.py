"""The sensitivity grid: the primary analysis and every declared variant, planned, grouped and run."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..analyses import analysis_for, as_spec
from ..analyses.base import PRIMARY
from ..analyses.frames import frames_kept
from ..data import Dataset, as_dataset
from ..spec import Spec
from .executors import run_groups
from .runner import COLUMNS, plan


def run_sensitivity(spec: Spec | str, ds: Dataset | str | None = None,
                    progress: Callable[[int, int, str], None] | None = None,
                    executor: str = "processes", workers: int | None = None, scheduler=None,
                    alongside: Callable[[], object] | None = None) -> pd.DataFrame:
    """Primary analysis and every declared variant: one row per variant and quantity.

    Variants are checked (names, studies, families) and planned before any sampling. A
    variant that leaves nothing to fit is kept as a row saying so. Variants are grouped by
    model structure and each group runs in one worker, so no structure is compiled twice
    in a worker; the same seeds give the same numbers whichever executor runs them (to the last
    bits of compiled arithmetic, which in some runs differ between processes).

    Parameters
    ----------
    spec : Spec or str
        The analysis spec, or its file's path.
    ds : Dataset, str or None, optional
        The data: a Dataset, a path of tables, or None (default) for the bundled data.
    progress : callable, optional
        ``progress(i, n, variant)``, called as variants start.
    executor : {"processes", "serial", "dask"}, default "processes"
        ``"serial"``, ``"processes"`` (local cores: the primary analysis's group runs in
        this process, the others in ``workers`` worker processes) or ``"dask"`` (on a Dask
        distributed cluster).
    workers : int, optional
        Worker processes of the ``"processes"`` executor; by default one per ``chains``
        cores beyond the first ``chains``, as each fit samples its chains in parallel, so
        none on a small machine, where every group runs here in turn.
    scheduler : str or distributed.Client, optional
        For the ``"dask"`` executor: the address of a Dask distributed scheduler, or a
        ``distributed.Client``.
    alongside : callable, optional
        Runs in this process while the workers start on their groups
        (:func:`hlh_meta.run_analysis` runs the primary analysis there); if it returns
        the primary analysis's InferenceData, the primary variant uses it instead of
        fitting it again (with the serial and local-process executors).

    Returns
    -------
    pandas.DataFrame
        One row per variant and quantity: the quantity's id (:class:`~hlh_meta.analyses.QuantityId`
        as a string), variant, family, quantity, posterior summary
        (mean, sd, median, 95% interval, probabilities of the clinical conclusions), its
        summary on the unbounded scale, studies, diagnostics, a note and the seconds taken.

    Raises
    ------
    hlh_meta.SpecError
        For bad variant declarations in the spec.
    hlh_meta.InputError
        For a bad ``executor``, ``workers`` or ``scheduler``.
    """
    spec = as_spec(spec)
    ds = as_dataset(ds)
    analysis = analysis_for(spec)
    with frames_kept():                   # the primary's frame built once for resolving, planning and its fit
        spec = analysis.resolve(ds, spec)
        variants = [PRIMARY] + analysis.expand_variants(ds, spec)
        planned = plan(spec, ds, variants)
    frames = run_groups(spec, planned, executor=executor, workers=workers, scheduler=scheduler, progress=progress,
                        alongside=alongside)
    return pd.concat(frames, ignore_index=True).reindex(columns=["id"] + COLUMNS + ["seconds"])
