"""A set of analyses, from spec files to results folders (:func:`run_all`): what ``hlh-meta
run``, ``fit`` and ``sensitivity`` do, less parsing arguments and printing.

Every spec is checked before any analysis samples; an analysis whose folder is up to date,
or that no row of the tables can enter, is skipped and said so; the output locations are
checked and the leftovers of killed runs removed before any sampling; the analyses run in
the order given, those of the heaviest compile first (``compile_weight`` of their type), and
while one runs, a background process compiles the later ones' models
(:class:`hlh_meta.pipeline.CompileAhead`). Progress and notices reach the caller as events
(``on_event(kind, name, text)``, the kinds in :data:`EVENTS`).

The modelling stack (PyMC and the analyses) is imported only once some analysis is to run:
a run that finds every folder up to date does not import it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from .data import Dataset, as_dataset
from .data.dataset import bundled_data_dir, table_digests
from .errors import SpecError
from .freshness import record_skip, skipped_before, up_to_date
from .spec import Spec, bundled_specs_dir
from .workers import started_ahead, workers_for

if TYPE_CHECKING:
    from .pipeline import CompileAhead
    from .result import AnalysisResult

__all__ = ["COMPILING", "EVENTS", "STATUSES", "RunOutcome", "compare_saved", "run_all"]

#: the kinds of event :func:`run_all` reports, in the order they can occur for one analysis
EVENTS = ("up to date", "compared already", "no usable rows (unchanged)", "no usable rows", "leftover", "step", "compiling",
          "compiled", "variant", "analysed", "written")
#: what becomes of a spec (:attr:`RunOutcome.status`)
STATUSES = ("written", "up to date", "no usable rows")
#: the text of a ``"compiling"`` event
COMPILING = "compiling the model (first time on this machine: up to a minute)…"

SpecLike = Union[str, Path, Spec]
Listener = Callable[[str, str, str], None]


@dataclass(frozen=True)
class RunOutcome:
    """What became of one spec in :func:`run_all`.

    Parameters
    ----------
    name : str
        The analysis's name (``[analysis] name``), which names its results folder.
    folder : pathlib.Path
        Its results folder, ``out/name``.
    status : {"written", "up to date", "no usable rows"}
        ``"written"``: the analysis ran and its folder was written. ``"up to date"``: the
        folder had been written from the same spec file, tables, hlh-meta code and
        libraries, and was left as it was. ``"no usable rows"``: no row of the tables can
        enter the analysis, so it was skipped and nothing was written.
    result : AnalysisResult or None, optional
        The result written (None unless ``status`` is ``"written"``).
    seconds : float or None, optional
        Wall time of the analysis, with its sensitivity variants, as its manifest records
        (None unless it ran).
    diagnostics_passed : bool or None, optional
        Whether the diagnostics gate passed (None unless it ran).
    """

    name: str
    folder: Path
    status: str
    result: AnalysisResult | None = None
    seconds: float | None = None
    diagnostics_passed: bool | None = None


def run_all(specs: SpecLike | Iterable[SpecLike] | None = None, data: Dataset | str | Path | None = None,
            out: str | Path = "results", *, force: bool = False, compare: bool = False, sensitivity: bool = False,
            skip_empty: bool | None = None, skip_fresh: bool = True, executor: str = "processes",
            workers: int | None = None, scheduler=None, on_event: Listener | None = None,
            terms: str = "python") -> list[RunOutcome]:
    """Run a set of analyses and write a results folder for each: ``hlh-meta run``.

    In order: the specs whose folder is up to date are set aside (``skip_fresh``); the
    tables are read; every other spec is checked (keys, priors, sampler settings, its rows,
    its variants with ``sensitivity``, the memory its draws need), so that a bad one fails
    before any analysis samples or anything is written; an analysis no row of the tables
    can enter is skipped (``skip_empty``); each output location is checked and leftovers of
    killed runs beside it removed; then each analysis runs and its folder is written
    (:func:`hlh_meta.run_analysis`, :meth:`AnalysisResult.save`), while a background
    process compiles the later analyses' models.

    Parameters
    ----------
    specs : str, pathlib.Path, Spec, or an iterable of them, optional
        The spec files (or Specs, :func:`hlh_meta.load_spec`). Default: every spec bundled
        with the package (``models/*.toml``: mortality, biomarkers, comparison).
    data : Dataset, str, pathlib.Path or None, optional
        The tables: a Dataset, a folder of tables or a workbook (read with
        :func:`hlh_meta.read_dataset`), or None (default) for the bundled data.
    out : str or pathlib.Path, default "results"
        The folder that receives a results folder per analysis, ``out/<name>``.
    force : bool, default False
        Replace existing results folders and run every analysis, up to date or not.
        Without it an existing folder that is not up to date is refused before any
        sampling (:class:`hlh_meta.errors.ResultsExistError`).
    compare : bool, default False
        Also compare each spec's covariate sets by leave-one-study-out cross-validation, as
        in :func:`hlh_meta.run_analysis` (:func:`compare_saved` adds the comparison to a
        folder later). With it, a folder written without the comparison is not up to date.
    sensitivity : bool, default False
        Also run every declared sensitivity variant (``hlh-meta sensitivity``).
    skip_empty : bool or None, optional
        Skip an analysis no row of the tables can enter (an ``"no usable rows"`` event and
        outcome) instead of refusing it with :class:`hlh_meta.SpecError`. Default: skip
        with the bundled specs (``specs`` None), refuse with specs given.
    skip_fresh : bool, default True
        Leave alone a folder written from the same spec file, tables, hlh-meta code and
        libraries (:mod:`hlh_meta.freshness`), without reading the tables, and remember in
        ``out`` an analysis skipped for having no usable rows, so that the next run skips
        it without reading the tables either. Applies to specs given as files.
    executor : {"processes", "serial", "dask"}, default "processes"
        How sensitivity variants run, as in :func:`hlh_meta.run_analysis`.
    workers : int, optional
        Worker processes of the ``"processes"`` executor.
    scheduler : str or distributed.Client, optional
        The Dask scheduler of the ``"dask"`` executor.
    on_event : callable, optional
        ``on_event(kind, name, text)``, called as things happen: ``kind`` is one of
        :data:`EVENTS` (see Notes), ``name`` the analysis's name and ``text`` what
        happened, in words. Default: nothing is reported as it happens; the outcomes
        returned say what was skipped.
    terms : {"python", "cli"}, default "python"
        How a refused output location names the way out: ``force=True`` and another folder,
        or the command line's ``--force`` and ``--out``.

    Returns
    -------
    list of RunOutcome
        One per spec, in the order given: its name, results folder, status (``"written"``,
        ``"up to date"`` or ``"no usable rows"``), the result written, seconds and whether
        the diagnostics gate passed.

    Raises
    ------
    hlh_meta.SpecError
        For a bad spec (naming the file and key), two specs of the same name, or an
        analysis with no usable rows when ``skip_empty`` is off; before any sampling.
    hlh_meta.DataError
        For tables that fail validation or rows that cannot enter a model.
    hlh_meta.InputError
        For other bad input, before any sampling: a request beyond this machine's memory,
        a bad executor, an output location that cannot be written or that holds results
        (``force`` off).
    FileNotFoundError
        If the package bundles no spec (a broken installation) and none is given.

    Notes
    -----
    The events, in the order they can occur for one analysis (``text`` in quotes):

    - ``"up to date"``: its folder is up to date and is left as it is; ``"<out>/<name> is
      up to date (same spec, tables, code and libraries)"``; ``"compared already"``
      (:func:`compare_saved`): it holds the comparison already.
    - ``"no usable rows (unchanged)"``: a run with the same spec file, tables, code and
      libraries found no usable rows; skipped without reading the tables.
    - ``"no usable rows"``: no row of the tables can enter the analysis; skipped.
    - ``"leftover"``: a hidden temporary folder beside its results folder is kept, its
      run not known to be finished (another host, an older naming); the text says which.
    - ``"step"``: a phase starts, e.g. ``"sampling"`` (the first, before the model is
      compiled), ``"comparing covariate sets"``.
    - ``"compiling"``: its model is compiling (here, or in the background process that
      compiles later analyses' models) before it can be sampled; ``"compiled"`` (empty
      text) when that is done and the step shown before goes on.
    - ``"variant"``: a sensitivity variant starts; ``"variant 3/27: <variant>"``.
    - ``"analysed"``: the analysis has run, before its folder is written; its seconds and
      diagnostics, ``"30.1 s; diagnostics OK"`` or ``"...; DIAGNOSTICS FLAGGED: <why>"``.
    - ``"written"``: its results folder is in place; the text is the folder.

    Warnings the analyses raise (:class:`hlh_meta.GateWarning`,
    :class:`hlh_meta.ThinDataWarning`, a leftover met while writing) are Python warnings,
    as from :func:`hlh_meta.run_analysis`.

    Examples
    --------
    >>> import hlh_meta as hm
    >>> done = hm.run_all(out="results", on_event=lambda kind, name, text: print(f"{name}: {text}"))  # doctest: +SKIP
    >>> [(o.name, o.status) for o in done]  # doctest: +SKIP
    [('biomarkers', 'written'), ('comparison', 'no usable rows'), ('mortality', 'written')]
    """
    emit: Listener = on_event if on_event is not None else _silent
    given = _as_list(specs)
    skip_empty = specs is None if skip_empty is None else skip_empty
    out = Path(out)
    outcomes: dict[int, RunOutcome] = {}
    todo = list(range(len(given)))
    if skip_fresh and not force:
        todo = _stale(given, todo, out, data, emit, outcomes, compare)
    if todo:
        # a sensitivity run's worker processes start before this process imports the modelling
        # stack, which they import meanwhile on the other cores
        with started_ahead(_workers_ahead(given[todo[0]], sensitivity, executor, workers), WORKER_IMPORTS):
            from .analyses.frames import frames_kept
            from .pipeline import FigureDrawer

            # the figure process starts next: it loads matplotlib and ArviZ while the specs are checked
            # and fitted; within the run each analysis frame is built once
            with FigureDrawer() as drawer, frames_kept():
                _run(given, todo, out, data, outcomes, emit, listening=on_event is not None, force=force,
                     compare=compare, sensitivity=sensitivity, skip_empty=skip_empty, skip_fresh=skip_fresh,
                     terms=terms, options={"executor": executor, "workers": workers, "scheduler": scheduler},
                     drawer=drawer)
    return [outcomes[i] for i in range(len(given))]


def compare_saved(spec: SpecLike, data: Dataset | str | Path | None = None, out: str | Path = "results", *,
                  force: bool = False, on_event: Listener | None = None, terms: str = "python") -> RunOutcome:
    """Add the comparison of a spec's covariate sets to its results folder, from the draws it holds.

    The step ``hlh-meta compare`` runs. The folder ``out/<name>`` must be up to date (the
    same spec file, tables, code and libraries, :mod:`hlh_meta.freshness`): its posterior
    serves the set that is the model's covariates, so the primary fit is not sampled again
    (:meth:`hlh_meta.AnalysisResult.compare`), and the folder is written again with
    ``comparison.csv`` and its report section. With no folder yet, the analysis is fitted
    with the comparison (as ``run_all(..., compare=True)``).

    Parameters
    ----------
    spec : str, pathlib.Path or Spec
        The spec file (or a Spec read from one).
    data : Dataset, str, pathlib.Path or None, optional
        The tables (default: the bundled data).
    out : str or pathlib.Path, default "results"
        The folder holding ``out/<name>``.
    force : bool, default False
        Compare again a folder that holds the comparison already, and, where the folder is
        not up to date, fit it again with the comparison.
    on_event : callable, optional
        ``on_event(kind, name, text)`` as for :func:`run_all`.
    terms : {"python", "cli"}, default "python"
        How a refusal names the way out.

    Returns
    -------
    RunOutcome
        ``status`` ``"written"`` (the folder now holds the comparison) or ``"up to date"``
        (it held it already).

    Raises
    ------
    hlh_meta.errors.ResultsExistError
        If the folder exists but is not up to date and ``force`` is off (its draws are
        not those this spec and these tables would give).
    """
    import time

    from .analyses import as_spec
    from .freshness import compared_already
    from .result import AnalysisResult

    emit = on_event or _silent
    spec = as_spec(spec)
    target = Path(out) / spec.name
    ds = as_dataset(data, name="data")
    fresh = spec.path is not None and Path(spec.path).is_file() and up_to_date(target, Path(spec.path), ds.sha256)
    if not fresh:
        return run_all([spec], ds, out, force=force, compare=True, skip_fresh=False, on_event=on_event,
                       terms=terms)[0]
    if not force and compared_already(target):
        emit("compared already", spec.name, f"{target} holds the comparison already (same spec, tables, code and "
                                            "libraries)")
        return RunOutcome(spec.name, target, "up to date")
    from .pipeline import FigureDrawer

    started = time.perf_counter()
    with FigureDrawer() as drawer:                  # loads matplotlib and ArviZ while the comparison runs
        emit("step", spec.name, "reading the fit")
        result = AnalysisResult.load(target).compare(ds, step=lambda text: emit("step", spec.name, text))
        seconds = time.perf_counter() - started
        emit("analysed", spec.name, f"{seconds:.1f} s; the comparison added to the fit's draws")
        result.save(target, force=True, terms=terms, drawer=drawer)
    emit("written", spec.name, str(target))
    return RunOutcome(spec.name, target, "written", result, seconds, bool(result.diagnostics.passed))


def _silent(kind: str, name: str, text: str) -> None:
    pass


#: what a worker started ahead imports before its first group of variants arrives: what
#: running a group needs (the sensitivity executors, with PyMC, PyTensor and the analyses) and nutpie
WORKER_IMPORTS = ("hlh_meta.sensitivity.executors", "nutpie")


def _workers_ahead(spec: SpecLike, sensitivity: bool, executor: str, workers: int | None) -> int:
    """How many worker processes to start ahead for a run of ``spec`` (:func:`.workers.started_ahead`):
    ``workers``, or as :func:`.workers.workers_for` the spec's ``[sampling] chains`` (one
    worker where the spec does not give them: the count of every machine of 2 to 11 cores
    at the default 4 chains); none without a sensitivity analysis on local processes, or on
    one core. A guess: where the run wants another number, these stop and that many start."""
    cores = os.cpu_count() or 1
    if not sensitivity or executor != "processes" or cores < 2:
        return 0
    if isinstance(workers, int) and not isinstance(workers, bool):
        return workers if workers >= 1 else 0
    try:
        raw = spec.raw if isinstance(spec, Spec) else tomllib.loads(Path(spec).read_text(encoding="utf-8"))
        chains = raw.get("sampling", {}).get("chains")
        return workers_for(chains, cores) if isinstance(chains, int) and not isinstance(chains, bool) else 1
    except (OSError, ValueError, TypeError, AttributeError):       # unreadable: the run reports it
        return 0


def _as_list(specs: SpecLike | Iterable[SpecLike] | None) -> list[SpecLike]:
    if specs is None:
        found: list[SpecLike] = list(sorted(bundled_specs_dir().glob("*.toml")))
        if not found:
            raise FileNotFoundError("no analysis specs found")
        return found
    if isinstance(specs, (str, Path, Spec)):
        return [specs]
    return list(specs)


def _stale(given: list[SpecLike], todo: list[int], out: Path, data: object, emit: Listener,
           outcomes: dict[int, RunOutcome], compare: bool = False) -> list[int]:
    """The specs (by index) whose results folder is not up to date: same spec file, tables,
    code and libraries (:mod:`hlh_meta.freshness`). Each one set aside is told and given
    its outcome. A spec file that cannot be read here is left for the run to report."""
    if isinstance(data, Dataset):
        digests = data.sha256
    elif data is None or isinstance(data, (str, Path)):
        folder = bundled_data_dir() if data is None else Path(data)
        if not folder.exists():
            return todo                              # the run reports the missing tables
        digests = table_digests(folder)
    else:
        return todo                                  # the run says what `data` must be
    if not digests:
        return todo                                  # tables of no file: nothing to compare
    left = []
    for i in todo:
        path = given[i]
        if isinstance(path, Spec):
            left.append(i)                           # a Spec may differ from its file
            continue
        try:
            name = tomllib.loads(Path(path).read_text(encoding="utf-8"))["analysis"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            left.append(i)
            continue
        if not isinstance(name, str):
            left.append(i)
            continue
        target = out / name
        if up_to_date(target, Path(path), digests, compare=compare):
            emit("up to date", name, f"{target} is up to date (same spec, tables, code and libraries)")
            outcomes[i] = RunOutcome(name, target, "up to date")
        elif not target.exists() and skipped_before(out, name, Path(path), digests):
            emit("no usable rows (unchanged)", name, "no usable rows in these tables (unchanged since the last run); "
                                                     "skipped")
            outcomes[i] = RunOutcome(name, target, "no usable rows")
        else:
            left.append(i)
    return left


def _run(given: list[SpecLike], todo: list[int], out: Path, data: object, outcomes: dict[int, RunOutcome],
         emit: Listener, *, listening: bool, force: bool, compare: bool, sensitivity: bool, skip_empty: bool,
         skip_fresh: bool, terms: str, options: dict, drawer=None) -> None:
    """Check every spec in ``todo``, then run and write each analysis that has rows
    (``drawer``: a :class:`.pipeline.FigureDrawer` drawing figures beside this process)."""
    from .analyses import analysis_for, as_spec
    from .analyses.frames import frames_kept
    from .pipeline import CompileAhead
    from .report.writer import check_output_location, leftover_note, leftovers, safe_child
    from .result import _python_terms

    ds = as_dataset(data, name="data")
    loaded = {i: as_spec(given[i]) for i in todo}    # every spec checked before any sampling
    names = [spec.name for spec in loaded.values()]
    if len(set(names)) != len(names):
        raise SpecError(", ".join(str(spec.path) for spec in loaded.values()), "analysis.name",
                        "two specs share a name (it names the results folder)")
    with frames_kept():        # each frame and list of variants worked out once, for the checks and the runs
        runnable = []
        for i, spec in loaded.items():
            analysis = analysis_for(spec)
            analysis.check_spec(spec)                    # keys checked against the analysis type (priors, threshold, ...)
            analysis.settings(spec)                      # [sampling] values (a seed of -1) before any sampling
            used, _ = analysis.frame(ds, spec)           # data and spec problems surface before any sampling
            if used.empty:
                why = f"no row of the tables is usable for this {spec.kind} analysis"
                if not skip_empty:
                    raise spec.error("data", why)
                emit("no usable rows", spec.name, f"{why}; skipped")
                if skip_fresh and not isinstance(given[i], Spec) and Path(spec.path).is_file():
                    record_skip(out, spec.name, Path(spec.path), ds.sha256)
                outcomes[i] = RunOutcome(spec.name, out / spec.name, "no usable rows")
                continue
            resolved = analysis.resolve(ds, spec)        # reference levels: as the run will resolve them
            if sensitivity:
                analysis.expand_variants(ds, resolved)
            analysis.check_request(ds, resolved, sensitivity)   # within the machine's memory
            runnable.append(i)
        targets = {i: safe_child(out, loaded[i].name) for i in runnable}
        with _python_terms() if terms == "python" else nullcontext():
            for target in targets.values():
                check_output_location(target, force)
        for i, target in targets.items():                # leftovers of killed runs: removed, or reported before sampling
            for path in leftovers(target, remove=True):
                emit("leftover", loaded[i].name, leftover_note(path))
        # the heaviest compile first (stable: otherwise in the order given; outcomes keep that order)
        runnable.sort(key=lambda i: -analysis_for(loaded[i]).compile_weight)
        with CompileAhead([loaded[i] for i in runnable], ds) as ahead:   # later analyses' models compile meanwhile
            for i in runnable:
                outcomes[i] = _run_one(loaded[i], targets[i], ds, ahead, emit, listening=listening, force=force,
                                       compare=compare, sensitivity=sensitivity, terms=terms, options=options,
                                       drawer=drawer)


def _run_one(spec: Spec, target: Path, ds: Dataset, ahead: CompileAhead, emit: Listener, *, listening: bool,
             force: bool, compare: bool, sensitivity: bool, terms: str, options: dict, drawer=None) -> RunOutcome:
    """Run one analysis and write its folder (``drawer``: draws some figures beside this process)."""
    from . import pipeline

    name = spec.name
    if ahead.pending(spec):                          # its model is compiling in the background
        emit("step", name, "sampling")
        emit("compiling", name, COMPILING)
        ahead.wait(spec)
        emit("compiled", name, "")

    def variant(i: int, n: int, label: str) -> None:
        emit("variant", name, f"variant {i + 1}/{n}: {label}")

    with _compile_events(emit if listening else None, name):
        result = pipeline.run_analysis(spec, ds, sensitivity=sensitivity, progress=variant, compare=compare,
                                       step=lambda text: emit("step", name, text), **options)
    diag = result.diagnostics
    timings = result.manifest["timings_s"]
    seconds = timings.get("sensitivity", timings["total"])      # the sensitivity step includes the primary
    flag = "diagnostics OK" if diag.passed else "DIAGNOSTICS FLAGGED: " + "; ".join(diag.problems)
    emit("analysed", name, f"{seconds:.1f} s; {flag}")
    result.save(target, force=force, terms=terms, drawer=drawer)
    emit("written", name, str(target))
    return RunOutcome(name, target, "written", result, seconds, bool(diag.passed))


@contextmanager
def _compile_events(emit: Listener | None, name: str) -> Iterator[None]:
    """Within the block, a model structure compiling in this process (its first fit here;
    later processes load it from the disk cache) is told as ``"compiling"`` and
    ``"compiled"`` events; without a listener nothing is registered."""
    if emit is None:
        yield
        return
    from .inference.sampling import on_compile

    def notice(started: bool) -> None:
        if started:
            emit("compiling", name, COMPILING)
        else:
            emit("compiled", name, "")

    with on_compile(notice):
        yield
