"""One analysis from a spec to its result: the primary analysis, and with ``sensitivity=True``
every declared variant and the robustness judgement. ``hlh-meta fit`` and ``hlh-meta
sensitivity`` call this and write what it returns."""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .analyses import analysis_for, as_spec
from .analyses.base import PRIMARY
from .analyses.frames import frames_kept
from .data import Dataset, as_dataset
from .errors import skip_final_collection
from .freshness import fingerprint, library_versions
from .models.engine import compile_model
from .models.posterior import diagnostics_of
from .result import AnalysisResult
from .sensitivity import robustness, run_sensitivity
from .sensitivity.executors import ignore_interrupts, worker_start, workers_started
from .spec import Spec

PACKAGES = ("hlh-meta", "pymc", "pytensor", "nutpie", "arviz", "numpy", "scipy", "pandas", "xarray", "pandera")


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **library_versions(PACKAGES)}


def run_analysis(spec: Spec | str | Path, ds: Dataset | str | Path | None = None, *, sensitivity: bool = False,
                 progress: Callable[[int, int, str], None] | None = None, executor: str = "processes",
                 workers: int | None = None, scheduler=None, compare: bool = False,
                 step: Callable[[str], None] | None = None) -> AnalysisResult:
    """Run the analysis a spec describes on a dataset.

    With ``sensitivity=True`` the result also holds the ``sensitivity`` and ``robustness``
    tables (the variants the spec's ``[sensitivity]`` declares): the same result
    ``hlh-meta sensitivity`` writes. The spec, the data and the request are checked
    before any sampling.

    Parameters
    ----------
    spec : Spec, str or pathlib.Path
        A spec file's path or a Spec (:func:`hlh_meta.load_spec`).
    ds : Dataset, str, pathlib.Path or None, optional
        The data: a Dataset, a path read with :func:`hlh_meta.read_dataset`, or None
        (default) for the bundled data.
    sensitivity : bool, default False
        Also run every declared sensitivity variant and judge robustness.
    progress : callable, optional
        ``progress(i, n, variant)``, called as variants start.
    executor : {"processes", "serial", "dask"}, default "processes"
        How the variants run, as in :func:`hlh_meta.sensitivity.run_sensitivity`.
    workers : int, optional
        Worker processes of the ``"processes"`` executor.
    scheduler : str or distributed.Client, optional
        The Dask scheduler of the ``"dask"`` executor.
    compare : bool, default False
        Also compare the spec's ``[comparison] covariate_sets`` by leave-one-study-out
        cross-validation (``comparison.csv``), a step after the primary fit (the manifest
        records ``"compared"``). :meth:`AnalysisResult.compare` adds it to a result later,
        from the draws the result holds.
    step : callable, optional
        ``step(text)``, called as each phase of the primary analysis starts (sampling,
        each covariate set's fit and refits).

    Returns
    -------
    AnalysisResult
        The posterior, derived quantities, tables and manifest; write it with
        :meth:`AnalysisResult.save`.

    Raises
    ------
    TypeError
        If ``spec`` or ``ds`` is of a type not listed above.
    hlh_meta.SpecError
        For a bad spec (priors, report keys, sensitivity declarations), naming the file
        and key.
    hlh_meta.DataError
        For tables that fail validation or rows that cannot enter the model.
    hlh_meta.InputError
        For other bad input, e.g. sampler settings that do not fit in this machine's
        memory or a bad executor.
    """
    spec = as_spec(spec)                     # a path or a Spec; anything else is a TypeError saying so
    ds = as_dataset(ds)                      # a Dataset, a path of tables (read and checked) or None: the bundled data
    analysis = analysis_for(spec)
    analysis.check_spec(spec)                # bad priors or report keys name the spec file and key, before any work
    # a sensitivity run's worker processes start now, importing while the variants are planned
    early = workers_started(spec, executor, workers) if sensitivity else nullcontext()
    with early, ds.named_as_given(), frames_kept():  # a workbook's sheets named in errors; each frame built once
        spec = analysis.resolve(ds, spec)    # what the data decide (reference levels), the same for every variant
        analysis.check_request(ds, spec, sensitivity)   # chains, draws and tune within the machine's memory
        started = time.perf_counter()
        done = {}

        def primary():
            done["analysed"] = analysis.run(ds, spec, compare=compare, step=step)
            done["seconds"] = time.perf_counter() - started
            return done["analysed"].idata      # the primary variant's fit: not sampled twice

        tables = {}
        if sensitivity:
            analysis.expand_variants(ds, spec)   # bad variant declarations fail before any sampling
            sens = run_sensitivity(spec, ds, progress=progress, alongside=primary, executor=executor,
                                   workers=workers, scheduler=scheduler)
            support = {str(q.id): q.label_support for q in done["analysed"].quantities}
            tables = {"sensitivity": sens, "robustness": robustness(sens, support)}
        else:
            primary()
    analysed = done["analysed"]
    tables = {**analysed.tables, **tables}
    timings = {"total": round(done["seconds"], 3)}
    if sensitivity:    # wall time of the primary analysis and the variants together (they may overlap)
        timings["sensitivity"] = round(time.perf_counter() - started, 3)
    manifest = {
        "analysis": spec.name,
        "kind": spec.kind,
        "title": spec.title,
        "spec_file": str(spec.path),
        "spec": spec.raw,
        "seed": analysis.settings(spec).seed,
        "data_dir": str(ds.path),
        "data_sha256": ds.sha256,
        "versions": versions(),
        "timings_s": timings,
        "diagnostics": json.loads(diagnostics_of(analysed.idata).to_json()),
        "tables": list(tables),
        "compared": bool(compare),
    }
    if spec.path is not None and Path(spec.path).is_file():     # what `hlh-meta run` compares to skip a fresh folder
        manifest.update(fingerprint(Path(spec.path), ds.sha256))
    return AnalysisResult(spec.name, spec.kind, spec.title, analysed.idata, tables, analysed.quantities, manifest)


