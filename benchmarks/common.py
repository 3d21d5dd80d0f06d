"""What every benchmark script shares: the machine it ran on, and running a version of hlh-meta.

A *version* is a checkout of this repository: ``new`` (the one these scripts live in) and,
for side-by-side figures, ``old`` (``--old DIR``, default ``/work/old`` when it exists: a
worktree of an earlier commit, e.g. ``git worktree add /work/old 81fbb5a``). Each version
runs in its own Python processes with ``PYTHONPATH=<checkout>/src`` and the checkout as the
working directory, so it uses its own code, its own bundled data (``data/``) and specs
(``models/``), and the same virtual environment (the one running the script).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OLD = Path("/work/old")
PACKAGES = ("pymc", "pytensor", "nutpie", "arviz", "numba", "numpy", "pandas", "scipy", "xarray", "typer", "rich")
#: the command line of a checkout, run from its source tree (the old one has no console script of its own)
CLI = "import sys; from hlh_meta.cli import main; sys.argv[0] = 'hlh-meta'; sys.exit(main())"


def machine() -> str:
    """CPU model, cores, memory, Python and the versions of the libraries that decide the timings."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem = f" | {kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = " | load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    versions = []
    for pkg in PACKAGES:
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return (f"{platform.node()} | {cpu} | {os.cpu_count()} cores{mem} | Python {platform.python_version()}{load}\n"
            f"versions: {', '.join(versions)}")


@dataclass(frozen=True)
class Version:
    name: str
    root: Path

    @property
    def src(self) -> Path:
        return self.root / "src"

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(self.src), **extra}
        return env

    def commit(self) -> str:
        try:
            out = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, check=True)
            dirty = subprocess.run(["git", "-C", str(self.root), "status", "--porcelain", "--", "src"],
                                   capture_output=True, text=True).stdout.strip()
            return out.stdout.strip() + (" + uncommitted changes in src/" if dirty else "")
        except (OSError, subprocess.CalledProcessError):
            marker = self.root / "COMMIT"
            return marker.read_text().strip() if marker.is_file() else "unknown commit"

    def python(self, args: list[str], check: bool = True, capture: bool = True, timeout: float | None = None,
               **extra_env: str) -> subprocess.CompletedProcess:
        """Run ``python ARGS`` with this version's code, from its checkout."""
        return subprocess.run([sys.executable, *args], cwd=self.root, env=self.env(**extra_env), check=check,
                              capture_output=capture, text=True, timeout=timeout)

    def cli(self, args: list[str], check: bool = True, capture: bool = True, **extra_env: str):
        """Run ``hlh-meta ARGS`` with this version's code, from its checkout."""
        return self.python(["-c", CLI, *args], check=check, capture=capture, **extra_env)

    def child(self, script: Path, args: list[str], **extra_env: str) -> dict:
        """Run a benchmark script's child mode with this version; its last stdout line is JSON."""
        out = self.python([str(script), *args], **extra_env)
        return json.loads(out.stdout.strip().splitlines()[-1])


def versions(args) -> list[Version]:
    """The versions asked for on the command line (``--old DIR``, ``--new-only``)."""
    found = [Version("new", ROOT)]
    old = getattr(args, "old", None)
    if not getattr(args, "new_only", False):
        old = Path(old) if old else DEFAULT_OLD
        if (old / "src" / "hlh_meta").is_dir():
            found.insert(0, Version("old", old.resolve()))
        elif getattr(args, "old", None):
            raise SystemExit(f"--old {old}: no src/hlh_meta there")
    return found


def add_version_args(ap) -> None:
    ap.add_argument("--old", help=f"checkout of the earlier code to time side by side (default {DEFAULT_OLD} "
                                  "when it exists)")
    ap.add_argument("--new-only", action="store_true", help="time only this checkout")


def header(vs: list[Version]) -> None:
    print(f"machine: {machine()}")
    for v in vs:
        print(f"{v.name}: {v.root} ({v.commit()})")


def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def ratio_line(label: str, by_version: dict[str, list[float]], unit: str = "s", digits: int = 2) -> str:
    """``label: old M s, new M s (new/old R)`` from the runs of each version."""
    parts = []
    for name, xs in by_version.items():
        spread = f" [{min(xs):.{digits}f}-{max(xs):.{digits}f}]" if len(xs) > 1 else ""
        parts.append(f"{name} {median(xs):.{digits}f} {unit}{spread}")
    text = f"{label}: " + ", ".join(parts)
    if "old" in by_version and "new" in by_version and median(by_version["old"]) > 0:
        text += f" (new/old {median(by_version['new']) / median(by_version['old']):.2f}x)"
    return text
