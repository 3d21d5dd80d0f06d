"""The main job end to end: wall time and peak memory of `hlh-meta run` in a fresh process.

Run:  .venv/bin/python benchmarks/bench_run.py [--repeats 1]
Each repeat runs `hlh-meta run --out <tmp> --quiet` on the bundled data in a new process
(import, compilation, sampling, figures, reports) and reads the child's peak resident
memory from the kernel (ru_maxrss). Targets: <= 60 s and <= 2 GB.
"""

from __future__ import annotations

import argparse
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


if __name__ == "__main__":
    main()