#: how much lower the background compile process's scheduling priority is (``os.nice``): where
#: cores are short, the analysis this process runs (its compile, then its sampling) goes first,
#: as it is waited for now and the background's compiles only later. On a 2-core AMD EPYC VM
#: the first ``hlh-meta run`` on an empty compile cache took 50.7 s instead of 54.6 s with it
BACKGROUND_NICE = 10


def lower_priority(by: int = BACKGROUND_NICE) -> None:
    """Lower this process's scheduling priority by ``by`` (and so its children's), where the
    platform allows it (``os.nice``); nothing otherwise."""
    try:
        os.nice(by)
    except (AttributeError, OSError):        # no os.nice (Windows), or not permitted
        pass


def _compile_in_turn(specs: list[Spec], ds: Dataset, done: list) -> None:
    """Worker process: compile the primary fit's models of each spec in turn (nothing is
    sampled or written), setting each spec's event when it is done or has failed; a spec
    that fails here fails again, with its message, where the analysis runs."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pytensor").setLevel(logging.ERROR)
    ignore_interrupts()                      # Ctrl-C is for the calling process, which stops this one
    skip_final_collection()
    lower_priority()
    for spec, event in zip(specs, done):
        try:
            analysis = analysis_for(spec)
            resolved = analysis.resolve(ds, spec)
            compile_model(analysis.variant_inputs(ds, resolved, PRIMARY), analysis.settings(resolved))
        except Exception:  # noqa: BLE001 - reported when the analysis itself runs
            pass
        finally:
            event.set()


class CompileAhead:
    """While this process runs analyses one after another, a background process compiles
    the models of all but the first, in order, into the machine's compile cache; the model
    of an analysis then loads from the cache (seconds) instead of compiling (up to a
    minute on a first run). :meth:`wait` before running an analysis waits for its compile.

    Used as a context manager; does nothing with fewer than two analyses or one core. The
    background process is stopped when the block ends (its compiles are only a head start).
    """

    def __init__(self, specs: Sequence[Spec], ds: Dataset) -> None:
        self._events: dict[str, Any] = {}
        self._process = None
        later = list(specs)[1:]
        if not later or (os.cpu_count() or 1) < 2:
            return
        ctx = multiprocessing.get_context("spawn")     # not fork: this process may hold sampler threads
        events = [ctx.Event() for _ in later]
        process = ctx.Process(target=_compile_in_turn, args=(later, ds, events), daemon=True)
        try:
            with worker_start():                        # hlh_meta, not the caller's main module; no Ctrl-C while it imports
                process.start()
        except Exception:  # noqa: BLE001 - only a head start: without it each analysis compiles its own
            return
        self._events = {spec.name: event for spec, event in zip(later, events)}
        self._process = process

    def pending(self, spec: Spec) -> bool:
        """Whether ``spec``'s models are still compiling in the background process."""
        event = self._events.get(spec.name)
        return event is not None and not event.is_set() and self._process is not None and self._process.is_alive()

    def wait(self, spec: Spec) -> None:
        """Return once ``spec``'s models are compiled (or their compile failed or stopped)."""
        event = self._events.get(spec.name)
        while event is not None and not event.wait(0.2) and self._process.is_alive():  # type: ignore[union-attr]
            pass

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join()

    def __enter__(self) -> "CompileAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: figure kinds drawn by the background process of a :class:`FigureDrawer` (about half the
