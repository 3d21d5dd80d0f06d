"""Timing of the engines on this machine, old and new code side by side: cold (fresh process) and warm fits.

Run:  .venv/bin/python benchmarks/bench_fit.py [--repeats 3] [--stock-callbacks] [--old DIR | --new-only]
Prints the machine, then medians over repeats for each version and the ratio new/old.
"cold" starts a new Python process that imports hlh_meta and fits once (import + model
compilation, or loading it from numba's disk cache + sampling); "warm" refits new data of
the same shape in the same process (compiled model reused). The exact engine needs no
sampling. Default fits: 4 chains x 1000 draws (+1000 tuning). The versions alternate run
by run, so both see the same machine load.
With --stock-callbacks the cold fits also run with nutpie's own C callbacks instead of
hlh_meta's generated ones (inference/callbacks.py), fresh process each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import add_version_args, header, machine, ratio_line, versions  # noqa: E402,F401  (machine: re-exported)

DATA = r"""
import numpy as np, pandas as pd
def frame(kind, rng=None, i=0):
    if kind == "binomial":
        n = np.array([10, 20, 13, 30, 8])
        events = [2, 5, 0, 9, 3] if rng is None else rng.binomial(n, 0.25)
        return pd.DataFrame({"study": list("abcde"), "events": events, "total": n})
    if kind == "binomial14":
        r = np.random.default_rng(0); n = r.integers(8, 90, 14)
        events = r.binomial(n, 0.3) if rng is None else rng.binomial(n, 0.3)
        return pd.DataFrame({"study": [f"s{j}" for j in range(14)], "events": events, "total": n})
    yi = [-0.35, -0.10, -0.62, 0.05, -0.28] if rng is None else rng.normal(-0.3, 0.3, 5)
    return pd.DataFrame({"study": list("abcde"), "yi": yi, "sei": [0.18, 0.25, 0.30, 0.22, 0.15]})
def fit(hm, kind, df, seed):
    if kind.startswith("binomial"):
        return hm.fit_binomial(df, events="events", total="total", study="study", seed=seed)
    return hm.fit_normal(df, estimate="yi", std_err="sei", study="study", seed=seed)
"""

COLD = DATA + r"""
import json, sys, time, warnings; warnings.filterwarnings("ignore")
kind, stock = sys.argv[1], sys.argv[2] == "1"
t0 = time.perf_counter()
import hlh_meta as hm
hm.fit_binomial                      # the new package loads its API on first use: count it as import
t1 = time.perf_counter()
if stock:
    import nutpie
    from hlh_meta.inference import sampling
    sampling.compile_pymc_model = nutpie.compile_pymc_model
fit(hm, kind, frame(kind), 1)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "fit": t2 - t1}))
"""

WARM = DATA + r"""
import json, sys, time, warnings; warnings.filterwarnings("ignore")
import numpy as np
import hlh_meta as hm
kind, repeats = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
times, attempts = [], []
for i in range(repeats + 1):
    df = frame(kind, rng)
    t = time.perf_counter()
    idata = fit(hm, kind, df, i)
    if i:                     # the first fit compiles
        times.append(time.perf_counter() - t)
        attempts.append(json.loads(idata.posterior.attrs["diagnostics"]).get("attempts", 1))
print(json.dumps({"warm": times, "attempts": attempts}))
"""

EXACT = r"""
import json, statistics, sys, time
import numpy as np
import hlh_meta.models.normal_exact as ne
y, se = np.array([-0.35, -0.10, -0.62, 0.05, -0.28]), np.array([0.18, 0.25, 0.30, 0.22, 0.15])
posterior = getattr(ne, "exact_normal_posterior", ne.fit_normal_exact)   # old: fit_normal_exact returned the posterior
times, fits = [], []
for _ in range(int(sys.argv[1]) * 20):
    t = time.perf_counter(); posterior(y, se).summary(); times.append(time.perf_counter() - t)
if hasattr(ne, "exact_normal_posterior"):                                 # new: fit_normal_exact returns InferenceData
    for _ in range(int(sys.argv[1]) * 5):
        t = time.perf_counter(); ne.fit_normal_exact(y, se); fits.append(time.perf_counter() - t)
print(json.dumps({"summary": statistics.median(times), "idata": statistics.median(fits) if fits else None}))
"""


def run(version, code: str, *args) -> dict:
    out = version.python(["-c", code, *map(str, args)])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stock-callbacks", action="store_true",
                    help="also time cold fits with nutpie's own C callbacks")
    ap.add_argument("--kinds", default="binomial,binomial14,normal")
    ap.add_argument("--warm-repeats", type=int, default=10, help="warm refits per version and model")
    add_version_args(ap)
    args = ap.parse_args()
    vs = versions(args)
    header(vs)
    print("default fit: 4 chains x 1000 draws, nutpie; medians over", args.repeats, "repeats [min-max]")
    modes = (False, True) if args.stock_callbacks else (False,)
    for kind in args.kinds.split(","):
        runs = {(v.name, m): [] for v in vs for m in modes}
        for _ in range(args.repeats):
            for mode in modes:
                for v in vs:                      # old and new alternate
                    runs[(v.name, mode)].append(run(v, COLD, kind, int(mode)))
        for mode in modes:
            label = f"{kind}{', nutpie callbacks' if mode else ''}"
            print(ratio_line(f"{label:<30} cold import", {v.name: [r["import"] for r in runs[(v.name, mode)]] for v in vs}))
            print(ratio_line(f"{label:<30} cold first fit", {v.name: [r["fit"] for r in runs[(v.name, mode)]] for v in vs}))
            print(ratio_line(f"{label:<30} cold total", {v.name: [r["import"] + r["fit"] for r in runs[(v.name, mode)]]
                                                         for v in vs}))
    for kind in ("binomial", "normal"):
        # a fit whose draws fail the diagnostics gate is sampled again with twice the draws
        # (which fits do depends on the draws, so on the version): fits sampled once are shown apart
        warm = {v.name: run(v, WARM, kind, args.warm_repeats) for v in vs}
        print(ratio_line(f"{kind:<30} warm fit (compiled model reused)", {k: r["warm"] for k, r in warm.items()},
                         digits=3) + "; gated refits: " + ", ".join(
            f"{k} {sum(a > 1 for a in r['attempts'])}/{len(r['attempts'])}" for k, r in warm.items()))
        once = {k: [t for t, a in zip(r["warm"], r["attempts"]) if a == 1] for k, r in warm.items()}
        if all(once.values()):
            print(ratio_line(f"{kind:<30} warm fit sampled once", once, digits=3))
    exact = {v.name: run(v, EXACT, args.repeats) for v in vs}
    print(ratio_line(f"{'normal exact engine':<30} posterior + summary",
                     {k: [1000 * r["summary"]] for k, r in exact.items()}, unit="ms"))
    if exact.get("new", {}).get("idata") is not None:
        print(f"{'normal exact engine':<30} fit_normal_exact -> InferenceData (new): {1000 * exact['new']['idata']:.2f} ms")


if __name__ == "__main__":
    main()
