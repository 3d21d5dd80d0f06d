"""The main job end to end: wall time and peak memory of `hlh-meta run` in a fresh process.

Run:  .venv/bin/python benchmarks/bench_run.py [--repeats 1] [--sensitivity]
Each repeat runs `hlh-meta run --out <tmp> --quiet` on the bundled data in a new process
(import, compilation, sampling, figures, reports) and reads the child's peak resident
memory from the kernel (ru_maxrss). Targets: <= 60 s and <= 2 GB.
With --sensitivity it also runs `hlh-meta sensitivity models/mortality.toml` once with the
default executor (local worker processes where the machine has idle cores for them) and
once with --serial, side by side, and prints each one's wall time, the time the manifest
records for the primary analysis with its variants (they overlap where worker processes
start on the variants while the primary analysis runs) and the number of variants.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_fit import machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sensitivity", action="store_true", help="also time `hlh-meta sensitivity` on the mortality spec")
    args = ap.parse_args()
    cli = Path(sys.executable).with_name("hlh-meta")
    print(f"machine: {machine()}")
    walls, peaks = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            subprocess.run([str(cli), "run", "--out", tmp, "--quiet"], check=True)
            walls.append(time.perf_counter() - t)
            # ru_maxrss of children is the largest child so far (KiB on Linux)
            peaks.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print(f"hlh-meta run (all specs in models/): median wall {statistics.median(walls):.1f} s over {len(walls)} run(s); "
          f"peak memory {max(peaks):.0f} MiB")
    if args.sensitivity:
        spec = Path(__file__).parents[1] / "models" / "mortality.toml"
        for flags in ([], ["--serial"]):
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                subprocess.run([str(cli), "sensitivity", str(spec), "--out", tmp, "--quiet", *flags], check=True)
                wall = time.perf_counter() - t
                manifest = json.loads((Path(tmp) / "mortality" / "manifest.json").read_text())
                with open(Path(tmp) / "mortality" / "sensitivity.csv", newline="") as fh:
                    rows = list(csv.DictReader(fh))
                n, variants = len(rows), len({r["variant"] for r in rows})
            print(f"hlh-meta sensitivity mortality {' '.join(flags) or '(default executor)'}: wall {wall:.1f} s; "
                  f"primary analysis with its {variants - 1} variants {manifest['timings_s']['sensitivity']:.1f} s "
                  f"(the primary analysis alone {manifest['timings_s']['total']:.1f} s of it; {n} rows)")


if __name__ == "__main__":
    main()
