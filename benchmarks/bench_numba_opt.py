"""What numba's LLVM optimisation level (NUMBA_OPT) does to compiling a model and to running it.

Run:  .venv/bin/python benchmarks/bench_numba_opt.py [--levels 1 3 1 3] [--spec models/mortality.toml]

For each level in turn (alternating, so that all see the same load), a fresh process with
``NUMBA_OPT`` set and an empty compile cache (PyTensor's compile directory, numba's cache and
hlh-meta's function cache in a new temporary folder, deleted afterwards; the compile helper
off, so one process compiles both callbacks) compiles the spec's primary model structure, then
times one call of the compiled log density with its gradient and one call of the expand
callback (the best of 5 passes over 20,000 and 5,000 random points, through ctypes, one
thread). Printed per run: the level, the compile seconds and the microseconds a call.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, Version, header  # noqa: E402

CHILD = r"""
import ctypes, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
from hlh_meta.analyses import load_spec
from hlh_meta.analyses.base import PRIMARY
from hlh_meta.analyses.registry import analysis_for
from hlh_meta.data import load_dataset
from hlh_meta.inference.sampling import compile_structure
from hlh_meta.models.engine import shared_model

spec = load_spec(sys.argv[1]); ds = load_dataset()
analysis = analysis_for(spec); spec = analysis.resolve(ds, spec)
inputs = analysis.variant_inputs(ds, spec, PRIMARY)
model = shared_model(inputs)
start = time.perf_counter()
compiled = compile_structure(lambda: model, inputs.structure).with_data(**inputs.data)
seconds = time.perf_counter() - start
n = int(compiled.n_dim)
double = ctypes.POINTER(ctypes.c_double)
data = ctypes.c_void_p(compiled.user_data.ctypes.data)
points = np.random.default_rng(0).normal(0, 0.5, (20000, n))
pointers = [p.ctypes.data_as(double) for p in points]
grad, value, out = np.empty(n), np.empty(1), np.empty(int(compiled.n_expanded))
g, v, o = grad.ctypes.data_as(double), value.ctypes.data_as(double), out.ctypes.data_as(double)

def best(call, args, k):
    least = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for p in pointers[:k]:
            call(*args(p))
        least = min(least, (time.perf_counter() - t) / k)
    return least * 1e6

logp = best(compiled.compiled_logp_func.ctypes, lambda p: (n, p, g, v, data), 20000)
expand = best(compiled.compiled_expand_func.ctypes, lambda p: (n, int(compiled.n_expanded), p, o, data), 5000)
print(f"{seconds:.1f} {logp:.1f} {expand:.1f}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", nargs="+", default=["1", "3", "1", "3"])
    ap.add_argument("--spec", default="models/mortality.toml")
    args = ap.parse_args()
    header([Version("new", ROOT)])
    print(f"{'NUMBA_OPT':>9} {'compile s':>10} {'logp+grad us':>13} {'expand us':>10}")
    for level in args.levels:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "NUMBA_OPT": level, "PYTENSOR_FLAGS": f"base_compiledir={tmp}",
                   "NUMBA_CACHE_DIR": f"{tmp}/numba", "HLH_META_FUNCTION_CACHE": f"{tmp}/functions",
                   "HLH_META_COMPILE_HELPER": "0", "PYTHONPATH": str(ROOT / "src")}
            done = subprocess.run([sys.executable, "-c", CHILD, args.spec], cwd=ROOT, env=env, capture_output=True,
                                  text=True)
        if done.returncode:
            print(f"{level:>9} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        compile_s, logp, expand = done.stdout.split()[-3:]
        print(f"{level:>9} {compile_s:>10} {logp:>13} {expand:>10}")


if __name__ == "__main__":
    main()
