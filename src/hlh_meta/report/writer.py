"""Writing a results folder atomically: everything goes to a temporary sibling folder that
is renamed into place only when complete, so a crash or Ctrl-C leaves the previous
results untouched."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


#: tables whose row labels (parameter names, covariate sets) are their index
INDEXED_TABLES = ("summary", "comparison")


class ResultsExistError(FileExistsError):
    pass


def safe_child(root: Path, name: str) -> Path:
    """``root / name``, refusing names that would leave ``root``."""
    target = (root / name).resolve()
    if target.parent != root.resolve():
        raise ValueError(f"results name '{name}' would write outside {root}")
    return target


@contextmanager
def atomic_dir(target: Path, force: bool = False):
    """Yield a temporary folder; on success it replaces ``target``."""
    target = Path(target)
    if target.exists() and not force:
        raise ResultsExistError(f"{target} already exists; use --force to replace it or --out for another folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