#: drawing time: ArviZ's density and rank plots, the prior-posterior densities, the posterior
#: predictive check, the shrinkage plot and the sensitivity panels); this process writes the
#: posterior, tables and workbook and draws the others meanwhile
DRAWN_AWAY = ("trace", "prior_posterior", "ppc", "shrinkage", "sensitivity")
#: kinds drawn here instead when the sensitivity panels go to the background process: the panels
#: of the bundled mortality sensitivity analysis take about 5 s to draw and save, as long as the
#: rest of the background process's figures, and the trace plot (about 2 s) evens the two halves
KEPT_WITH_SENSITIVITY = ("trace",)


def drawn_away(kinds: list[str]) -> list[str]:
    """Which of a result's figure kinds the background process draws (:data:`DRAWN_AWAY`, less
    :data:`KEPT_WITH_SENSITIVITY` where the sensitivity panels are among them)."""
    away = [k for k in kinds if k in DRAWN_AWAY]
    if "sensitivity" in away:
        away = [k for k in away if k not in KEPT_WITH_SENSITIVITY]
    return away


def _load_figures() -> None:
    """In the background process: matplotlib, ArviZ and the figures loaded before the first result comes."""
    from .report import figures  # noqa: F401


def _draw_away(result: AnalysisResult, folder: str, names: list[str]) -> None:
    from .report.figures import save_figures

    save_figures(result, Path(folder), names, make_folder=False)    # the folder is gone if the save was abandoned


class FigureDrawer:
    """A background process that draws and saves some figures of each results folder
    (those of the kinds :func:`drawn_away` picks) while this process writes the posterior,
    tables, workbook and the other figures (:meth:`AnalysisResult.save` with ``drawer``).

    It starts as it is made, so it has loaded matplotlib and ArviZ by the time the first
    result is written; with one core it does nothing. A figure its process failed to draw
    (it died, or drawing raised) is drawn in this process: the same figure, or the same error
    raised here. Used as a context manager; the process is stopped when the block ends.
    """

    def __init__(self) -> None:
        self._pool = None
        if (os.cpu_count() or 1) < 2:
            return
        from .sensitivity.executors import submit, worker_pool

        try:
            pool = worker_pool(1)
            submit(pool, _load_figures)
        except Exception:  # noqa: BLE001 - only a head start: without it every figure is drawn here
            return
        self._pool = pool

    def hand(self, result: AnalysisResult, folder: Path) -> tuple[list[str], Any] | None:
        """Start drawing ``result``'s figures of the kinds :func:`drawn_away` picks into ``folder``
        (which exists); returns their names and the pending work, or None (nothing handed)."""
        from .report.figures import figure_specs
        from .sensitivity.executors import submit

        if self._pool is None:
            return None
        specs = figure_specs(result)
        away = drawn_away([s.kind for s in specs])
        names = [s.name for s in specs if s.kind in away]
        if not names:
            return None
        try:
            return names, submit(self._pool, _draw_away, result, str(folder), names)
        except Exception:  # noqa: BLE001 - a pool that no longer takes work: drawn here
            self.close()
            return None

    def collect(self, handed: tuple[list[str], Any], result: AnalysisResult, folder: Path) -> None:
        """Wait for handed figures; those the process did not draw are drawn here."""
        from concurrent.futures.process import BrokenProcessPool

        from .report.figures import save_figures

        names, future = handed
        try:
            future.result()
            return
        except BrokenProcessPool:                    # the process died (killed, out of memory): none are left to it
            self.close()
        except Exception:  # noqa: BLE001 - drawn again here, which raises the error here if it is the figure's
            pass
        save_figures(result, folder, names)

    def abandon(self, handed: tuple[list[str], Any]) -> None:
        """The save was abandoned (an error or interrupt here): stop the process before the
        folder it writes in is removed; a later save draws every figure here."""
        if not handed[1].done():
            self.close()

    def close(self) -> None:
        from .sensitivity.executors import stop_workers

        if self._pool is not None:
            stop_workers(self._pool)
            self._pool = None

    def __enter__(self) -> "FigureDrawer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
