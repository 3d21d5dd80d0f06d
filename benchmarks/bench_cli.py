"""How fast the command line answers, old and new code side by side: `hlh-meta --help` and `hlh-meta data check`.

Run:  .venv/bin/python benchmarks/bench_cli.py [--repeats 7] [--old DIR | --new-only]
Each command runs in a fresh process (interpreter start-up included), the versions
alternating; prints medians [min-max], the ratio new/old, and which heavy libraries each
command imported (none of PyMC, PyTensor, ArviZ, numba, nutpie, matplotlib should be needed
for either). `data check` checks the version's own bundled tables (``data/``). Also times the
installed console script (`.venv/bin/hlh-meta`) of this checkout. Target: under 1.5 s each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import CLI, add_version_args, header, ratio_line, versions  # noqa: E402

HEAVY = ("pymc", "pytensor", "arviz", "numba", "nutpie", "matplotlib", "xarray", "scipy", "pandas", "pandera")
PROBE = ("import atexit, json, sys\n"
         "atexit.register(lambda: sys.__stderr__.write('\\nMODULES ' + json.dumps(sorted({m.split('.')[0] for m in "
         "sys.modules} & set(%r))) + '\\n'))\n" % (HEAVY,)) + CLI.replace("; ", "\n")
COMMANDS = {"--help": ["--help"], "data check": ["data", "check", "data"]}


def once(version, args: list[str], probe: bool = False) -> tuple[float, list[str] | None]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE if probe else CLI, *args], cwd=version.root, env=version.env(),
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{version.name}: hlh-meta {' '.join(args)} exited {out.returncode}:\n{out.stderr[-2000:]}")
    mods = None
    if probe:
        line = next(x for x in out.stderr.splitlines() if x.startswith("MODULES "))
        mods = json.loads(line[len("MODULES "):])
    return wall, mods


def script(args: list[str]) -> float:
    exe = Path(sys.executable).with_name("hlh-meta")
    t = time.perf_counter()
    subprocess.run([str(exe), *args], cwd=Path(__file__).resolve().parents[1], capture_output=True, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    add_version_args(ap)
    args = ap.parse_args()
    vs = versions(args)
    header(vs)
    for v in vs:                        # warm the OS file cache and the .pyc files once
        for cmd in COMMANDS.values():
            once(v, cmd)
    for label, cmd in COMMANDS.items():
        times = {v.name: [] for v in vs}
        for _ in range(args.repeats):
            for v in vs:
                times[v.name].append(once(v, cmd)[0])
        print(ratio_line(f"hlh-meta {label} (fresh process; target < 1.5 s)", times))
        for v in vs:
            print(f"  {v.name} hlh-meta {label} imports: {', '.join(once(v, cmd, probe=True)[1]) or 'none of ' + ', '.join(HEAVY)}")
        exe = Path(sys.executable).with_name("hlh-meta")
        if exe.exists():
            walls = sorted(script(cmd) for _ in range(args.repeats))
            print(f"  console script {exe} {' '.join(cmd)}: median {walls[len(walls) // 2]:.2f} s "
                  f"[{walls[0]:.2f}-{walls[-1]:.2f}]")


if __name__ == "__main__":
    main()
