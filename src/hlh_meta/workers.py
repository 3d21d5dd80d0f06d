"""Worker processes: spawned quiet, given work, stopped; and started ahead of the modelling stack.

This module needs nothing beyond the standard library and :mod:`hlh_meta.errors`, so that a
command can start its worker processes before it imports PyMC itself: :func:`started_ahead`
spawns them as a sensitivity run begins, and each imports the modelling stack on a core
that this process, busy with the same imports, leaves idle.
:func:`hlh_meta.sensitivity.executors.workers_started` takes them over (:func:`take_ahead`).
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from .errors import skip_final_collection


def workers_for(chains: int, cores: int) -> int:
    """Worker processes for a machine of ``cores`` cores when none are asked for. Every fit
    samples its ``chains`` chains on parallel threads, in the calling process as in each
    worker, so beyond one a worker only pays where the cores hold one more fit's chains: one
    worker per ``chains`` cores beyond the calling process's. One runs wherever there are two
    cores or more (it compiles the other model structures while the calling process
    samples); none on one core."""
    return max(1, cores // max(int(chains), 1) - 1) if cores >= 2 else 0


def _quiet_worker() -> None:
    """Worker processes report through their results; library notes (BLAS linking) are not for the terminal."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pytensor").setLevel(logging.ERROR)
    ignore_interrupts()
    skip_final_collection()                # the pool's shutdown waits for this process to exit


def ignore_interrupts() -> None:
    """In a worker process: Ctrl-C, which a terminal sends to every process of the group, is
    for the calling process, which stops the workers itself (no traceback from a worker)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})     # started blocked (worker_start)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's worker processes now (after an interrupt): their groups are dropped, and
    the pool is not left waiting for them to finish.

    The pool's manager thread is then given up to :data:`STOP_WAIT_S` to finish (it closes its
    wake-up pipe as it ends): left running, it could close that pipe while the interpreter's
    exit hook for process pools writes to it, which prints "Exception ignored ... Bad file
    descriptor" as the command ends. A pool without that (private) thread is stopped the same
    way, without the wait."""
    processes = list((getattr(pool, "_processes", None) or {}).values())    # shutdown forgets them
    manager = getattr(pool, "_executor_manager_thread", None)              # so does shutdown(wait=False)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        try:
            process.terminate()
        except (OSError, AttributeError):
            pass
    if manager is not None and hasattr(manager, "join"):
        manager.join(timeout=STOP_WAIT_S)


#: seconds :func:`stop_workers` waits for a stopped pool's manager thread to end
STOP_WAIT_S = 5.0


@contextmanager
def main_hidden():
    """While worker processes start: a worker needs hlh_meta, never the caller's main module,
    which the spawn start method would otherwise import in each worker. That import fails for a
    main module that is no file (a script fed on standard input) and runs an unguarded script
    again in each worker; hidden, every main module works (a script, ``python -c``, standard
    input, a notebook)."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


@contextmanager
def worker_start():
    """While worker processes start: the caller's main module hidden (:func:`main_hidden`) and
    Ctrl-C blocked, so a new process starts with it blocked (a signal mask is inherited) and no
    Ctrl-C can raise in it while it imports hlh_meta, before it can set it aside
    (:func:`ignore_interrupts`); a Ctrl-C meanwhile waits in this process and arrives at the end."""
    import signal
    import threading

    with main_hidden():
        if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
            yield
            return
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


def spawn_pool(n: int, pool_class=ProcessPoolExecutor) -> ProcessPoolExecutor:
    """A pool of ``n`` quiet worker processes, spawned (not forked: this process may hold
    sampler threads); give it work with :func:`submit`, which works from any main module."""
    return pool_class(max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet_worker)


def submit(pool: ProcessPoolExecutor, fn, *args):
    """``pool.submit(fn, *args)`` as a worker process starts (:func:`worker_start`): a pool
    starts its worker processes as work is submitted."""
    with worker_start():
        return pool.submit(fn, *args)


def import_modules(names: tuple[str, ...]) -> None:
    """In a worker process: import the modules ``names``, before its first work arrives."""
    for name in names:
        importlib.import_module(name)


#: the pool :func:`started_ahead` started and its number of processes, until taken (:func:`take_ahead`)
_AHEAD: list[tuple[ProcessPoolExecutor, int]] = []


@contextmanager
def started_ahead(n: int, imports: tuple[str, ...] = ()) -> Iterator[None]:
    """``n`` worker processes (none for 0) spawned as the block begins, importing the modules
    ``imports`` (the modelling stack) while this process imports it too. The first
    :func:`~hlh_meta.sensitivity.executors.workers_started` within the block takes them over
    (:func:`take_ahead`) where it wants ``n``, or stops them; those never taken are stopped
    when the block ends."""
    if n > 0:
        try:
            pool = spawn_pool(n)
            submit(pool, import_modules, tuple(imports))
            _AHEAD.append((pool, n))
        except Exception:  # noqa: BLE001 - only a head start: workers_started starts its own
            pass
    try:
        yield
    finally:
        while _AHEAD:
            stop_workers(_AHEAD.pop()[0])


def take_ahead() -> tuple[ProcessPoolExecutor, int] | None:
    """The pool started ahead and its number of processes (now the caller's to stop), or None."""
    return _AHEAD.pop() if _AHEAD else None
