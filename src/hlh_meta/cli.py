"""Command line: ``hlh-meta run | fit | data check``.

Exit status: 0 success, 2 bad input (one line per problem, no traceback unless --debug),
1 any other failure.
"""

from __future__ import annotations

import sys
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
out = Console(highlight=False, soft_wrap=True)
_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


def _fail(exc: Exception) -> None:
    """Report an error the way the exit-status contract says and exit."""
    if _state["debug"]:
        raise exc
    if isinstance(exc, (DataError, SpecError, FileNotFoundError)):
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
    out.print(ds.summary(), markup=False)
    out.print("OK: the tables are valid.")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
