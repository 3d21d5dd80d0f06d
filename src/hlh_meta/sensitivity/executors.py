"""Where variants run: in this process, on local cores, or on a Dask distributed cluster."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import pandas as pd

from ..data import Dataset
from ..spec import Spec
from .variants import Variant

EXECUTORS = ("serial", "processes", "dask")


def structure_key(spec: Spec, v: Variant) -> str:
    """Variants with equal keys share one compiled model (they differ only in data)."""
    vs = v.spec(spec)
    priors = {k: p.get("dist") for k, p in vs.section("priors").items()}
    data = vs.section("data")
    return json.dumps({"priors": priors, "partitions": data.get("partitions"),
                       "missing_dispersion": data.get("missing_dispersion")}, sort_keys=True)


def group_variants(spec: Spec, variants: list[Variant]) -> list[list[Variant]]:
    groups: dict[str, list[Variant]] = {}
    for v in variants:
        groups.setdefault(structure_key(spec, v), []).append(v)
    return list(groups.values())


def _order(variants: list[Variant], frames_by_name: dict[str, pd.DataFrame]) -> list[pd.DataFrame]:
    return [frames_by_name[v.name] for v in variants]


def _quiet_worker() -> None:
    """Library chatter (BLAS linking notes) from worker processes is not for the terminal."""
    import warnings

    warnings.filterwarnings("ignore")


def default_workers(spec: Spec, groups: int) -> int:
    """Worker processes when none are asked for. Every fit already samples its chains on
    parallel threads, in the calling process as in each worker, so a worker only pays where
    the cores hold at least one more fit's chains: one worker per ``chains`` cores beyond
    the calling process's (none on a machine with fewer than twice ``chains`` cores)."""
    from ..inference import SamplerSettings

    chains = spec.get("sampling", "chains", SamplerSettings.chains)
    return min(groups, max(0, (os.cpu_count() or 1) // chains - 1))


def run_groups(spec: Spec, ds: Dataset, variants: list[Variant], *, executor: str = "serial",
               workers: int | None = None, scheduler=None,
               progress: Callable[[int, int, str], None] | None = None,
               alongside: Callable[[], object] | None = None) -> list[pd.DataFrame]:
    """Run every variant; frames come back in the order of ``variants``.

    ``alongside`` runs in this process once the other workers have their groups (first,
    with the serial executor): e.g. the primary analysis, while workers compile other models.
    An InferenceData it returns is the primary variant's fit wherever that runs here.
    """
    from .runner import run_group

    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")
    groups = group_variants(spec, variants)
    done: dict[str, pd.DataFrame] = {}
    fitted: dict = {}

    def run_alongside() -> None:
        primary = alongside() if alongside else None
        if primary is not None:
            fitted["primary"] = primary

    def run_here(group_list) -> None:
        for v in (v for g in group_list for v in g):
            if progress:
                progress(len(done), len(variants), v.name)
            done[v.name] = run_group(spec, ds, [v], fitted)[0]

    local, remote, n = groups, [], 0
    if executor == "processes":
        # The group holding the primary analysis runs here, alongside the pool: this process has
        # usually compiled its model already (``hlh-meta sensitivity`` fits the primary first).
        # The other groups go to worker processes, largest first; with no idle cores to give a
        # worker (or no other group) every group runs here in turn, as with the serial executor.
        primary_group = [g for g in groups if any(v.family == "primary" for v in g)]
        others = sorted((g for g in groups if g not in primary_group), key=len, reverse=True)
        n = (workers or default_workers(spec, len(others))) if others else 0
        if n:
            local, remote = primary_group, others
    if executor != "dask" and not remote:
        run_alongside()
        run_here(local)
        return _order(variants, done)
    if executor == "processes":
        # spawn, not fork: this process may hold sampler threads
        with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_quiet_worker) as pool:
            futures = [(g, pool.submit(run_group, spec, ds, g)) for g in remote]
            try:
                run_alongside()
                run_here(local)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)   # groups not started are dropped
                raise
            for group, fut in futures:
                for v, frame in zip(group, fut.result()):
                    done[v.name] = frame
                if progress:
                    progress(len(done), len(variants), group[-1].name)
        return _order(variants, done)
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError("the dask executor needs the 'distributed' package: pip install 'hlh-meta[dask]'") from exc
    if scheduler is None:
        raise ValueError("the dask executor needs a scheduler address (--scheduler tcp://host:8786) or a Client")
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = client.map(partial(run_group, spec, ds), groups, pure=False)
        run_alongside()           # the primary variant runs on the cluster: its fit is not reused
        for group, result in zip(groups, client.gather(futures)):
            for v, frame in zip(group, result):
                done[v.name] = frame
    finally:
        if not isinstance(scheduler, Client):
            client.close()
    return _order(variants, done)
