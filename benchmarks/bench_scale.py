"""How the mortality analysis grows with the number of studies: 10, 100 and 1,000 synthetic studies.

Run:  .venv/bin/python benchmarks/bench_scale.py [--studies 10 100 1000] [--draws 500] [--tune 500] [--compare]
      .venv/bin/python benchmarks/bench_scale.py --gradient [--old DIR] [--studies 10 100 1000]

Each study is one stratum of known trigger and age group, its route intravenous,
subcutaneous or unknown (an unknown IV share in the model), its deaths drawn from a
binomial with a trigger and age effect and a study effect (tau 0.5). The tables are
written to a temporary folder beside the bundled tables, whose studies are marked out of
the primary analysis (``include_primary = false``), and analysed with the bundled
mortality spec (its covariates and covariate-set comparison; its partitions, which name
bundled studies, removed) at ``--draws`` + ``--tune`` draws and the spec's chains, in a
fresh process per size. The child prints each phase as it starts (the status line's
steps) and the time since the start; the parent prints the machine and, per size, the
time of each phase (compile included in the first sampling). ``--compare`` adds the
comparison of the spec's covariate sets (``run_analysis(compare=True)``, as ``hlh-meta fit
--compare``). A size that runs past ``--timeout`` seconds (default 1800) is stopped and prints
the phases it reached.

``--gradient``: the time of one evaluation of the log density and its gradient (the
sampler's unit of work) of the primary model on the bundled data and on each size, through
the compiled model's callback at 3,000 random points; with ``--old DIR`` the same for the
sources checked out in ``DIR``, each version in its own process, alternating.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, machine  # noqa: E402

CHILD = r"""
import json, re, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import hlh_meta as hm
from hlh_meta.analyses import load_spec
spec = load_spec(sys.argv[1])
marks = [("start", 0.0)]
def step(text):
    marks.append((re.sub(r"\d+/\d+ \(([^)]*)\): ", r"\1: ", text), time.perf_counter() - t0))
    print(f"{marks[-1][1]:8.1f} s  {text}", file=sys.stderr, flush=True)
result = hm.run_analysis(spec, sys.argv[2], step=step, compare=sys.argv[3] == "compare")
marks.append(("done", time.perf_counter() - t0))
print(json.dumps({"marks": marks, "refits": result.tables.get("comparison", {}).get("refits", []).tolist()
                  if "comparison" in result.tables else []}))
"""


GRADIENT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
from hlh_meta.analyses import analysis_for, load_spec
from hlh_meta.analyses.base import PRIMARY
from hlh_meta.data import read_dataset, load_dataset
from hlh_meta.inference.point_calls import logp_points
from hlh_meta.inference.sampling import compiled_for
spec = load_spec(sys.argv[1])
ds = load_dataset() if sys.argv[2] == "bundled" else read_dataset(sys.argv[2])
a = analysis_for(spec)
spec = a.resolve(ds, spec)
inp = a.variant_inputs(ds, spec, PRIMARY)
compiled = compiled_for(inp.model, inp.structure, inp.data)
points = np.random.default_rng(1).standard_normal((3000, compiled.n_dim)) * 0.5
logp_points(compiled, points[:100])
best = min(_timed for _timed in [(lambda t: (logp_points(compiled, points), time.perf_counter() - t)[1])(time.perf_counter())
                                 for _ in range(3)])
print(json.dumps({"us": best / len(points) * 1e6, "n_dim": int(compiled.n_dim)}))
"""


def gradient(args) -> None:
    """Per-evaluation time of the log density and gradient, new (and old) sources."""
    versions = [("new", ROOT)] + ([("old", args.old)] if args.old else [])
    sizes = ["bundled"] + [str(k) for k in args.studies]
    times: dict = {}
    for size in sizes:
        work = Path(tempfile.mkdtemp(prefix="hlh-grad-"))
        try:
            for name, checkout in versions:
                if size == "bundled":
                    path, data = checkout / "models" / "mortality.toml", "bundled"
                else:
                    (work / "data").mkdir(exist_ok=True)
                    tables(work / "data", int(size))
                    path, data = spec(work, args.draws, args.tune), str(work / "data")
                env = {"PYTHONPATH": str(checkout / "src"), "PATH": "/usr/bin:/bin"}
                proc = subprocess.run([sys.executable, "-c", GRADIENT, str(path), data], capture_output=True, text=True,
                                      timeout=args.timeout, env=env, cwd=work)
                if proc.returncode != 0:
                    print(f"{size} ({name}): failed\n{proc.stderr[-2000:]}")
                    continue
                times[(size, name)] = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'studies':>10} {'n_dim':>9} " + " ".join(f"{name + ' (us)':>12}" for name, _ in versions)
          + ("   new/old" if args.old else ""))
    for size in sizes:
        row = [times.get((size, name), {}).get("us", float("nan")) for name, _ in versions]
        dim = times.get((size, "new"), {}).get("n_dim", "")
        ratio = f"   {row[0] / row[1]:.2f}x" if args.old and len(row) > 1 else ""
        print(f"{size:>10} {dim:>9} " + " ".join(f"{t:12.1f}" for t in row) + ratio)


