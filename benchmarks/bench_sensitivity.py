"""Compile-once sensitivity analysis against rebuilding the model for every variant, old and new code side by side.

Run:  .venv/bin/python benchmarks/bench_sensitivity.py [--variants 42] [--rebuilds 3] [--rounds 1]
                                                      [--old DIR | --new-only]
(with --variants above 42 it also prints the amortized cost after the first 42, from the
same run: the one-off compilation weighs less the more variants share it)
A 14-study binomial random-effects model (4 chains x 1000 draws, one seed for all variants
as `hlh-meta sensitivity` uses). Variants: leave one study out (weights), prior
hyperparameters (tau, mu scales) and perturbed counts; all are data swaps on one compiled
model. A few of the same variants are then refitted with the compiled model and prior
sampler caches cleared before each ("rebuild"), in the same run: once as a new process
would on a machine that has compiled the model before (numba loads the compiled functions
from its disk cache), once compiling everything from scratch. Each version runs in its
own process (``--child``); with ``--rounds 2`` they alternate old, new, old, new. Prints
the machine, the amortized cost per variant (compile included), the median rebuild cost and
their ratio, per version, and the ratios new/old.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import add_version_args, header, ratio_line, versions  # noqa: E402

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


def child(args) -> dict:
    """The measurements of one version, in this process (its code on PYTHONPATH)."""
    warnings.filterwarnings("ignore")
    from hlh_meta.inference import sampling
    from hlh_meta.models.posterior import clear_prior_cache

    def clear_cache() -> None:       # a rebuild compiles the model and its prior sampler again
        sampling.clear_cache()
        clear_prior_cache()

    rng = np.random.default_rng(0)
    k = 14
    n = rng.integers(8, 90, k)
    df = pd.DataFrame({"study": [f"s{i:02d}" for i in range(k)], "events": rng.binomial(n, 0.3), "total": n})
    vs = variants(k, args.variants)
    clear_cache()
    start = time.perf_counter()
    per = []
    for v in vs:
        t = time.perf_counter()
        fit(df, v, seed=SEED)
        per.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    compiled = next(iter(sampling._CACHE.values()))
    cached = getattr(getattr(compiled, "compiled_logp_func", None), "cache_hits", 0) > 0
    return {"per": per, "total": total, "from_disk_cache": bool(cached),
            "rebuild": rebuilds(df, vs[: args.rebuilds], clear_cache),
            "scratch": rebuilds(df, vs[: args.rebuilds], clear_cache, disk_cache=False) if args.scratch else []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=42)
    ap.add_argument("--rebuilds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="runs per version, alternating")
    ap.add_argument("--no-scratch", dest="scratch", action="store_false",
                    help="skip the rebuilds with numba's disk cache off (they take several seconds each)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_version_args(ap)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    vs = versions(args)
    header(vs)
    own = ["--child", "--variants", str(args.variants), "--rebuilds", str(args.rebuilds)] + \
          ([] if args.scratch else ["--no-scratch"])
    runs: dict[str, list[dict]] = {v.name: [] for v in vs}
    for _ in range(args.rounds):
        for v in vs:
            runs[v.name].append(v.child(Path(__file__).resolve(), own))
    n = args.variants
    for v in vs:
        for r in runs[v.name]:
            per = r["per"]
            amortized = r["total"] / len(per)
            line = (f"{v.name}: {len(per)} variants, compile once: total {r['total']:.1f} s, first (compiles"
                    f"{'; callbacks from the disk cache' if r['from_disk_cache'] else ''}) {per[0]:.2f} s, "
                    f"median later variant {statistics.median(per[1:]):.3f} s, amortized {amortized:.3f} s")
            if len(per) > 42:
                line += f", amortized over the first 42 {sum(per[:42]) / 42:.3f} s"
            print(line)
            for label, times in (("numba disk cache warm", r["rebuild"]),
                                 ("compiled from scratch, numba disk cache off", r["scratch"])):
                if times:
                    print(f"  rebuild per variant, {label} (median of {len(times)}): {statistics.median(times):.2f} s; "
                          f"ratio rebuild / amortized: {statistics.median(times) / amortized:.1f}x")
    print(ratio_line("first variant (compiles)", {k: [r["per"][0] for r in rs] for k, rs in runs.items()}))
    print(ratio_line("median later variant", {k: [statistics.median(r["per"][1:]) for r in rs] for k, rs in runs.items()},
                     digits=3))
    print(ratio_line(f"amortized per variant over {n}", {k: [r["total"] / len(r["per"]) for r in rs]
                                                         for k, rs in runs.items()}, digits=3))
    print(ratio_line("rebuild, disk cache warm", {k: [statistics.median(r["rebuild"]) for r in rs]
                                                  for k, rs in runs.items()}))
    if args.scratch:
        print(ratio_line("rebuild from scratch", {k: [statistics.median(r["scratch"]) for r in rs]
                                                  for k, rs in runs.items()}))


if __name__ == "__main__":
    main()
