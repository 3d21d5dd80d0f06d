"""Timing of the engines on this machine: cold (fresh process) and warm fits.

Run:  .venv/bin/python benchmarks/bench_fit.py [--repeats 3] [--stock-callbacks]
Prints the machine, then medians over repeats. "cold" starts a new Python process that
imports hlh_meta and fits once (import + model compilation + sampling); "warm" refits new
data of the same shape in the same process (compiled model reused). The exact engine
needs no sampling. Default fits: 4 chains x 1000 draws (+1000 tuning).
With --stock-callbacks the cold fits also run with nutpie's own C callbacks instead of
hlh_meta's generated ones (inference/callbacks.py), the two alternating, fresh process each.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

COLD = r"""
import time, warnings; warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import numpy as np, pandas as pd, hlh_meta as hm
t1 = time.perf_counter()
if {stock}:
    import nutpie
    from hlh_meta.inference import sampling
    sampling.compile_pymc_model = nutpie.compile_pymc_model
kind = "{kind}"
if kind == "binomial":
    df = pd.DataFrame({{"study": list("abcde"), "events": [2, 5, 0, 9, 3], "total": [10, 20, 13, 30, 8]}})
    hm.fit_binomial(df, events="events", total="total", study="study", seed=1)
elif kind == "binomial14":
    rng = np.random.default_rng(0); n = rng.integers(8, 90, 14)
    df = pd.DataFrame({{"study": [f"s{{i}}" for i in range(14)], "events": rng.binomial(n, 0.3), "total": n}})
    hm.fit_binomial(df, events="events", total="total", study="study", seed=1)
else:
    df = pd.DataFrame({{"study": list("abcde"), "yi": [-0.35, -0.10, -0.62, 0.05, -0.28], "sei": [0.18, 0.25, 0.30, 0.22, 0.15]}})
    hm.fit_normal(df, estimate="yi", std_err="sei", study="study", seed=1)
t2 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{t2 - t1:.3f}}")
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()} | {cpu} | {os.cpu_count()} cores | Python {platform.python_version()}"


def cold(kind: str, stock: bool = False) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", COLD.format(kind=kind, stock=stock)], capture_output=True, text=True,
                         check=True)
    imp, fit = map(float, out.stdout.split()[-2:])
    return imp, fit


def warm(kind: str, repeats: int) -> list[float]:
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd

    import hlh_meta as hm

    rng = np.random.default_rng(1)
    times = []
    for i in range(repeats + 1):
        if kind == "binomial":
            n = np.array([10, 20, 13, 30, 8])
            df = pd.DataFrame({"study": list("abcde"), "events": rng.binomial(n, 0.25), "total": n})
            t = time.perf_counter()
            hm.fit_binomial(df, events="events", total="total", study="study", seed=i)
        else:
            df = pd.DataFrame({"study": list("abcde"), "yi": rng.normal(-0.3, 0.3, 5), "sei": [0.18, 0.25, 0.30, 0.22, 0.15]})
            t = time.perf_counter()
            hm.fit_normal(df, estimate="yi", std_err="sei", study="study", seed=i)
        if i:  # the first fit compiles
            times.append(time.perf_counter() - t)
    return times


def exact(repeats: int) -> float:
    import numpy as np

    from hlh_meta.models.normal_exact import fit_normal_exact

    y, se = np.array([-0.35, -0.10, -0.62, 0.05, -0.28]), np.array([0.18, 0.25, 0.30, 0.22, 0.15])
    times = []
    for _ in range(repeats * 20):
        t = time.perf_counter()
        fit_normal_exact(y, se).summary()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stock-callbacks", action="store_true",
                    help="also time cold fits with nutpie's own C callbacks, alternating with hlh_meta's")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print("default fit: 4 chains x 1000 draws, nutpie; medians over", args.repeats, "repeats")
    modes = (False, True) if args.stock_callbacks else (False,)
    for kind in ("binomial", "binomial14", "normal"):
        runs = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode in modes:
                runs[mode].append(cold(kind, stock=mode))
        for mode in modes:
            imp = statistics.median(r[0] for r in runs[mode])
            fit = statistics.median(r[1] for r in runs[mode])
            label = f"{kind}, nutpie's callbacks" if mode else kind
            print(f"{label:<11} cold: import {imp:5.2f} s + first fit {fit:5.2f} s = {imp + fit:5.2f} s")
        if args.stock_callbacks:
            ratio = statistics.median(r[1] for r in runs[True]) / statistics.median(r[1] for r in runs[False])
            print(f"{kind:<11} first fit, nutpie's callbacks / generated callbacks: {ratio:.2f}x")
    for kind in ("binomial", "normal"):
        w = warm(kind, args.repeats)
        print(f"{kind:<11} warm fit (compiled model reused): {statistics.median(w):.3f} s")
    print(f"normal exact engine (quadrature, with summary): {1000 * exact(args.repeats):.2f} ms")


if __name__ == "__main__":
    main()