def tables(folder: Path, k: int, seed: int = 1) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    triggers = rng.choice(["infection", "rheumatological", "malignancy", "other"], k)
    ages = rng.choice(["paediatric", "adult"], k)
    routes = rng.choice(["iv", "sc", "unknown"], k)
    n = rng.integers(5, 60, k)
    effect = {"infection": 0.0, "rheumatological": -1.0, "malignancy": 0.8, "other": 0.0}
    logit = -1.0 + np.array([effect[t] for t in triggers]) + 0.3 * (ages == "adult") + 0.5 * rng.standard_normal(k)
    deaths = rng.binomial(n, 1 / (1 + np.exp(-logit)))
    ids = [f"syn{i:04d}" for i in range(k)]
    for name in ("biomarkers.csv", "arms.csv", "judgements.csv"):
        shutil.copy(ROOT / "data" / name, folder / name)
    bundled = pd.read_csv(ROOT / "data" / "studies.csv", dtype=str, keep_default_na=False)
    bundled["include_primary"] = "false"                       # the bundled studies stay out of the analysis
    studies = bundled.iloc[[0] * k].assign(
        study_id=ids, citation=[f"Synthetic study {i}" for i in range(k)], doi="", pmid="", n_patients=n.astype(str),
        age_group=ages, route=routes, n_iv="", trigger_mix="", overlaps_with="", include_primary="true", covid19="false")
    pd.concat([bundled, studies]).to_csv(folder / "studies.csv", index=False)
    mortality = pd.read_csv(ROOT / "data" / "mortality.csv", dtype=str, keep_default_na=False)
    synthetic = pd.DataFrame({"study_id": ids, "partition": "trigger", "stratum": triggers, "trigger": triggers,
                              "age_group": ages, "deaths": deaths.astype(str), "n": n.astype(str),
                              "count_method": "reported", "source_locator": "synthetic"})
    pd.concat([mortality, synthetic.reindex(columns=mortality.columns, fill_value="")]).to_csv(
        folder / "mortality.csv", index=False)


def spec(folder: Path, draws: int, tune: int) -> Path:
    text = (ROOT / "models" / "mortality.toml").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("partitions"))
    text = text.replace("draws = 1000", f"draws = {draws}").replace("tune = 1000", f"tune = {tune}")
    path = folder / "mortality.toml"
    path.write_text(text)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--compare", action="store_true", help="also compare the covariate sets")
    ap.add_argument("--gradient", action="store_true", help="time one log density + gradient evaluation")
    ap.add_argument("--old", type=Path, help="with --gradient: a checkout of other sources to time beside these")
    args = ap.parse_args()
    print(machine())
    if args.gradient:
        gradient(args)
        return
    print(f"bundled mortality spec at {args.draws} + {args.tune} draws; one stratum per synthetic study")
    for k in args.studies:
        work = Path(tempfile.mkdtemp(prefix=f"hlh-scale-{k}-"))
        try:
            (work / "data").mkdir()
            tables(work / "data", k)
            path = spec(work, args.draws, args.tune)
            env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
            try:
                proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(work / "data"),
                                       "compare" if args.compare else "fit"], capture_output=True,
                                      text=True, timeout=args.timeout, env=env, cwd=work)
            except subprocess.TimeoutExpired as exc:       # the phases it reached, from its progress lines
                err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
                print(f"\n{k} studies: not finished after {args.timeout:.0f} s; the phases it reached "
                      f"(seconds since its start):")
                print("\n".join(line for line in err.splitlines() if re.match(r"\s*[\d.]+ s  ", line)))
                continue
            if proc.returncode != 0:
                print(f"{k} studies: failed\n{proc.stderr[-3000:]}")
                continue
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            marks = out["marks"]
            print(f"\n{k} studies: {marks[-1][1]:.1f} s in all (refits in the comparison: {out['refits']})")
            for (name, t), (_, t_next) in zip(marks, marks[1:]):
                print(f"  {t_next - t:8.1f} s  {'import, data, spec' if name == 'start' else name}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
