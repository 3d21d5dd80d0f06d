"""One analysis from a spec to its result: the primary analysis, and with ``sensitivity=True``
every declared variant and the robustness judgement. ``hlh-meta fit`` and ``hlh-meta
sensitivity`` call this and write what it returns."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from .analyses import analysis_for, load_spec
from .data import Dataset, load_dataset
from .errors import DataError
from .models.posterior import diagnostics_of
from .result import AnalysisResult
from .sensitivity import robustness, run_sensitivity
from .spec import Spec

PACKAGES = ("hlh-meta", "pymc", "pytensor", "nutpie", "arviz", "numpy", "scipy", "pandas", "xarray", "pandera")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@contextmanager
def _named_as_given(ds: Dataset):
    """Problems found in the tables after reading (they name a table by its CSV file) name
    each table as it was given, e.g. a workbook's sheet."""
    try:
        yield
    except DataError as exc:
        raise DataError(ds.relabel(exc.problems)) from None


def run_analysis(spec: Spec | str | Path, ds: Dataset | None = None, *, sensitivity: bool = False,
                 progress: Callable[[int, int, str], None] | None = None, executor: str = "processes",
                 workers: int | None = None, scheduler=None) -> AnalysisResult:
    """Run the analysis a spec describes on ``ds`` (default: the bundled data).

    With ``sensitivity=True`` the result also holds the ``sensitivity`` and ``robustness``
    tables (the variants the spec's ``[sensitivity]`` declares; ``executor``, ``workers``
    and ``scheduler`` as in :func:`hlh_meta.sensitivity.run_sensitivity`): the same result
    ``hlh-meta sensitivity`` writes. ``progress(i, n, variant)`` is called as variants start.
    """
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    ds = load_dataset() if ds is None else ds
    analysis = analysis_for(spec)
    analysis.check_spec(spec)                # bad priors or report keys name the spec file and key, before any work
    with _named_as_given(ds):                # rows that cannot become counts or effects: a workbook's sheets named
        spec = analysis.resolve(ds, spec)    # what the data decide (reference levels), the same for every variant
        started = time.perf_counter()
        done = {}

        def primary():
            done["analysed"] = analysis.run(ds, spec)
            done["seconds"] = time.perf_counter() - started
            return done["analysed"].idata      # the primary variant's fit: not sampled twice

        tables = {}
        if sensitivity:
            analysis.expand_variants(ds, spec)   # bad variant declarations fail before any sampling
            sens = run_sensitivity(spec, ds, progress=progress, alongside=primary, executor=executor,
                                   workers=workers, scheduler=scheduler)
            tables = {"sensitivity": sens, "robustness": robustness(sens)}
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
    }
    return AnalysisResult(spec.name, spec.kind, spec.title, analysed.idata, tables, analysed.quantities, manifest)
