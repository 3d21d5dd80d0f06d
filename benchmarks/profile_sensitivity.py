"""Where the time of `hlh-meta sensitivity` goes, against `hlh-meta fit` of the same spec.

Run:  .venv/bin/python benchmarks/profile_sensitivity.py [--spec models/mortality.toml] [--executor serial]
Runs, each in a fresh process of this checkout (so nothing compiled in one is reused by the
other, as with two commands): ``run_analysis(spec)`` and then ``run_analysis(spec,
sensitivity=True)``, each followed by ``AnalysisResult.save`` (tables, figures, report), as
`hlh-meta fit` and `hlh-meta sensitivity` do. Under cProfile (which slows Python-heavy
steps a little), the cumulative seconds of the steps below are printed for both, with
their difference, which is what the variants add:

compile of a model structure (nutpie + the generated callbacks, from scratch or from numba's
disk cache), sampling (nutpie's own run), trace conversion, diagnostics gate, gated refits
(samples beyond one per fit), completing the InferenceData, prior draws, the variants'
summary rows, support diagnostics (power-scaling, az.psens), the summary table, the
leave-one-study-out comparison, planning the variants (frames and model inputs), the
robustness table, figures and the report, process-pool start-up (with worker processes);
reweighting variants from the primary's draws, the integrated log-likelihood of left-out
studies, the compiled callbacks called at many points (expand, log density), building the
PyMC models. Only the calling process is profiled: with worker processes, their steps are
not counted.

Then the floor under the cost per variant that the refits set: the variants refitted and
reweighted (sensitivity.csv's ``method``), the mean seconds of one sampling run (nutpie's
own, retries included) and what the refits' sampling alone costs per variant.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, Version, header  # noqa: E402

#: step -> (file suffix, function name) whose cumulative time measures it
STEPS = {
    "compile a model structure": ("inference/callbacks.py", "compile_pymc_model"),
    "sampling (nutpie)": ("nutpie/sample.py", "sample"),
    "trace conversion + sampling": ("inference/trace.py", "sample_to_inference_data"),
    "diagnostics gate": ("inference/diagnostics.py", "check"),
    "complete InferenceData": ("models/posterior.py", "complete"),
    "prior draws (incl. their compile)": ("models/posterior.py", "prior_draws"),
    "variants' summary rows": ("sensitivity/runner.py", "variant_rows"),
    "support (power-scaling, az.psens)": ("analyses/base.py", "with_support"),
    "summary table (az.summary + support)": ("analyses/base.py", "summary"),
    "LOO comparison of covariate sets": ("analyses/mortality.py", "compare"),
    "primary analysis (run)": ("analyses/base.py", "run"),
    "planning variants (frames, inputs)": ("sensitivity/runner.py", "plan"),
    "expanding variants": ("analyses/base.py", "expand_variants"),
    "robustness table": ("sensitivity/robustness.py", "robustness"),
    "save: figures": ("report/figures.py", "save_figures"),
    "save: report": ("report/html.py", "write_report"),
    "save: all": ("hlh_meta/result.py", "save"),
    "process pool (start-up, waiting)": ("concurrent/futures/_base.py", "result"),
    "reweighting variants": ("sensitivity/reweight.py", "reweight"),
    "integrated log-likelihood": ("analyses/crossval.py", "integrated_study_loglik"),
    "callbacks at many points": ("inference/point_calls.py", "_in_threads"),
    "building PyMC models": ("models/engine.py", "model"),
}


def _counting(fn, counter: dict):
    """``fn`` that adds one to ``counter["n"]`` at each call."""
    def counted(*a, **k):
        counter["n"] += 1
        return fn(*a, **k)
    return counted


def child(args) -> dict:
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    import hlh_meta as hm
    from hlh_meta.inference import sampling
    from hlh_meta.pipeline import run_analysis

    hm.run_analysis                                   # noqa: B018 - the package loads its API on first use
    t1 = time.perf_counter()
    calls, fits = {"n": 0}, {"n": 0}
    sampling._sample_once = _counting(sampling._sample_once, calls)
    count_fits = sampling.sample_gated = _counting(sampling.sample_gated, fits)
    import hlh_meta.models.engine as engine

    engine.sample_gated = count_fits
    prof = cProfile.Profile()
    prof.enable()
    kw = {"sensitivity": True, "executor": args.executor} if args.sensitivity else {}
    result = run_analysis(args.spec, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        result.save(Path(tmp) / result.name)
    prof.disable()
    total = time.perf_counter() - t1
    stats = pstats.Stats(prof).stats
    steps = {}
    for step, (suffix, name) in STEPS.items():
        steps[step] = sum(v[3] for (file, _, func), v in stats.items()
                          if func == name and file.replace("\\", "/").endswith(suffix))
    compiles = sum(v[0] for (file, _, func), v in stats.items()
                   if func == "compile_pymc_model" and file.endswith("inference/callbacks.py"))
    steps["gated refits (extra samples)"] = calls["n"] - fits["n"]
    methods = {}
    if args.sensitivity:
        first = result.tables["sensitivity"].drop_duplicates("variant")
        methods = first.loc[first["variant"] != "primary", "method"].fillna("").value_counts().to_dict()
    return {"methods": methods, "import": t1 - t0, "total": total, "steps": steps, "compiles": compiles, "fits": fits["n"],
            "samples": calls["n"], "timings": result.manifest["timings_s"],
            "variants": int(result.tables["sensitivity"]["variant"].nunique()) - 1 if args.sensitivity else 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="models/mortality.toml")
    ap.add_argument("--executor", default="serial", choices=("serial", "processes"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sensitivity", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    here = Version("new", ROOT)
    header([here])
    runs = {}
    for label, extra in (("fit", []), ("sensitivity", ["--sensitivity"])):
        runs[label] = here.child(Path(__file__).resolve(), ["--child", "--spec", args.spec, "--executor",
                                                            args.executor, *extra])
        r = runs[label]
        print(f"{label}: {r['total']:.1f} s after import ({r['import']:.1f} s); {r['fits']} gated fits, "
              f"{r['samples']} samples, {r['compiles']} structures compiled; manifest {r['timings']}", flush=True)
    fit, sens = runs["fit"], runs["sensitivity"]
    n = sens["variants"]
    print(f"\n{'step (cumulative seconds; steps nest)':<42} {'fit':>8} {'sensitivity':>12} {'difference':>11} "
          f"{'per variant':>12}")
    for step in list(STEPS) + ["gated refits (extra samples)"]:
        a, b = fit["steps"][step], sens["steps"][step]
        unit = "" if "refits" in step else " s"
        print(f"{step:<42} {a:>8.1f} {b:>12.1f} {b - a:>11.1f} {(b - a) / max(n, 1):>12.2f}{unit}")
    print(f"{'total after import':<42} {fit['total']:>8.1f} {sens['total']:>12.1f} {sens['total'] - fit['total']:>11.1f} "
          f"{(sens['total'] - fit['total']) / max(n, 1):>12.2f} s   ({n} variants)")
    refits, reweighted = sens["methods"].get("refit", 0), sens["methods"].get("reweighted", 0)
    sampled = sens["steps"]["sampling (nutpie)"] - fit["steps"]["sampling (nutpie)"]
    extra = sens["samples"] - fit["samples"]
    if extra > 0:
        fitted = refits + reweighted
        print(f"\nvariants: {refits} refitted, {reweighted} reweighted, {n - fitted} with nothing to fit; "
              f"{extra} sampling runs for them (retries included), {sampled / extra:.2f} s each: the refits' "
              f"sampling alone costs {sampled / max(fitted, 1):.2f} s per fitted variant (the measure of "
              "bench_run.py)")


if __name__ == "__main__":
    main()
