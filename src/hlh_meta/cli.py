"""Command line: ``hlh-meta run | fit | data check``.

Exit status: 0 success, 2 bad input (one line per problem, no traceback unless --debug),
1 any other failure.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .errors import DataError, SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bayesian meta-analysis of anakinra in secondary HLH / MAS.")
data_app = typer.Typer(no_args_is_help=True, help="Extraction tables.")
app.add_typer(data_app, name="data")

err = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)
_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


def _fail(exc: Exception) -> None:
    """Report an error the way the exit-status contract says and exit."""
    if _state["debug"]:
        raise exc
    if isinstance(exc, (DataError, SpecError, FileNotFoundError, FileExistsError, ValueError)):
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2)
    err.print(f"error: {type(exc).__name__}: {exc}", markup=False)
    raise typer.Exit(1)


@data_app.command("check")
def data_check(directory: Annotated[Optional[Path], typer.Argument(help="Folder with studies.csv, mortality.csv, biomarkers.csv (default: the bundled data).")] = None) -> None:
    """Validate extraction tables; print every problem (exit 2) or a summary (exit 0)."""
    from .data import load_dataset, read_dataset

    try:
        ds = load_dataset() if directory is None else read_dataset(directory)
    except Exception as exc:  # noqa: BLE001 - routed by _fail
        _fail(exc)
    console.print(ds.summary(), markup=False)
    console.print("OK: the tables are valid.")


def _progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _run_specs(specs: list[Path], out: Path, force: bool, quiet: bool, data: Optional[Path],
               sensitivity: bool = False, executor: dict | None = None) -> None:
    from .analyses.result import run_analysis
    from .data import load_dataset, read_dataset
    from .report.writer import safe_child
    from .spec import load_spec

    ds = load_dataset() if data is None else read_dataset(data)
    loaded = [load_spec(p) for p in specs]          # every spec checked before any sampling
    names = [s.name for s in loaded]
    if len(set(names)) != len(names):
        raise SpecError(", ".join(map(str, specs)), "analysis.name", "two specs share a name (it names the results folder)")
    targets = [safe_child(out, s.name) for s in loaded]
    if not force:
        for t in targets:
            if t.exists():
                raise FileExistsError(f"{t} already exists; use --force to replace it or --out for another folder")
    if sensitivity:
        from .sensitivity import expand_variants

        for spec in loaded:
            expand_variants(ds, spec)      # bad variant declarations fail before any sampling
    for spec, target in zip(loaded, targets):
        with err.status(f"{spec.name}: sampling ...") if _progress(quiet) else nullcontext() as status:
            if not sensitivity:
                result = run_analysis(spec, ds, progress=False)
            else:
                from .sensitivity import robustness, run_sensitivity

                def tick(i: int, n: int, name: str) -> None:
                    if status is not None:
                        status.update(f"{spec.name}: variant {i + 1}/{n}: {name}")

                primary = {}

                def run_primary():   # while worker processes compile the variants' other models
                    primary["result"] = run_analysis(spec, ds, progress=False)
                    return primary["result"].idata   # the primary variant's fit: not sampled twice

                started = time.perf_counter()
                sens = run_sensitivity(spec, ds, progress=tick, alongside=run_primary, **(executor or {}))
                result = primary["result"]
                # wall time of the primary analysis and the variants together (they overlap)
                result.manifest["timings_s"]["sensitivity"] = round(time.perf_counter() - started, 3)
                result.tables["sensitivity"] = sens
                result.tables["robustness"] = robustness(sens)
                result.manifest["tables"] = list(result.tables)
        result.save(target, force=force)
        diag = result.diagnostics
        flag = "diagnostics OK" if diag.passed else "DIAGNOSTICS FLAGGED: " + "; ".join(diag.problems)
        if not quiet:
            timings = result.manifest["timings_s"]
            seconds = timings.get("sensitivity", timings["total"])   # the sensitivity step includes the primary
            console.print(f"{spec.name}: wrote {target} ({seconds:.1f} s; {flag})", markup=False)


OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Results folder (default: results/).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing results folders.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Folder of extraction tables (default: bundled data).")]


@app.command()
def run(specs: Annotated[Optional[list[Path]], typer.Argument(help="Spec files (default: every spec in models/).")] = None,
        out_dir: OutOpt = None, force: ForceOpt = False, quiet: QuietOpt = False, data: DataOpt = None) -> None:
    """Main job: run every analysis spec and write results/<analysis>/."""
    from .spec import bundled_specs_dir

    try:
        paths = list(specs) if specs else sorted(bundled_specs_dir().glob("*.toml"))
        if not paths:
            raise FileNotFoundError("no analysis specs found")
        _run_specs(paths, out_dir or Path("results"), force, quiet, data)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)


@app.command()
def fit(spec: Annotated[Path, typer.Argument(help="Analysis spec (TOML).")], out_dir: OutOpt = None,
        force: ForceOpt = False, quiet: QuietOpt = False, data: DataOpt = None) -> None:
    """Run one analysis and write its results folder."""
    try:
        _run_specs([spec], out_dir or Path("results"), force, quiet, data)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)


@app.command("sensitivity")
def sensitivity_cmd(spec: Annotated[Path, typer.Argument(help="Analysis spec (TOML) declaring sensitivity variant families.")],
                    out_dir: OutOpt = None, force: ForceOpt = False, quiet: QuietOpt = False,
                    data: DataOpt = None,
                    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes for the variants whose model differs from the primary analysis; the primary's own variants run in this process. Default: one per CHAINS cores beyond the first CHAINS (each fit already samples its chains in parallel), so none below 8 cores with 4 chains.")] = None,
                    serial: Annotated[bool, typer.Option("--serial", help="Run variants one after another in this process.")] = False,
                    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Address of a Dask distributed scheduler, e.g. tcp://scheduler-host:8786.")] = None) -> None:
    """Run the primary analysis and every variant the spec declares; adds sensitivity.csv and robustness.csv."""
    executor = ({"executor": "dask", "scheduler": scheduler} if scheduler else
                {"executor": "serial"} if serial else {"executor": "processes", "workers": workers})
    try:
        _run_specs([spec], out_dir or Path("results"), force, quiet, data, sensitivity=True, executor=executor)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)


@app.command()
def report(results_dir: Annotated[Path, typer.Argument(help="A results folder written by run/fit.")]) -> None:
    """Rebuild report.html from saved results (no sampling)."""
    from .analyses.result import AnalysisResult

    try:
        path = AnalysisResult.load(results_dir).rebuild_report(results_dir)
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
    console.print(f"wrote {path}", markup=False)


def main() -> None:
    import warnings

    # library chatter (BLAS linking, arviz/numpy runtime notes) is not for the terminal;
    # sampler problems are reported through the diagnostics gate instead
    warnings.filterwarnings("ignore")
    app()


if __name__ == "__main__":
    sys.exit(main())
