"""Where variants run: in this process, on local cores, or on a Dask distributed cluster."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from functools import partial

import pandas as pd

from ..errors import InputError
from ..inference import SamplerSettings
from ..inference.sampling import gib, machine_memory, memory_budget, memory_needed
from ..models.engine import values_per_draw
from ..spec import Spec
from ..workers import (  # noqa: F401 - the process helpers, also reached from here (callers, tests)
    _quiet_worker,
    ignore_interrupts,
    import_modules,
    main_hidden,
    spawn_pool,
    stop_workers,
    submit,
    take_ahead,
    worker_start,
    workers_for,
)
from .reweight import on_primary_draws
from .runner import Planned, reweighted_or_refit, run_group, variant_settings

EXECUTORS = ("serial", "processes", "dask")


def group_variants(planned: list[Planned]) -> list[list[Planned]]:
    """Variants whose model inputs have equal structure share one compiled model. A variant
    of another structure whose posterior is on the primary's parameters (another family of
    tau's prior, another likelihood of mixed strata, another partition of a study's rows:
    :func:`.reweight.on_primary_draws`) joins the primary analysis's group: it is first
    reweighted from the primary's draws, which that group holds."""
    primary = next((p for p in planned if p.variant.family == "primary" and p.inputs is not None), None)
    groups: dict = {}
    for item in planned:
        key = item.key
        if primary is not None and primary.inputs is not None and item.inputs is not None \
                and on_primary_draws(primary.inputs, item.inputs):
            key = primary.key
        groups.setdefault(key, []).append(item)
    return list(groups.values())


def _order(planned: list[Planned], frames_by_name: dict[str, pd.DataFrame]) -> list[pd.DataFrame]:
    return [frames_by_name[p.variant.name] for p in planned]


def worker_pool(n: int) -> ProcessPoolExecutor:
    """A pool of ``n`` quiet worker processes, spawned (:func:`hlh_meta.workers.spawn_pool`);
    give it work with :func:`submit`, which works from any main module."""
    return spawn_pool(n, ProcessPoolExecutor)


class WorkersLostWarning(UserWarning):
    """The worker processes stopped before finishing their groups; those groups ran in this process."""


def default_workers(spec: Spec, groups: int) -> int:
    """Worker processes when none are asked for (:func:`hlh_meta.workers.workers_for` with the
    spec's chains and this machine's cores; `hlh-meta sensitivity models/mortality.toml` on 2
    cores: 60 s with one worker against 72 s with none, benchmarks/RESULTS.md), at most ``groups``."""
    return min(groups, workers_for(SamplerSettings.of(spec.section("sampling")).chains, os.cpu_count() or 1))


#: memory of a worker process beside its fit: Python with PyMC, PyTensor, numba and nutpie loaded
WORKER_PROCESS_BYTES = 600 << 20


#: the pool :func:`workers_started` started, with its number of processes, or None
_STARTED: ContextVar[tuple[ProcessPoolExecutor, int] | None] = ContextVar("hlh_meta_started_workers", default=None)


@contextmanager
def workers_started(spec: Spec, executor: str = "processes", workers: int | None = None) -> Iterator[None]:
    """Within this block, :func:`run_groups` gives its groups to worker processes started as
    the block begins, not once the variants are planned: the first one imports the sampling
    stack (about 3 s) while this process works out and plans the variants, on a core that
    is idle meanwhile. Nothing is started for another executor, bad ``workers`` (refused where
    the groups run) or where no worker would run (:func:`default_workers`); a pool that
    :func:`run_groups` does not use is stopped there, and every process at the end of the block.
    Workers started ahead as the command began (:func:`hlh_meta.workers.started_ahead`) are
    taken over where they are as many as wanted, else stopped."""
    pool = None
    try:
        check_executor(executor, workers)
        wanted = (workers or default_workers(spec, sys.maxsize)) if executor == "processes" else 0
    except InputError:
        wanted = 0
    ahead = take_ahead()
    if ahead is not None and wanted and ahead[1] == wanted:
        pool = ahead[0]
    elif ahead is not None:
        stop_workers(ahead[0])
    if wanted and pool is None:
        try:
            pool = worker_pool(wanted)
            submit(pool, import_modules, (__name__, "nutpie"))   # what running a group imports
        except Exception:  # noqa: BLE001 - only a head start: run_groups starts its own pool
            pool = None
    token = _STARTED.set(None if pool is None else (pool, wanted))
    try:
        yield
    except BaseException:
        if pool is not None:
            stop_workers(pool)
        raise
    finally:
        _STARTED.reset(token)
    if pool is not None:
        pool.shutdown(wait=True)       # idle by now (or stopped already): its processes exit


