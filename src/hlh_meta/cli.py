"""Command line: ``hlh-meta run | fit | sensitivity | report | data check``.

The commands parse arguments, call :func:`hlh_meta.run_all` (or the data and report
functions) and print what it reports. Exit status: 0 success; 2 bad input (one line per problem, no
traceback unless --debug); 130 interrupted (Ctrl-C); 1 an internal error (one line saying
so; the traceback with --debug).
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bayesian meta-analysis of anakinra in secondary HLH / MAS.")
data_app = typer.Typer(no_args_is_help=True, help="Extraction tables.")
app.add_typer(data_app, name="data")

err = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)
_state: dict[str, Any] = {"debug": False, "debug_anywhere": False, "written": []}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also accepted after the command).")] = False) -> None:
    _state["debug"] = debug or _state["debug_anywhere"]


def _fail(exc: BaseException) -> None:
    """Report an error the way the exit-status contract says and exit."""
    from .errors import InputError, Interrupts, SamplingInterrupted

    if _state["debug"]:
        raise exc
    if isinstance(exc, (KeyboardInterrupt, SamplingInterrupted)):
        written = _state["written"]
        word, code = ("terminated", 143) if Interrupts.pending == "SIGTERM" else ("interrupted", 130)
        err.print(f"{word}: {', '.join(map(str, written))} written in full, nothing else was written" if written
                  else f"{word}: nothing was written", markup=False)
        raise typer.Exit(code)
    if isinstance(exc, (InputError, FileNotFoundError)):
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2)
    err.print(f"internal error: {type(exc).__name__}: {exc} (this is a fault of hlh-meta, not of the input; "
              "run again with --debug for the traceback)", markup=False)
    raise typer.Exit(1)


def _configure() -> None:
    """What a terminal run needs: no library chatter that is not about the user's analysis.

    PyTensor's note that it found no BLAS library and ArviZ's notices of future API changes
    are not for the terminal; sampler problems are reported by the diagnostics gate.
    """
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
    warnings.filterwarnings("ignore", message=".*Pareto.*", module="arviz")
    for name in ("pytensor", "pymc"):
        logging.getLogger(name).setLevel(logging.ERROR)


@data_app.command("check")
def data_check(directory: Annotated[Optional[Path], typer.Argument(help="Folder with studies.csv, mortality.csv, biomarkers.csv (and arms.csv), or an .xlsx workbook with those sheets (default: the bundled data).")] = None) -> None:
    """Validate extraction tables with every rule the fit applies; print every problem (exit 2) or a summary (exit 0)."""
    from .data import load_dataset, read_dataset
    from .effects.check import check_dataset, correlation_lines
    from .errors import DataError

    try:
        ds = load_dataset() if directory is None else read_dataset(directory)
        problems = check_dataset(ds)         # the rules of resolving rows into counts and effect sizes
        if problems:
            raise DataError(ds.relabel(problems))    # a workbook's problems name its sheets
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - routed by _fail
        _fail(exc)
    console.print("\n".join([ds.summary(), *correlation_lines(ds)]), markup=False)
    console.print("OK: the tables are valid.")
    _done()


def _warn_line(text: str, shown: set[str]) -> None:
    if text not in shown:
        shown.add(text)
        err.print(f"warning: {text}", markup=False)


@contextmanager
def _one_line_warnings(shown: set[str]):
    """hlh-meta's own warnings (a leftover folder, a failed diagnostics gate, a parameter the
    data cannot inform) printed as one line ``warning: ...`` (once per message); other
    warnings are shown as they would be."""
    from .errors import GateWarning, ThinDataWarning        # not from .inference: a run of fresh folders imports no ArviZ
    from .report.writer import LeftoverWarning

    ours = (LeftoverWarning, GateWarning, ThinDataWarning)
    with warnings.catch_warnings():
        for category in ours:
            warnings.simplefilter("always", category)
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ours):
                _warn_line(str(message), shown)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        yield


class _StatusLine:
    """The text of the terminal's status line (nothing without a terminal), so a passing
    notice can put back what it replaced."""

    def __init__(self, status, text: str) -> None:
        self.status, self.text = status, text

    def set(self, text: str) -> None:
        self.text = text
        self.show(text)

    def show(self, text: str) -> None:
        if self.status is not None:
            self.status.update(text)


class _Progress:
    """The lines a command prints for :func:`hlh_meta.run_all`'s events: notices on standard
    output (none with --quiet), warnings as one ``warning: ...`` line each (once per
    message), and on a terminal a status line while an analysis runs (its phase, the
    variant, a model compiling), ended before its results are written.

    ``status(text)`` opens a status line (default: rich's, on a terminal and without
    --quiet; none otherwise). Used as a context manager, which ends an open status line."""

    def __init__(self, quiet: bool, shown: set[str], status=None) -> None:
        self.quiet, self.shown = quiet, shown
        self.status = status if status is not None else (err.status if not quiet and sys.stderr.isatty() else None)
        self.stack = ExitStack()
        self.line: _StatusLine | None = None
        self.name = ""
        self.analysed: dict[str, str] = {}

    def __call__(self, kind: str, name: str, text: str) -> None:
        if kind == "step":
            self._line(name).set(f"{name}: {text} ...")
        elif kind == "variant":
            self._line(name).set(f"{name}: {text}")
        elif kind == "compiling":
            self._line(name).show(f"{name}: {text}")
        elif kind == "compiled":
            line = self._line(name)
            line.show(line.text)
        elif kind == "analysed":
            self.close()
            self.analysed[name] = text
        elif kind == "written":
            _state["written"].append(Path(text))
            self._say(f"{name}: wrote {text} ({self.analysed.pop(name, '')})")
        elif kind == "up to date":
            self._say(f"{name}: {text}; --force refits")
        elif kind == "compared already":
            self._say(f"{name}: {text}; --force compares again")
        elif kind == "no usable rows (unchanged)":
            self._say(f"{name}: {text}")
        elif kind == "no usable rows":
            _warn_line(f"{name}: {text}", self.shown)
        elif kind == "leftover":
            _warn_line(text, self.shown)

    def _line(self, name: str) -> _StatusLine:
        """The status line of analysis ``name``, opened at its first event."""
        if self.line is None or self.name != name:
            self.close()
            status = self.stack.enter_context(self.status(f"{name}: ...")) if self.status is not None else None
            self.line, self.name = _StatusLine(status, ""), name
        return self.line

    def _say(self, text: str) -> None:
        if not self.quiet:
            console.print(text, markup=False)

    def close(self) -> None:
        self.stack.close()
        self.line = None

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run(specs: Optional[list[Path]], out: Optional[Path], force: bool, quiet: bool, data: Optional[Path],
         **options: Any) -> None:
    """:func:`hlh_meta.run_all` with the command's options, its events printed."""
    from .orchestrate import run_all

    shown: set[str] = set()
    with _one_line_warnings(shown), _Progress(quiet, shown) as progress:
        run_all(specs, data, out or Path("results"), force=force, on_event=progress, terms="cli", **options)


OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Results folder (default: results/).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing results folders.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Folder of extraction tables or an .xlsx workbook (default: bundled data).")]


CompareOpt = Annotated[bool, typer.Option("--compare", help="Also compare the spec's covariate sets by leave-one-study-out "
                                                        "cross-validation (comparison.csv; `hlh-meta compare` adds it "
                                                        "later from the fit's draws).")]


@app.command()
def run(specs: Annotated[Optional[list[Path]], typer.Argument(help="Spec files (default: every spec in models/).")] = None,
        out_dir: OutOpt = None, force: ForceOpt = False, quiet: QuietOpt = False, data: DataOpt = None,
        compare: CompareOpt = False) -> None:
    """Main job: run every analysis spec and write results/<analysis>/."""
    try:
        _run(list(specs) if specs else None, out_dir, force, quiet, data, skip_fresh=True, compare=compare)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        _fail(exc)
    _done()


@app.command()
def fit(spec: Annotated[Path, typer.Argument(help="Analysis spec (TOML).")], out_dir: OutOpt = None,
        force: ForceOpt = False, quiet: QuietOpt = False, data: DataOpt = None, compare: CompareOpt = False) -> None:
    """Run one analysis and write its results folder."""
    try:
        _run([spec], out_dir, force, quiet, data, compare=compare, skip_fresh=False)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        _fail(exc)
    _done()


@app.command("compare")
def compare_cmd(spec: Annotated[Path, typer.Argument(help="Analysis spec (TOML) with [comparison] covariate_sets.")],
                out_dir: OutOpt = None, force: ForceOpt = False, quiet: QuietOpt = False, data: DataOpt = None) -> None:
    """Add the comparison of covariate sets to OUT/<name>/ from the draws its fit holds (fits first if there is no folder)."""
    from .orchestrate import compare_saved

    shown: set[str] = set()
    try:
        with _one_line_warnings(shown), _Progress(quiet, shown) as progress:
            compare_saved(spec, data, out_dir or Path("results"), force=force, on_event=progress, terms="cli")
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        _fail(exc)
    _done()


