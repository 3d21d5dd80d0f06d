"""Compile-once sensitivity analysis against rebuilding the model for every variant.

Run:  .venv/bin/python benchmarks/bench_sensitivity.py [--variants 42] [--rebuilds 3]
(with --variants above 42 it also prints the amortized cost after the first 42, from the
same run: the one-off compilation weighs less the more variants share it)
A 14-study binomial random-effects model (4 chains x 1000 draws, one seed for all variants
as `hlh-meta sensitivity` uses). Variants: leave one
study out (weights), prior hyperparameters (tau, mu scales) and perturbed counts; all are
data swaps on one compiled model. A few of the same variants are then refitted with the
compiled model and prior sampler caches cleared before each ("rebuild"), in the same run:
once as a new process would on a machine that has compiled the model before (numba loads
the compiled functions from its disk cache), once compiling everything from scratch. Prints the
machine, the amortized cost per variant (compile included), the median rebuild cost and
their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import pandas as pd

from bench_fit import machine

SEED = 20260301  # one seed for every variant, as a sensitivity analysis uses


def variants(k: int, count: int) -> list[dict]:
    out = [{"weights": np.where(np.arange(k) == i, 0.0, 1.0)} for i in range(k)]
    for sigma in (0.25, 0.5, 0.75, 1.5, 2.0, 3.0):
        out.append({"priors": {"tau": {"dist": "HalfNormal", "sigma": sigma}}})
    for sigma in (0.75, 1.0, 2.0, 3.0, 5.0):
        out.append({"priors": {"mu": {"dist": "Normal", "mu": 0.0, "sigma": sigma}}})
    i = 0
    while len(out) < count:      # events of one study moved by +1, -1, +2, -2, ... (all distinct)
        step = i // k
        out.append({"shift": i % k, "by": (step // 2 + 1) * (1 if step % 2 == 0 else -1)})
        i += 1
    return out[:count]


def fit(df: pd.DataFrame, v: dict, seed: int):
    import hlh_meta as hm

    data = df.copy()
    if "shift" in v:
        j = v["shift"]
        data.loc[j, "events"] = min(max(data.loc[j, "events"] + v["by"], 0), data.loc[j, "total"])
    return hm.fit_binomial(data, events="events", total="total", study="study", priors=v.get("priors"),
                           weights=v.get("weights"), seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=42)
    ap.add_argument("--rebuilds", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from hlh_meta.inference.sampling import clear_cache as clear_compiled
    from hlh_meta.models.posterior import clear_prior_cache

    def clear_cache() -> None:       # a rebuild compiles the model and its prior sampler again
        clear_compiled()
        clear_prior_cache()

    rng = np.random.default_rng(0)
    k = 14
    n = rng.integers(8, 90, k)
    df = pd.DataFrame({"study": [f"s{i:02d}" for i in range(k)], "events": rng.binomial(n, 0.3), "total": n})
    vs = variants(k, args.variants)
    print(f"machine: {machine()}")
    clear_cache()
    start = time.perf_counter()
    per = []
    for v in vs:
        t = time.perf_counter()
        fit(df, v, seed=SEED)
        per.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    amortized = total / len(vs)
    from hlh_meta.inference import sampling

    cached = next(iter(sampling._CACHE.values())).compiled_logp_func.cache_hits > 0
    rebuild = rebuilds(df, vs[: args.rebuilds], clear_cache)
    scratch = rebuilds(df, vs[: args.rebuilds], clear_cache, disk_cache=False)
    print(f"{len(vs)} variants, compile once: total {total:.1f} s, first (compiles{'; callbacks from the disk cache' if cached else ''}) "
          f"{per[0]:.2f} s, median later variant {statistics.median(per[1:]):.3f} s")
    if len(vs) > 42:
        print(f"amortized per variant after the first 42 (compile included): {sum(per[:42]) / 42:.3f} s")
    print(f"amortized per variant (compile included): {amortized:.3f} s")
    for label, times in (("numba disk cache warm", rebuild), ("compiled from scratch, numba disk cache off", scratch)):
        print(f"rebuild per variant, {label} (median of {len(times)}): {statistics.median(times):.2f} s; "
              f"ratio rebuild / amortized: {statistics.median(times) / amortized:.1f}x")


def rebuilds(df: pd.DataFrame, vs: list[dict], clear_cache, disk_cache: bool = True) -> list[float]:
    """Refit each variant with the in-process caches cleared; with ``disk_cache=False`` numba
    compiles everything (PyTensor's functions and the callbacks) instead of loading it."""
    import pytensor

    times = []
    with pytensor.config.change_flags(numba__cache=disk_cache):
        for v in vs:
            clear_cache()
            t = time.perf_counter()
            fit(df, v, seed=SEED)
            times.append(time.perf_counter() - t)
    return times

if __name__ == "__main__":
    main()