def check_executor(executor: str, workers: int | None = None, scheduler=None) -> None:
    """Refuse (:class:`~hlh_meta.errors.InputError`) an executor that is not one of
    :data:`EXECUTORS`, a ``workers`` that is not a whole number of at least 1, and ``workers``
    or ``scheduler`` given to an executor that does not use them."""
    if executor not in EXECUTORS:
        raise InputError(f"executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be a whole number of at least 1 (or None: the default), got {workers!r}")
        if executor != "processes":
            raise InputError(f"workers = {workers} is for the 'processes' executor; the {executor} executor "
                             + ("runs every variant in this process" if executor == "serial" else
                                "runs variants on the cluster's workers") + ": give one or the other")
    if scheduler is not None and executor != "dask":
        raise InputError(f"a scheduler is for the 'dask' executor, not the {executor} executor")


def check_workers(n: int, per_fit: int) -> None:
    """Refuse ``n`` worker processes (each fitting beside this process, which fits too) whose
    memory together is over half of this machine's: each needs :data:`WORKER_PROCESS_BYTES`
    and its fit ``per_fit`` bytes."""
    need = (n + 1) * (WORKER_PROCESS_BYTES + per_fit)
    if need > memory_budget():
        fits = max(memory_budget() // (WORKER_PROCESS_BYTES + per_fit) - 1, 0)
        raise InputError(f"workers = {n} asks for more memory than this machine can give: {n} worker processes and "
                         f"this one, each about {gib(WORKER_PROCESS_BYTES + per_fit)} (a process with its fit), need "
                         f"about {gib(need)}, over half of this machine's {gib(machine_memory())}; "
                         f"at most {fits} fit")


def run_groups(spec: Spec, planned: list[Planned], *, executor: str = "serial",
               workers: int | None = None, scheduler=None,
               progress: Callable[[int, int, str], None] | None = None,
               alongside: Callable[[], object] | None = None) -> list[pd.DataFrame]:
    """Run every planned variant; frames come back in the order of ``planned``.

    ``alongside`` runs in this process once the other workers have their groups (first,
    with the serial executor): e.g. the primary analysis, while workers compile other models.
    An InferenceData it returns is the primary variant's fit wherever that runs here.
    Inside :func:`workers_started` the worker processes it started take the groups.
    """
    check_executor(executor, workers, scheduler)
    groups = group_variants(planned)
    done: dict[str, pd.DataFrame] = {}
    fitted: dict = {}

    base: list = []

    def run_alongside() -> None:
        primary = alongside() if alongside else None
        if primary is not None:
            fitted["primary"] = primary
            inputs = next((p.inputs for p in planned if p.variant.family == "primary"), None)
            if inputs is not None:
                base.append((inputs, primary))

    def run_here(group_list) -> None:
        for item in (it for g in group_list for it in g):
            if progress:
                progress(len(done), len(planned), item.variant.name)
            done[item.variant.name] = run_group(spec, [item], fitted, base[0] if base else None)[0]

    def reweight_here(group_list) -> list[Planned]:
        """Each variant of ``group_list`` reweighted here from the primary's draws where it
        can be; the variants left: the primary, those with nothing to fit and the refits
        (with their attempt's k and ESS), which any process may run."""
        left = []
        for item in (it for g in group_list for it in g):
            if base and item.inputs is not None and item.variant.name not in fitted:
                if progress:
                    progress(len(done), len(planned), item.variant.name)
                out = reweighted_or_refit(spec, item, base[0])
                if isinstance(out, pd.DataFrame):
                    done[item.variant.name] = out
                    continue
                item = out
            left.append(item)
        return left

    local, remote, n = groups, [], 0
    if executor == "processes":
        # The group holding the primary analysis runs here, alongside the pool: this process has
        # usually compiled its model already (``hlh-meta sensitivity`` fits the primary first);
        # so do the variants with nothing to fit (a row saying why), for which no worker starts.
        # The other groups go to worker processes, largest first; with no idle cores to give a
        # worker (or no other group) every group runs here in turn, as with the serial executor.
        primary_group = [g for g in groups if any(it.variant.family == "primary" for it in g)]
        notes = [g for g in groups if g not in primary_group and all(it.inputs is None for it in g)]  # nothing to fit
        others = sorted((g for g in groups if g not in primary_group and g not in notes), key=len, reverse=True)
        # no more workers than groups to give them (a pool starts its processes as work arrives)
        n = min(workers or default_workers(spec, len(others)), len(others)) if others else 0
        if n:
            # a worker may also refit a variant of the primary's group that reweighting leaves
            check_workers(n, max((memory_needed(variant_settings(spec), values_per_draw(it.inputs))
                                  for g in others + primary_group for it in g
                                  if it.inputs is not None and it.variant.family != "primary"), default=0))
            local, remote = primary_group + notes, others
    started, size = _STARTED.get() or (None, 0)
    if started is not None and (not remote or n > size):
        stop_workers(started)            # not needed here (or too few): its processes go now
        started = None
    if executor != "dask" and not remote:
        run_alongside()
        run_here(local)
        return _order(planned, done)
    if executor == "processes":
        lost = []
        with nullcontext(started) if started is not None else worker_pool(n) as pool:
            try:
                futures = [(g, submit(pool, run_group, spec, g)) for g in remote]
                run_alongside()
                # the primary's group reweighted here; the refits it leaves join the end of the
                # workers' queue, from which this process takes work back below
                left = reweight_here(local)
                refits = [it for it in left if it.tried is not None]
                futures += [([it], submit(pool, run_group, spec, [it])) for it in refits]
                run_here([[it for it in left if it.tried is None]])
                # Groups no worker has taken yet run here too (the last submitted first), so this
                # process does not wait idle while a worker compiles model after model.
                for group, fut in reversed(futures):
                    if fut.cancel():
                        run_here([group])
                for group, fut in futures:
                    if fut.cancelled():                          # run here instead
                        continue
                    try:
                        frames = fut.result()
                    except BrokenProcessPool as exc:             # a worker died (killed, out of memory): not a pool left broken
                        lost.append((group, exc))
                        continue
                    for it, frame in zip(group, frames):
                        done[it.variant.name] = frame
                    if progress:
                        progress(len(done), len(planned), group[-1].variant.name)
            except BaseException:
                stop_workers(pool)                               # groups not finished are dropped, workers stopped
                raise
        if lost:
            warnings.warn(f"the worker processes stopped before finishing {len(lost)} group(s) of variants "
                          f"({lost[0][1]}); they ran in this process instead", WorkersLostWarning, stacklevel=2)
            run_here([group for group, _ in lost])
        return _order(planned, done)
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("the dask executor needs the 'distributed' package: pip install 'hlh-meta[dask]'") from exc
    if scheduler is None:
        raise InputError("the dask executor needs a scheduler address (--scheduler tcp://host:8786) or a Client")
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = client.map(partial(run_group, spec), groups, pure=False)
        run_alongside()           # the primary variant runs on the cluster: its fit is not reused
        for group, result in zip(groups, client.gather(futures)):
            for it, frame in zip(group, result):
                done[it.variant.name] = frame
    finally:
        if not isinstance(scheduler, Client):
            client.close()
    return _order(planned, done)