def _check_executor_options(workers: Optional[int], serial: bool, scheduler: Optional[str]) -> None:
    """--workers, --serial and --scheduler: one way of running the variants, a worker count of at least 1."""
    from .errors import InputError

    given = [name for name, on in (("--workers", workers is not None), ("--serial", serial),
                                   ("--scheduler", scheduler is not None)) if on]
    if len(given) > 1:
        raise InputError(f"{' and '.join(given)} choose different ways of running the variants (worker processes, "
                         "this process alone, a Dask cluster): give one")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be a whole number of at least 1, got {workers} (--serial: no worker processes)")


@app.command("sensitivity")
def sensitivity_cmd(spec: Annotated[Path, typer.Argument(help="Analysis spec (TOML) declaring sensitivity variant families.")],
                    out_dir: OutOpt = None, force: ForceOpt = False, quiet: QuietOpt = False,
                    data: DataOpt = None,
                    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes for the variants whose model differs from the primary analysis; the primary's own variants run in this process. Default: one per CHAINS cores beyond the first CHAINS (each fit already samples its chains in parallel), and one on 2 or more cores (it compiles the other models while this process samples); none on one core. Groups a worker has not started run in this process once its own are done.")] = None,
                    serial: Annotated[bool, typer.Option("--serial", help="Run variants one after another in this process.")] = False,
                    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Address of a Dask distributed scheduler, e.g. tcp://scheduler-host:8786.")] = None,
                    compare: CompareOpt = False) -> None:
    """Run the primary analysis and every variant the spec declares; adds sensitivity.csv and robustness.csv."""
    executor = ({"executor": "dask", "scheduler": scheduler} if scheduler else
                {"executor": "serial"} if serial else {"executor": "processes", "workers": workers})
    try:
        _check_executor_options(workers, serial, scheduler)
        _run([spec], out_dir, force, quiet, data, sensitivity=True, skip_fresh=False, compare=compare, **executor)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        _fail(exc)
    _done()


@app.command()
def report(results_dir: Annotated[Path, typer.Argument(help="A results folder written by run/fit.")]) -> None:
    """Rebuild report.html from saved results (no sampling)."""
    from .result import AnalysisResult

    try:
        path = AnalysisResult.load(results_dir).rebuild_report(results_dir)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        _fail(exc)
    console.print(f"wrote {path}", markup=False)
    _done()


def _done() -> None:
    """The command's work is complete: a Ctrl-C or SIGTERM from here on (while the interpreter
    shuts down its threads and worker processes) no longer changes the outcome, so it is ignored
    and the command exits 0 after its last line."""
    import signal

    if not _state.get("program"):            # called in-process (tests, an embedding program): leave signals alone
        return
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    except ValueError:                       # not the main thread (an embedding program): leave it
        pass


def _catch_interrupts() -> None:
    """As a program: Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt and are recorded
    (:class:`hlh_meta.errors.Interrupts`), so one that a compiler callback swallows ("Exception
    ignored ...") still stops the run before it samples or writes; such a swallowed interrupt
    prints nothing of its own."""
    import signal

    from .errors import Interrupts

    def interrupt(signum, frame):
        Interrupts.note("SIGTERM" if signum == signal.SIGTERM else "SIGINT")
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) not in (signal.SIG_IGN, None):      # an ignored Ctrl-C (nohup, &) stays ignored
            signal.signal(sig, interrupt)
    default_hook = sys.unraisablehook

    def unraisable(info) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt) or (info.exc_type and issubclass(info.exc_type, KeyboardInterrupt)):
            Interrupts.note()
            return
        default_hook(info)

    sys.unraisablehook = unraisable


#: numba's LLVM optimisation level the command compiles models at, unless the environment sets
#: ``NUMBA_OPT``: on the bundled mortality model, level 1 compiles a new model structure in about
#: 15% less time than numba's default (3), and the compiled log density, its gradient and the
#: stored variables run as fast; level 0 runs over ten times slower
#: (``benchmarks/bench_numba_opt.py``). numba does not key its disk cache on the level, so code
#: compiled at either level is reused by both.
NUMBA_OPT = "1"


def _numba_level() -> None:
    """Ask numba for :data:`NUMBA_OPT`, unless ``NUMBA_OPT`` is set or numba is already imported
    (numba reads the variable once, when it is imported). Worker processes and the compile
    helper inherit it with the environment."""
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_OPT", NUMBA_OPT)


def main() -> None:
    from .errors import skip_final_collection

    _numba_level()
    _state["program"] = True
    skip_final_collection()
    _catch_interrupts()
    _state["debug_anywhere"] = "--debug" in sys.argv[1:]   # accepted anywhere on the line, not only before the command
    if _state["debug_anywhere"]:
        sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != "--debug"]
        _state["debug"] = True
    _configure()
    app()


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[func-returns-value]
